"""Parity fixtures of taming-transformers' VQGAN, made by the official code.

    python scripts/make_official_fixtures.py taming --checkout /tmp/official/taming --commit SHA [--full]

The official ``taming/models/vqgan.py`` (``VQModel``) is imported from the checkout with two
stand-ins, installed in ``sys.modules`` only while that file is imported:

* ``pytorch_lightning``: a fake module whose ``LightningModule`` is ``torch.nn.Module``
  (``VQModel`` subclasses it; only its training hooks use Lightning);
* ``main``: a fake module whose ``instantiate_from_config`` builds a tiny stand-in of the
  training loss (a few tensors named like the LPIPS network and the patch discriminator of
  ``VQLPIPSWithDiscriminator``, whose real weights would need downloads). It only puts
  ``loss.*`` keys into the checkpoint, as the releases have them, for vistok to drop.

The encoder, decoder and quantizer are the official modules, unchanged, except in the small
cases: there ``taming.modules.diffusionmodules.model.Normalize`` is replaced while the model
is built by the same ``GroupNorm(eps=1e-6)`` with 4 groups instead of 32, so that 8- and
16-channel widths are legal and the checkpoints stay a few hundred kB (vistok builds the same
with ``groups=4``). ``--full`` runs the official modules with 32 groups at the released
configurations. Einops (imported by ``quantize.py``) must be importable.

Checkpoints are saved in the release layout: a Lightning ``last.ckpt``, ``{"epoch",
"global_step", "pytorch-lightning_version", "callbacks", "optimizer_states", "lr_schedulers",
"state_dict"}``, with a ``ModelCheckpoint`` callback class as a key of ``callbacks`` (pickled
by reference to ``pytorch_lightning.callbacks.model_checkpoint``, which vistok must read
without importing).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import tempfile
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from _photos import image_256, small_images
from safetensors.torch import save_file
from torch import nn

REPO = "CompVis/taming-transformers"

# the released ddconfig (configs/imagenet_vqgan.yaml and the model cards of both releases)
FULL_DD = dict(
    double_z=False,
    z_channels=256,
    resolution=256,
    in_channels=3,
    out_ch=3,
    ch=128,
    ch_mult=[1, 1, 2, 2, 4],
    num_res_blocks=2,
    attn_resolutions=[16],
    dropout=0.0,
)
FULL = {"taming-f16-1024": 1024, "taming-f16-16384": 16384}

SMALL = {
    "f4_tiny": dict(
        dd=dict(
            double_z=False,
            z_channels=16,
            resolution=32,
            in_channels=3,
            out_ch=3,
            ch=8,
            ch_mult=[1, 2, 2],
            num_res_blocks=1,
            attn_resolutions=[8],
            dropout=0.0,
        ),
        n_embed=64,
        embed_dim=8,
        groups=4,
    ),
}


# ---- the official code -------------------------------------------------------------------------
class _LossStandIn(nn.Module):
    """A few tensors with the names of ``VQLPIPSWithDiscriminator``'s (LPIPS + NLayerDiscriminator)."""

    def __init__(self) -> None:
        super().__init__()
        self.perceptual_loss = nn.Module()
        self.perceptual_loss.register_buffer("scaling_layer_shift", torch.zeros(1, 3, 1, 1))
        self.perceptual_loss.lin0 = nn.Sequential(nn.Dropout(), nn.Conv2d(4, 1, 1, bias=False))
        self.discriminator = nn.Module()
        self.discriminator.main = nn.Sequential(
            nn.Conv2d(3, 4, 4, 2, 1), nn.LeakyReLU(0.2), nn.BatchNorm2d(4)
        )


def _instantiate_from_config(config: Any) -> nn.Module:
    return _LossStandIn()


class _ModelCheckpoint:
    """Stands for Lightning's callback class, pickled by reference as a ``callbacks`` key."""


def _lightning_stub() -> dict[str, types.ModuleType]:
    pl = types.ModuleType("pytorch_lightning")
    pl.LightningModule = nn.Module  # type: ignore[attr-defined]
    cb = types.ModuleType("pytorch_lightning.callbacks")
    mc = types.ModuleType("pytorch_lightning.callbacks.model_checkpoint")
    _ModelCheckpoint.__module__ = mc.__name__
    _ModelCheckpoint.__qualname__ = _ModelCheckpoint.__name__ = "ModelCheckpoint"
    mc.ModelCheckpoint = _ModelCheckpoint  # type: ignore[attr-defined]
    pl.callbacks = cb  # type: ignore[attr-defined]
    cb.model_checkpoint = mc  # type: ignore[attr-defined]
    main = types.ModuleType("main")
    main.instantiate_from_config = _instantiate_from_config  # type: ignore[attr-defined]
    return {pl.__name__: pl, cb.__name__: cb, mc.__name__: mc, "main": main}


@contextlib.contextmanager
def _stubs() -> Iterator[None]:
    stubs = _lightning_stub()
    saved = {k: sys.modules.get(k) for k in stubs}
    sys.modules.update(stubs)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


_OFFICIAL: dict[str, types.ModuleType] = {}


def official_vqgan(checkout: Path) -> types.ModuleType:
    """The official ``taming/models/vqgan.py`` as a module (imported once, with the stand-ins)."""
    key = str(checkout)
    if key not in _OFFICIAL:
        if key in sys.path:
            sys.path.remove(key)
        sys.path.insert(0, key)  # ahead of scripts/official_fixtures, whose taming.py is this file
        # taming/ has no __init__.py: a namespace package, which any module named taming.py
        # earlier on sys.path (this file) would shadow; register the package explicitly
        for m in [m for m in sys.modules if m == "taming" or m.startswith("taming.")]:
            del sys.modules[m]
        pkg = types.ModuleType("taming")
        pkg.__path__ = [str(checkout / "taming")]  # type: ignore[attr-defined]
        sys.modules["taming"] = pkg
        path = checkout / "taming" / "models" / "vqgan.py"
        spec = importlib.util.spec_from_file_location("taming_official_vqgan", path)
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        # ``taming/`` has no __init__.py (a namespace package), and a plain module wins over a
        # namespace portion wherever it sits on sys.path: hide this file's folder meanwhile
        saved = list(sys.path)
        sys.path[:] = [p for p in sys.path if not (Path(p or ".") / "taming.py").is_file()]
        try:
            with _stubs():
                spec.loader.exec_module(mod)
        finally:
            sys.path[:] = saved
        _OFFICIAL[key] = mod
    return _OFFICIAL[key]


@contextlib.contextmanager
def _groups(n: int) -> Iterator[None]:
    """Build the official encoder/decoder with ``n`` GroupNorm groups (32: unchanged)."""
    import taming.modules.diffusionmodules.model as m

    orig = m.Normalize
    if n != 32:
        m.Normalize = lambda c: torch.nn.GroupNorm(num_groups=n, num_channels=c, eps=1e-6, affine=True)
    try:
        yield
    finally:
        m.Normalize = orig


def build_official(
    checkout: Path, dd: dict, n_embed: int, embed_dim: int, *, groups: int = 32, seed: int = 0
):
    """The official ``VQModel`` with seeded random weights (codebook and norms re-drawn so codes vary)."""
    mod = official_vqgan(checkout)
    torch.manual_seed(seed)
    with _groups(groups):
        model = mod.VQModel(
            ddconfig=dict(dd), lossconfig={"target": "stand-in"}, n_embed=n_embed, embed_dim=embed_dim
        )
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("loss."):
                continue
            if ".norm" in name or name.endswith(("norm_out.weight", "norm_out.bias")):
                p.copy_((1.0 if name.endswith("weight") else 0.0) + 0.1 * torch.randn_like(p))
    return model.eval()


def calibrate_codebook(model, images: torch.Tensor, seed: int = 1) -> None:
    """Redraw the codebook around the statistics of the encoder's output, so that codes vary."""
    with torch.no_grad():
        h = model.quant_conv(model.encoder(images * 2 - 1))
        flat = h.permute(0, 2, 3, 1).reshape(-1, h.shape[1])
        g = torch.Generator().manual_seed(seed)
        w = model.quantize.embedding.weight
        w.copy_(flat.mean(0) + flat.std(0) * torch.randn(w.shape, generator=g))


def model_state(model) -> OrderedDict:
    return OrderedDict((k, v.detach().clone()) for k, v in model.state_dict().items())


def save_lightning(model, path: Path) -> None:
    """A Lightning ``last.ckpt`` as taming's training wrote it."""
    with _stubs():
        mc = sys.modules["pytorch_lightning.callbacks.model_checkpoint"].ModelCheckpoint
        ckpt = {
            "epoch": 3,
            "global_step": 1200,
            "pytorch-lightning_version": "1.0.8",
            "callbacks": {mc: {"monitor": "val/rec_loss", "best_model_score": torch.tensor(0.25)}},
            "optimizer_states": [
                {"state": {}, "param_groups": [{"lr": 4.5e-6, "betas": (0.5, 0.9), "params": []}]}
            ],
            "lr_schedulers": [],
            "state_dict": model_state(model),
        }
        torch.save(ckpt, str(path))


def official_outputs(model, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """What the official code gives: pre-quant latent, ids ``[B, h, w]``, decoded codes (raw, ~[-1, 1])."""
    with torch.no_grad():
        x = images * 2 - 1
        h = model.quant_conv(model.encoder(x))
        _quant, _, (_, _, ind) = model.quantize(h)
        b, c, hh, ww = h.shape
        ids = ind.reshape(b, hh, ww)
        z_q = model.quantize.get_codebook_entry(ind.reshape(-1), shape=(b, hh, ww, c))
        recon = model.decode(z_q)
        forward, _ = model(x)
    return {"latent": h, "ids": ids.long(), "recon": recon, "forward": forward}


def _spec(case: dict) -> str:
    dd = case["dd"]

    def lst(v: list[int]) -> str:
        return "[" + ",".join(str(i) for i in v) + "]"

    return (
        f"taming-vqgan:ch={dd['ch']},ch_mult={lst(dd['ch_mult'])},num_res_blocks={dd['num_res_blocks']},"
        f"attn_resolutions={lst(dd['attn_resolutions'])},resolution={dd['resolution']},"
        f"z_channels={dd['z_channels']},embed_dim={case['embed_dim']},n_embed={case['n_embed']},groups={case['groups']}"
    )


# ---- the dispatcher's entry points ------------------------------------------------------------
def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    images, wide = small_images()
    names = []
    for name, case in SMALL.items():
        model = build_official(
            checkout, case["dd"], case["n_embed"], case["embed_dim"], groups=case["groups"]
        )
        calibrate_codebook(model, images)
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        save_lightning(model, d / "last.ckpt")
        o = official_outputs(model, images)
        ow = official_outputs(model, wide)
        tensors = {"images": images, "images_wide": wide}
        tensors.update({k: v.contiguous() for k, v in o.items()})
        tensors.update({f"{k}_wide": v.contiguous() for k, v in ow.items()})
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "io.safetensors"))
        n_codes = int(torch.unique(torch.cat([o["ids"].reshape(-1), ow["ids"].reshape(-1)])).numel())
        meta = {
            "spec": _spec(case),
            "checkpoint": "last.ckpt",
            "official_config": {
                "ddconfig": case["dd"],
                "n_embed": case["n_embed"],
                "embed_dim": case["embed_dim"],
            },
            "groups_note": f"official Normalize built with {case['groups']} GroupNorm groups (32 in the releases)",
            "atol_latent": 1e-5,
            "atol_recon": 1e-5,
            "distinct_codes": n_codes,
            "notes": "images in [0,1]; the official model read images*2-1. ids [B,h,w] = the official "
            "flat indices reshaped; recon = official decode(get_codebook_entry(ids)) (raw, ~[-1,1]); "
            "forward = official VQModel.forward (straight-through quant); *_wide: a 32x48 input.",
        }
        (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"{name}: {n_codes} distinct codes; ids {tuple(o['ids'].shape)} + {tuple(ow['ids'].shape)}")
        names.append(name)
    return names


def _params(model) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("loss."))


def full_check(checkout: Path) -> dict:
    import vistok

    torch.set_num_threads(1)
    x = image_256()
    rows = {}
    for name, n_embed in FULL.items():
        model = build_official(checkout, FULL_DD, n_embed, 256)
        calibrate_codebook(model, x)
        o = official_outputs(model, x)
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "last.ckpt"
            save_lightning(model, path)
            tok = vistok.create(name, weights=str(path))
        with torch.no_grad():
            lat = tok.latent(x)
            t = tok.encode(x)
            rec = tok.decode(t)
        ref = ((o["recon"] + 1) * 0.5).clamp(0, 1)
        rows[name] = {
            "official_parameters": _params(model),
            "vistok_parameters": sum(p.numel() for p in tok.parameters()),
            "ignored_keys": len(tok.ignored),
            "tokens": int(t.ids[0].numel()),
            "bits": float(t.bits[0]),
            "codes_equal": bool(torch.equal(t.ids, o["ids"])),
            "codes_mismatch_fraction": float((t.ids != o["ids"]).float().mean()),
            "distinct_codes": int(torch.unique(o["ids"]).numel()),
            "max_abs_diff_latent": float((lat - o["latent"]).abs().max()),
            "max_abs_diff_recon": float((rec - ref).abs().max()),
            "input": "skimage astronaut, square crop resized to 256x256 (bicubic)",
        }
        print(name, rows[name], flush=True)
    return {"family": "taming", "models": rows}


def speed_models(checkout: Path) -> list[tuple[str, Callable, Callable]]:
    import vistok

    out = []
    for name, n_embed in FULL.items():
        model = build_official(checkout, FULL_DD, n_embed, 256)
        calibrate_codebook(model, image_256())
        tok = vistok.create(name)
        tok.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("loss.")})
        tok.eval()

        def official(x: torch.Tensor, m=model) -> torch.Tensor:
            quant, _, _ = m.encode(x * 2 - 1)
            return ((m.decode(quant) + 1) * 0.5).clamp(0, 1)

        out.append((name, official, tok.reconstruct))
    return out
