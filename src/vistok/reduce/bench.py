"""``vistok reduce-bench``: speed, FLOPs, exactness and fidelity of every reduction method.

Measured side by side in one process (the machine is shared and noisy, so only ratios
are reported): every configuration and the unreduced model are timed in turn, round
after round (interleaved), after a warm-up, and the best round of each is kept.

* **Speed / FLOPs** on a Hugging Face ``ViTModel`` shaped like ViT-B/16 at 224 x 224
  (random weights: speed says nothing about quality), SDPA attention, on ``--threads``
  CPU threads. FLOPs are analytic, from the token count each block actually ran on
  (padding included): ``4 n D^2 + 2 n^2 D`` for attention, ``2 n D D_mlp`` for the MLP (MACs).
* **Exactness**: every method at ``keep = 1`` must reproduce the unreduced output bit for bit.
* **Fidelity** (only with ``--weights``, a local trained ``from_pretrained`` folder):
  cosine similarity of the pooled embedding to the unreduced one on the bundled photos.
* **vistok-1d**: the shipped 1D tokenizer's encoder reduced to ``--vistok-keep`` of its
  grid tokens by every method: PSNR of the reconstruction and its change, plus the
  encode speed-up.

Results: JSON (``--out``) and a plot of speed-up against fidelity per method.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import vistok.reduce as vr
from vistok.utils.io import atomic_write_text
from vistok.utils.threads import torch_threads

__all__ = ["add_command", "block_flops", "markdown", "photos", "run"]

Config = tuple[str, dict[str, Any]]


def block_flops(trace: Sequence[tuple[int, int]], dim: int, mlp: int) -> float:
    """FLOPs (2 x MACs) of the blocks, from ``(attention tokens, MLP tokens)`` per block."""
    return float(sum(2 * (4 * a * dim * dim + 2 * a * a * dim + 2 * m * dim * mlp) for a, m in trace))


def photos(size: int) -> Tensor:
    """The bundled photos, centre-cropped square and resized: float ``[B, 3, size, size]`` in [0, 1]."""
    from vistok.data.samples import photo_arrays

    out = []
    for _, arr, _ in photo_arrays():
        h, w = arr.shape[:2]
        s = min(h, w)
        crop = arr[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]
        t = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255.0
        t = F.interpolate(t, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out.append((t.clamp(0, 1) * 255).round() / 255)  # 8-bit, as a decoded image would be
    return torch.cat(out)


def _configs(methods: Sequence[str], keeps: Sequence[float], tome_r: int | None) -> list[Config]:
    cfgs: list[Config] = [(m, {"keep": k}) for m in methods for k in keeps]
    if tome_r is not None and "tome" in methods:
        cfgs.append(("tome", {"r": tome_r}))
    return cfgs


def _label(cfg: Config) -> str:
    return f"{cfg[0]}:" + ",".join(f"{k}={v}" for k, v in cfg[1].items())


def time_interleaved(fns: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Best wall-clock seconds of each function over ``rounds`` interleaved rounds (after a warm-up)."""
    for fn in fns.values():
        fn()
    best = dict.fromkeys(fns, math.inf)
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return best


def _reduced_call(model: nn.Module, cfg: Config, call: Callable[[], Any]) -> Callable[[], Any]:
    def fn() -> Any:
        vr.apply(model, cfg[0], **cfg[1])
        try:
            with torch.no_grad():
                return call()
        finally:
            vr.remove(model)

    return fn


def vit_b16(attn: str = "sdpa") -> nn.Module:
    """A randomly initialised ``transformers.ViTModel`` with ViT-B/16's shape at 224."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    cfg = ViTConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
                    image_size=224, patch_size=16, attn_implementation=attn)  # fmt: skip
    return ViTModel(cfg, add_pooling_layer=False).eval()


def speed(
    model: nn.Module, x: Tensor, cfgs: list[Config], rounds: int, dim: int, mlp: int
) -> list[dict[str, Any]]:
    """Speed-up, FLOPs ratio and kept tokens of each configuration against the unreduced model."""
    with torch.no_grad():
        ref = model(pixel_values=x).last_hidden_state
    n0 = ref.shape[1]
    base_flops = block_flops([(n0, n0)] * len(vr.hosts.find_host(model).layers), dim, mlp)
    fns: dict[str, Callable[[], Any]] = {"unreduced": lambda: model(pixel_values=x)}
    rows = []
    for cfg in cfgs:
        fns[_label(cfg)] = _reduced_call(model, cfg, lambda: model(pixel_values=x))
    with torch.no_grad():
        best = time_interleaved(fns, rounds)
    for cfg in cfgs:
        handle = vr.apply(model, cfg[0], **cfg[1])
        with torch.no_grad():
            model(pixel_values=x)
        trace, st = list(handle.trace), handle.state
        vr.remove(model)
        last = trace[-1][1]
        real = last if st is None or st.size is None else float((st.size > 0).sum(1).float().mean())
        rows.append({
            "method": cfg[0], **cfg[1], "speedup": best["unreduced"] / best[_label(cfg)],
            "flops_ratio": base_flops / block_flops(trace, dim, mlp), "tokens_out": real,
            "token_layers_ratio": n0 * len(trace) / sum(a for a, _ in trace),
            "kept_fraction": (real - 1) / (n0 - 1), "seconds": best[_label(cfg)],
        })  # fmt: skip
    rows.append({"method": "unreduced", "seconds": best["unreduced"], "speedup": 1.0, "flops_ratio": 1.0})
    return rows


def exactness(model: nn.Module, x: Tensor, methods: Sequence[str]) -> dict[str, bool]:
    """Whether each method at ``keep = 1`` reproduces the unreduced ``last_hidden_state`` bit for bit."""
    with torch.no_grad():
        ref = model(pixel_values=x).last_hidden_state
        out = {}
        for m in methods:
            vr.apply(model, m, keep=1.0)
            try:
                out[m] = bool(torch.equal(model(pixel_values=x).last_hidden_state, ref))
            finally:
                vr.remove(model)
    return out


def _pooled(out: Any) -> Tensor:
    for key in ("image_embeds", "pooler_output"):
        v = getattr(out, key, None)
        if v is not None:
            return v
    return out.last_hidden_state[:, 0]


def fidelity(folder: str, methods: Sequence[str], keeps: Sequence[float]) -> dict[str, Any]:
    """Cosine similarity of pooled embeddings (reduced vs unreduced) with local trained weights."""
    from transformers import AutoModel

    model = AutoModel.from_pretrained(folder, attn_implementation="sdpa").eval()
    vision = (
        getattr(model, "vision_model", None) if type(model).__name__ in ("CLIPModel", "SiglipModel") else None
    )
    model = vision if vision is not None else model
    cfg = model.config
    size = int(cfg.image_size)
    pre = Path(folder) / "preprocessor_config.json"
    mean, std = [0.5] * 3, [0.5] * 3
    if pre.exists():
        p = json.loads(pre.read_text())
        mean, std = p.get("image_mean", mean), p.get("image_std", std)
    x = (photos(size) - torch.tensor(mean)[:, None, None]) / torch.tensor(std)[:, None, None]
    with torch.no_grad():
        ref = _pooled(model(pixel_values=x)).float()
        rows = []
        for m in methods:
            for k in keeps:
                vr.apply(model, m, keep=k)
                try:
                    emb = _pooled(model(pixel_values=x)).float()
                finally:
                    vr.remove(model)
                cos = F.cosine_similarity(emb, ref, dim=-1)
                rows.append(
                    {"method": m, "keep": k, "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min())}
                )
    return {"weights": folder, "model": type(model).__name__, "images": int(x.shape[0]), "rows": rows}


def vistok1d(methods: Sequence[str], keep: float, rounds: int) -> dict[str, Any]:
    """PSNR of the shipped ``vistok-1d`` with its 1D encoder reduced to ``keep`` of its grid tokens."""
    import vistok
    from vistok.bench.metrics.pixel import psnr

    tok = vistok.create("vistok-1d").eval()
    x = photos(tok.input_size)

    def recon() -> Tensor:
        return (tok.reconstruct(x) * 255).round() / 255

    with torch.no_grad():
        base = psnr(recon(), x)
        grid = vr.hosts.find_host(tok)
        fns: dict[str, Callable[[], Any]] = {"unreduced": lambda: tok.encode(x)}
        for m in methods:
            fns[m] = _reduced_call(tok, (m, {"keep": keep}), lambda: tok.encode(x))
        best = time_interleaved(fns, rounds)
        rows = []
        for m in methods:
            handle = vr.apply(tok, m, keep=keep)
            try:
                p = psnr(recon(), x)
                trace = list(handle.trace)
            finally:
                vr.remove(tok)
            n_grid = trace[0][0] - grid.suffix
            rows.append({
                "method": m, "keep": keep, "psnr": float(p.mean()), "delta_psnr": float((p - base).mean()),
                "grid_tokens": n_grid, "grid_tokens_out": trace[-1][1] - grid.suffix,
                "encode_speedup": best["unreduced"] / best[m],
            })  # fmt: skip
    return {
        "model": "vistok-1d", "images": int(x.shape[0]), "size": tok.input_size, "psnr_unreduced": float(base.mean()),
        "latent_tokens": grid.suffix, "rows": rows,
    }  # fmt: skip


def plot(result: dict[str, Any], path: Path) -> None:
    """Speed-up against fidelity per method: ViT-B/16 speed vs kept fraction, and vistok-1d
    encode speed-up vs PSNR change (plus cosine fidelity when trained weights were given)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = 3 if result.get("fidelity") else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.2))
    rows = [r for r in result["speed"]["rows"] if "keep" in r]
    for m in sorted({r["method"] for r in rows}):
        rs = sorted((r for r in rows if r["method"] == m), key=lambda r: r["kept_fraction"])
        axes[0].plot([r["kept_fraction"] for r in rs], [r["speedup"] for r in rs], "o-", label=m)
    axes[0].axhline(1.0, color="grey", lw=0.8)
    axes[0].set(xlabel="tokens kept at the last block", ylabel="wall-clock speed-up",
                title="ViT-B/16 shape (random weights), CPU")  # fmt: skip
    axes[0].legend(fontsize=7)
    if result.get("vistok1d"):
        for r in result["vistok1d"]["rows"]:
            axes[1].scatter(r["encode_speedup"], r["delta_psnr"])
            axes[1].annotate(r["method"], (r["encode_speedup"], r["delta_psnr"]), fontsize=7)
        axes[1].set(xlabel="encode speed-up", ylabel="PSNR change (dB)",
                    title=f"vistok-1d, keep {result['vistok1d']['rows'][0]['keep']} of grid tokens")  # fmt: skip
    if panels == 3:
        speedups = {(r["method"], r.get("keep")): r["speedup"] for r in rows}
        for m in sorted({r["method"] for r in result["fidelity"]["rows"]}):
            fr = [r for r in result["fidelity"]["rows"] if r["method"] == m]
            axes[2].plot([speedups.get((m, r["keep"]), float("nan")) for r in fr],
                         [r["cosine_mean"] for r in fr], "o-", label=m)  # fmt: skip
        axes[2].set(
            xlabel="speed-up (ViT-B/16 shape)", ylabel="cosine to unreduced", title="fidelity (your weights)"
        )
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def _step_speed(args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    model = vit_b16("sdpa")
    x = torch.rand(args.batch, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rows = speed(model, x, _configs(methods, args.keeps, args.tome_r), args.rounds, 768, 3072)
    return {"model": "transformers ViTModel, ViT-B/16 shape, random init, sdpa", "batch": args.batch,
            "size": 224, "rounds": args.rounds, "rows": rows}  # fmt: skip


def _step_exactness(args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    x = torch.rand(1, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    return {attn: exactness(vit_b16(attn), x, methods) for attn in ("sdpa", "eager")}


def _step_fidelity(args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    return fidelity(args.weights, methods, args.keeps)


def _step_vistok1d(args: argparse.Namespace, methods: list[str]) -> dict[str, Any]:
    return vistok1d(methods, args.vistok_keep, args.rounds)


_STEPS: dict[str, Callable[[argparse.Namespace, list[str]], dict[str, Any]]] = {
    "speed": _step_speed,
    "exactness": _step_exactness,
    "fidelity": _step_fidelity,
    "vistok1d": _step_vistok1d,
}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run every measurement the arguments ask for; returns the results dict."""
    from tqdm.auto import tqdm

    methods = list(args.methods or vr.list_methods())
    steps = (
        ["speed", "exactness"]
        + (["fidelity"] if args.weights else [])
        + ([] if args.no_vistok else ["vistok1d"])
    )
    result: dict[str, Any] = {
        "vistok_version": __import__("vistok").__version__, "torch": torch.__version__,
        "machine": platform.processor() or platform.machine(), "threads": args.threads,
        "protocol": "interleaved rounds after a warm-up, best round per configuration; ratios only",
    }  # fmt: skip
    with torch_threads(args.threads), tqdm(steps, desc="reduce-bench", disable=None) as bar:
        for step in bar:
            bar.set_postfix_str(step)
            result[step] = _STEPS[step](args, methods)
    if not args.weights:
        result["fidelity_note"] = "no --weights given: random weights measure speed and exactness only"
    return result


def _print(result: dict[str, Any]) -> None:
    print(f"threads={result['threads']}  {result['speed']['model']}  batch={result['speed']['batch']}")
    print(f"{'method':12s} {'setting':10s} {'kept':>6s} {'speed-up':>9s} {'FLOPs x':>8s}")
    for r in result["speed"]["rows"]:
        if r["method"] == "unreduced":
            print(
                f"{'unreduced':12s} {'':10s} {1.0:6.2f} {1.0:9.2f} {1.0:8.2f}   ({r['seconds'] * 1e3:.0f} ms)"
            )
            continue
        setting = f"r={r['r']}" if "r" in r else f"keep={r['keep']}"
        print(
            f"{r['method']:12s} {setting:10s} {r['kept_fraction']:6.2f} {r['speedup']:9.2f} {r['flops_ratio']:8.2f}"
        )
    ex = result["exactness"]
    print("bit-identical at keep=1:", {k: all(v.values()) for k, v in ex.items()})
    if "fidelity" in result:
        for r in result["fidelity"]["rows"]:
            print(
                f"fidelity {r['method']:12s} keep={r['keep']:.2f} cos={r['cosine_mean']:.4f} (min {r['cosine_min']:.4f})"
            )
    else:
        print(result["fidelity_note"])
    if "vistok1d" in result:
        v = result["vistok1d"]
        print(f"vistok-1d: {v['images']} photos at {v['size']}, unreduced PSNR {v['psnr_unreduced']:.2f} dB")
        for r in v["rows"]:
            print(f"  {r['method']:12s} grid {r['grid_tokens']}->{r['grid_tokens_out']}  PSNR {r['psnr']:.2f} "
                  f"({r['delta_psnr']:+.3f} dB)  encode x{r['encode_speedup']:.2f}")  # fmt: skip


def markdown(result: dict[str, Any]) -> str:
    """The results as Markdown tables (the human report next to the JSON)."""
    sp = result["speed"]
    lines = [
        f"Speed: {sp['model']}, batch {sp['batch']}, {sp['size']}x{sp['size']}, {result['threads']} threads, "
        f"best of {sp['rounds']} interleaved rounds; torch {result['torch']}.",
        "",
        "| method | setting | tokens kept (last block) | speed-up | FLOPs ratio | token-layer ratio |",
        "|---|---|---|---|---|---|",
    ]
    for r in sp["rows"]:
        if r["method"] == "unreduced":
            lines.append(f"| unreduced | | 1.00 | 1.00 ({r['seconds']:.2f} s) | 1.00 | 1.00 |")
            continue
        setting = f"r={r['r']}" if "r" in r else f"keep={r['keep']}"
        tl = r.get("token_layers_ratio")
        lines.append(
            f"| {r['method']} | {setting} | {r['kept_fraction']:.2f} | {r['speedup']:.2f} | {r['flops_ratio']:.2f} "
            f"| {'' if tl is None else f'{tl:.2f}'} |"
        )
    ex = result["exactness"]
    lines += ["", "Bit-identical to the unreduced model at keep = 1: "
              + ", ".join(f"{attn}: {sum(v.values())}/{len(v)} methods" for attn, v in ex.items()), ""]  # fmt: skip
    if "fidelity" in result:
        f = result["fidelity"]
        lines += [f"Fidelity ({f['model']}, {f['images']} photos): cosine of pooled embeddings", "",
                  "| method | keep | mean | min |", "|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {r['method']} | {r['keep']} | {r['cosine_mean']:.4f} | {r['cosine_min']:.4f} |"
            for r in f["rows"]
        ]
    else:
        lines.append(result["fidelity_note"] + ".")
    if "vistok1d" in result:
        v = result["vistok1d"]
        lines += ["", f"vistok-1d ({v['images']} photos at {v['size']}, unreduced PSNR {v['psnr_unreduced']:.2f} dB; "
                  f"{v['latent_tokens']} latent tokens kept, grid tokens reduced):", "",
                  "| method | grid tokens | PSNR (dB) | change (dB) | encode speed-up |", "|---|---|---|---|---|"]  # fmt: skip
        lines += [
            f"| {r['method']} | {r['grid_tokens']} -> {r['grid_tokens_out']} | {r['psnr']:.2f} | {r['delta_psnr']:+.3f} "
            f"| {r['encode_speedup']:.2f} |"
            for r in v["rows"]
        ]
    return "\n".join(lines) + "\n"


def cmd_reduce_bench(args: argparse.Namespace) -> int:
    try:
        import transformers  # noqa: F401
    except ImportError:
        print("vistok reduce-bench: needs transformers (pip install 'vistok[reduce]')", file=sys.stderr)
        return 1
    result = run(args)
    _print(result)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2))
    atomic_write_text(out.with_suffix(".md"), markdown(result))
    plot(result, out.with_suffix(".png"))
    print(f"wrote {out} (+ .md, .png)")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "reduce-bench", help="token reduction: speed-up, FLOPs, exactness, fidelity per method"
    )
    p.add_argument(
        "--methods", nargs="*", default=None, help=f"default: all ({', '.join(vr.list_methods())})"
    )
    p.add_argument("--keeps", nargs="*", type=float, default=[0.75, 0.5, 0.25], help="kept fractions")
    p.add_argument("--tome-r", type=int, default=13, help="also time ToMe with this r per block")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--rounds", type=int, default=3, help="interleaved timing rounds (best is kept)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--weights", default=None, help="local trained from_pretrained folder for fidelity")
    p.add_argument("--vistok-keep", type=float, default=0.75, help="kept grid tokens for vistok-1d")
    p.add_argument("--no-vistok", action="store_true", help="skip the vistok-1d PSNR measurement")
    p.add_argument("--out", default="runs/reduce-bench/reduction.json")
    p.set_defaults(func=cmd_reduce_bench)
