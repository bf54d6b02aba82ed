"""Parity fixtures of the SEED-Voken tokenizers (Open-MAGVIT2 LFQ, IBQ), made by the official code.

    python scripts/make_official_fixtures.py seed_voken --checkout /tmp/official/seed_voken \
        --commit SHA [--full]

Run it with a Python that has ``einops`` (the official modules import it) on top of vistok's
environment, e.g. ``python -m venv --system-site-packages /tmp/venv-seed_voken`` +
``pip install -c constraints einops``.

Stubs: the official model classes subclass ``lightning.LightningModule`` (``lightning`` and
``pytorch_lightning`` are imported at the top of ``lfqgan.py`` / ``ibqgan.py``) and import
``instantiate_from_config`` from the repository's ``main.py`` (which pulls in Lightning's
CLI). Neither is installed: this script puts three tiny fake modules in ``sys.modules``
before importing the official code -- ``lightning`` and ``pytorch_lightning`` whose
``LightningModule`` is a bare ``torch.nn.Module``, and ``main`` whose
``instantiate_from_config`` builds ``config["target"]``. None of the code that runs for
encoding / decoding is replaced. The training loss (``VQLPIPSWithDiscriminator``, which
downloads VGG weights for LPIPS) is replaced by :class:`_TrainingLoss`: the official
``NLayerDiscriminator`` (small) and a frozen stand-in for the LPIPS net, so the state dict
holds ``loss.discriminator.*`` / ``loss.perceptual_loss.*`` keys and the ``LitEma`` holds
shadows of the discriminator, as in the released files.

Each case builds the official ``VQModel`` / ``IBQ`` (``use_ema=True``) at a small
configuration with seeded random weights, writes a Lightning-layout ``.ckpt``
(``state_dict`` with the model, ``loss.*`` and ``model_ema.*`` shadows, plus
``hyper_parameters``, ``epoch``, ``global_step``, ``pytorch-lightning_version``,
``callbacks``, ``optimizer_states``, ``lr_schedulers``), then reloads it the way
``evaluation_image.py`` does (``torch.load(...)["state_dict"]``,
``load_state_dict(strict=False)``) and runs ``encode`` / ``decode`` inside ``ema_scope()``.

Size: the fixture stores its tensors as float16 (the releases store float32; both codes
then run in float32 on the same values), and the raw (last-step) weight of each parameter
is the float16 buffer of its EMA shadow read one element further on (a view of one shared
storage), so every raw tensor differs from its shadow while the file holds one copy.
"""

from __future__ import annotations

import json
import sys
import tempfile
import types
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor, nn

REPO = "TencentARC/SEED-Voken"

# ---- the small cases -----------------------------------------------------------------------
LFQ_SMALL = {"ch": 32, "ch_mult": [1, 1], "num_res_blocks": 1, "z_channels": 6}
# num_res_blocks=0 (a configuration the official code builds): the decoder keeps one ResBlock and
# one attention block per level, the encoder only its middle; it halves the fixture's size
IBQ_SMALL = {
    "ch": 32,
    "ch_mult": [1, 1],
    "num_res_blocks": 0,
    "z_channels": 16,
    "attn_resolutions": [16],
    "resolution": 32,
    "embed_dim": 8,
    "n_embed": 64,
}
FULL_LFQ = {"ch": 128, "ch_mult": [1, 1, 2, 2, 4], "num_res_blocks": 4, "z_channels": 18}
FULL_IBQ = {
    "ch": 128,
    "ch_mult": [1, 1, 2, 2, 4],
    "num_res_blocks": 4,
    "z_channels": 256,
    "attn_resolutions": [16],
    "resolution": 256,
    "embed_dim": 256,
}
IBQ_SIZES = (1024, 8192, 16384, 262144)


# ---- stubs and the official classes -----------------------------------------------------------
class _FakeLightningModule(nn.Module):
    """What the official classes need of ``LightningModule`` to build and run: nothing."""


def _instantiate_from_config(config: dict[str, Any]) -> Any:
    target = config["target"]
    if isinstance(target, str):
        import importlib

        module, name = target.rsplit(".", 1)
        target = getattr(importlib.import_module(module), name)
    return target(**config.get("params", {}))


def _install_stubs() -> None:
    for name in ("lightning", "pytorch_lightning"):
        if name not in sys.modules:
            mod = types.ModuleType(name)
            mod.LightningModule = _FakeLightningModule  # type: ignore[attr-defined]
            sys.modules[name] = mod
    if "main" not in sys.modules:
        mod = types.ModuleType("main")
        mod.instantiate_from_config = _instantiate_from_config  # type: ignore[attr-defined]
        sys.modules["main"] = mod


def _official(checkout: Path) -> types.SimpleNamespace:
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    _install_stubs()
    from src.IBQ.models.ibqgan import IBQ
    from src.IBQ.modules.discriminator.model import NLayerDiscriminator as IBQDisc
    from src.Open_MAGVIT2.models.lfqgan import VQModel
    from src.Open_MAGVIT2.modules.discriminator.model import NLayerDiscriminator as LFQDisc

    return types.SimpleNamespace(VQModel=VQModel, IBQ=IBQ, LFQDisc=LFQDisc, IBQDisc=IBQDisc)


class _TrainingLoss(nn.Module):
    """Stand-in for ``VQLPIPSWithDiscriminator``: the official discriminator and a frozen LPIPS-like net."""

    def __init__(self, disc: type, ndf: int = 4) -> None:
        super().__init__()
        self.discriminator = disc(input_nc=3, ndf=ndf, n_layers=1)
        self.perceptual_loss = nn.Conv2d(3, 1, 1).requires_grad_(False)


def _ddconfig(cfg: dict[str, Any], lfq: bool) -> dict[str, Any]:
    dd = {
        "double_z": False,
        "z_channels": cfg["z_channels"],
        "resolution": cfg.get("resolution", 128),
        "in_channels": 3,
        "out_ch": 3,
        "ch": cfg["ch"],
        "ch_mult": list(cfg["ch_mult"]),
        "num_res_blocks": cfg["num_res_blocks"],
    }
    if not lfq:
        dd.update(attn_resolutions=list(cfg["attn_resolutions"]), dropout=0.0)
    return dd


def _init_args(cfg: dict[str, Any], lfq: bool, loss_target: Any, *, use_ema: bool) -> dict[str, Any]:
    """The ``model.init_args`` of the official config (``loss_target``: class or dotted path)."""
    dd = _ddconfig(cfg, lfq)
    if lfq:
        return {
            "ddconfig": dd,
            "lossconfig": {"target": loss_target, "params": {}},
            "n_embed": 2 ** cfg["z_channels"],
            "embed_dim": cfg["z_channels"],
            "sample_minimization_weight": 1.0,
            "batch_maximization_weight": 1.0,
            "scheduler_type": "None",
            "use_ema": use_ema,
        }
    return {
        "ddconfig": dd,
        "lossconfig": {"target": loss_target, "params": {}},
        "n_embed": cfg["n_embed"],
        "embed_dim": cfg["embed_dim"],
        "l2_normalize": False,
        "use_entropy_loss": True,
        "sample_minimization_weight": 1.0,
        "batch_maximization_weight": 1.0,
        "entropy_temperature": 0.01,
        "beta": 0.25,
        "use_ema": use_ema,
    }


def _build(off: types.SimpleNamespace, cfg: dict[str, Any], lfq: bool, *, use_ema: bool) -> nn.Module:
    disc = off.LFQDisc if lfq else off.IBQDisc
    loss = {"target": lambda: _TrainingLoss(disc), "params": {}}
    args = _init_args(cfg, lfq, None, use_ema=use_ema)
    args["lossconfig"] = loss
    cls = off.VQModel if lfq else off.IBQ
    return cls(**args).eval()


def _randomize(model: nn.Module, gen: torch.Generator) -> None:
    """Seeded random weights with varied codes: default-init scale, perturbed norms and biases."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if not p.requires_grad:
                continue
            if name.endswith("embedding.weight"):
                p.copy_(torch.randn(p.shape, generator=gen))
            elif p.ndim == 1 and name.endswith("weight"):  # norms
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=gen))
            elif p.ndim == 1:  # biases
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=gen) * (1.0 / fan_in) ** 0.5)


def _lightning_ckpt(
    model: nn.Module, hparams: dict[str, Any], *, shared: bool, dtype: torch.dtype
) -> dict[str, Any]:
    """The model as ``ModelCheckpoint`` writes it; ``shared``: raw weights = shadow storage shifted by one."""
    sd = OrderedDict(model.state_dict().items())
    if shared:
        ema = model.model_ema
        names = [n for n, p in model.named_parameters() if p.requires_grad]
        shadows = [getattr(ema, ema.m_name2s_name[n]) for n in names]
        flat = torch.cat([t.reshape(-1) for t in shadows] + [torch.zeros(1)]).to(dtype)
        off = 0
        params = dict(model.named_parameters())
        for n, t in zip(names, shadows):
            k = t.numel()
            sd["model_ema." + ema.m_name2s_name[n]] = flat[off : off + k].view(t.shape)
            sd[n] = flat[off + 1 : off + 1 + k].view(t.shape)
            with torch.no_grad():  # the model now holds what the file holds
                getattr(ema, ema.m_name2s_name[n]).copy_(sd["model_ema." + ema.m_name2s_name[n]])
                params[n].copy_(sd[n])
            off += k
    else:
        sd = OrderedDict((k, v.to(dtype) if v.is_floating_point() and v.ndim else v) for k, v in sd.items())
    return {
        "epoch": 7,
        "global_step": 12345,
        "pytorch-lightning_version": "2.2.0",
        "state_dict": sd,
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 7}}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': None, 'mode': 'min', 'every_n_train_steps': 0, 'every_n_epochs': 1, "
            "'train_time_interval': None}": {"best_model_path": "", "dirpath": "../../checkpoints/vqgan/test"}
        },
        "optimizer_states": [],
        "lr_schedulers": [],
        "hparams_name": "kwargs",
        "hyper_parameters": hparams,
    }


def _set_ema(model: nn.Module, gen: torch.Generator) -> None:
    """EMA shadows that differ from the raw weights (the raw ones get re-randomized)."""
    ema = model.model_ema
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                getattr(ema, ema.m_name2s_name[n]).copy_(p)
    _randomize(model, gen)


def _load_like_evaluation(
    off: types.SimpleNamespace, cfg: dict[str, Any], lfq: bool, path: Path
) -> nn.Module:
    """``evaluation_image.load_vqgan_new``: build from the config, ``torch.load(...)["state_dict"]``, strict=False."""
    model = _build(off, cfg, lfq, use_ema=True)
    sd = torch.load(str(path), map_location="cpu")["state_dict"]
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model.eval()


@torch.no_grad()
def _run(model: nn.Module, images: Tensor, lfq: bool) -> dict[str, Tensor]:
    """The official encode / decode (in the current weights) of images in [0, 1]."""
    x = images * 2.0 - 1.0
    b = x.shape[0]
    if lfq:
        feats = model.encoder(x)
        quant, _, indices, _ = model.encode(x)
    else:
        feats = model.quant_conv(model.encoder(x))
        quant, _, (_, _, indices) = model.encode(x)
    h, w = feats.shape[-2:]
    codes = indices.reshape(b, h, w).long()
    recon = model.decode(quant)
    if lfq:
        entry = model.quantize.get_codebook_entry(codes.reshape(b, -1), (b, h, w, feats.shape[1]), "pre")
    else:
        entry = model.quantize.get_codebook_entry(codes.reshape(-1), (b, h, w, feats.shape[1]))
    recon_codes = model.decode(entry)
    return {"features": feats, "codes": codes, "recon": recon, "recon_codes": recon_codes}


def _images(h: int, w: int) -> Tensor:
    """Two real images in [0, 1]: the astronaut's face and the cat, area-resized to ``h`` x ``w``."""
    from skimage import data

    crops = [data.astronaut()[20:276, 120:376], data.chelsea()[20:276, 100:356]]
    out = []
    for c in crops:
        t = torch.from_numpy(c.copy()).permute(2, 0, 1).float().div(255.0)[None]
        out.append(F.interpolate(t, size=(h, w), mode="area"))
    return torch.cat(out).clamp(0, 1).contiguous()


def _spec(cfg: dict[str, Any], lfq: bool) -> str:
    mult = "-".join(str(m) for m in cfg["ch_mult"])
    if lfq:
        return (
            f"open-magvit2:ch={cfg['ch']},ch_mult={mult},num_res_blocks={cfg['num_res_blocks']},"
            f"z_channels={cfg['z_channels']},resolution=32"
        )
    attn = "-".join(str(a) for a in cfg["attn_resolutions"])
    return (
        f"ibq:ch={cfg['ch']},ch_mult={mult},num_res_blocks={cfg['num_res_blocks']},attn_resolutions={attn},"
        f"resolution={cfg['resolution']},z_channels={cfg['z_channels']},embed_dim={cfg['embed_dim']},"
        f"codebook_size={cfg['n_embed']}"
    )


def _make_case(
    off: types.SimpleNamespace, out: Path, name: str, cfg: dict[str, Any], lfq: bool, seed: int
) -> None:
    d = out / name
    d.mkdir(parents=True, exist_ok=True)
    for old in d.iterdir():
        old.unlink()
    gen = torch.Generator().manual_seed(seed)
    model = _build(off, cfg, lfq, use_ema=True)
    _randomize(model, gen)
    _set_ema(model, gen)
    target = (
        "src.Open_MAGVIT2.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"
        if lfq
        else "src.IBQ.modules.losses.vqperceptual.VQLPIPSWithDiscriminator"
    )
    hparams = _init_args(cfg, lfq, target, use_ema=True)
    ckpt = _lightning_ckpt(model, hparams, shared=True, dtype=torch.float16)
    fname = "model.ckpt"
    torch.save(ckpt, d / fname)

    official = _load_like_evaluation(off, cfg, lfq, d / fname)
    images = _images(32, 32)
    raw = _run(official, images, lfq)
    with official.ema_scope():
        res = _run(official, images, lfq)
    n_codes = int(res["codes"].unique().numel())
    assert n_codes > 4, f"{name}: only {n_codes} distinct codes"
    assert not torch.equal(res["codes"], raw["codes"]), "EMA and raw weights give the same codes"
    tensors = {
        "images": images,
        "features": res["features"].float(),
        "codes": res["codes"],
        "recon": res["recon"].float(),
        "codes_raw": raw["codes"],
    }
    err = (res["recon"] - res["recon_codes"]).abs().max().item()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "io.safetensors"))
    meta = {
        "spec": _spec(cfg, lfq),
        "checkpoint": fname,
        "official_class": "src.Open_MAGVIT2.models.lfqgan.VQModel" if lfq else "src.IBQ.models.ibqgan.IBQ",
        "official_config": hparams,
        "tolerances": {"features": 1e-4, "recon": 1e-4},
        "distinct_codes": n_codes,
        "notes": (
            "images: astronaut face and chelsea crops area-resized to 32x32, [0, 1]; official input 2x-1. "
            "features: encoder output before quantization (IBQ: after quant_conv); codes: official indices "
            "[B, h, w] under ema_scope(); recon: official decode(quant) in model space [-1, 1], unclamped, "
            "EMA weights; codes_raw: the same without ema_scope (raw weights). "
            f"official decode(get_codebook_entry(codes)) differs from recon by {err:.2e} "
            "(the straight-through value z + (q - z) vs the exact code vectors). Checkpoint tensors are "
            "float16 and the raw weights are views of the EMA storage shifted by one element (size)."
        ),
    }
    (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"{name}: {n_codes} distinct codes, recon range [{res['recon'].min():.2f}, {res['recon'].max():.2f}]"
    )


def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    off = _official(checkout)
    _make_case(off, out, "lfq_small", LFQ_SMALL, True, seed=1)
    _make_case(off, out, "ibq_small", IBQ_SMALL, False, seed=2)
    return ["lfq_small", "ibq_small"]


# ---- full configurations ------------------------------------------------------------------------
_NAMES: dict[str, tuple[dict[str, Any], bool]] = {
    "open-magvit2-256": (FULL_LFQ, True),
    **{f"ibq-{n}": ({**FULL_IBQ, "n_embed": n}, False) for n in IBQ_SIZES},
}


def _official_params(model: nn.Module) -> int:
    """Parameters of the tokenizer proper (no training loss, no EMA buffers)."""
    return sum(p.numel() for n, p in model.named_parameters() if not n.startswith("loss."))


def _to_vistok(name: str, model: nn.Module, hparams: dict[str, Any], **kw: Any) -> nn.Module:
    import vistok

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.ckpt"
        torch.save(_lightning_ckpt(model, hparams, shared=False, dtype=torch.float32), path)
        return vistok.create(name, weights=str(path), **kw)


def full_check(checkout: Path) -> dict[str, Any]:
    """Each name at its full configuration, random weights with EMA shadows, one 256x256 image."""
    torch.set_num_threads(1)
    off = _official(checkout)
    from skimage import data

    img = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1).float().div(255.0)[None]
    img = F.interpolate(img, size=(256, 256), mode="area").clamp(0, 1)
    results: dict[str, Any] = {"image": "skimage astronaut, area-resized to 256x256", "names": {}}
    for i, (name, (cfg, lfq)) in enumerate(_NAMES.items()):
        gen = torch.Generator().manual_seed(100 + i)
        model = _build(off, cfg, lfq, use_ema=True)
        _randomize(model, gen)
        _set_ema(model, gen)
        hparams = _init_args(cfg, lfq, "stub", use_ema=True)
        with model.ema_scope():
            ref = _run(model, img, lfq)
        n_off = _official_params(model)
        tok = _to_vistok(name, model, hparams)
        del model
        with torch.no_grad():
            feats = tok.features(img)
            toks = tok.encode(img)
            recon = tok.decode_model(toks.ids)
        row = {
            "official_parameters": n_off,
            "vistok_parameters": sum(p.numel() for p in tok.parameters()),
            "ema_weights": bool(tok.ema_used),
            "tokens": int(toks.ids[0].numel()),
            "bits_per_image": float(toks.bits[0]),
            "codes_equal": bool(torch.equal(toks.ids, ref["codes"])),
            "codes_differing": int((toks.ids != ref["codes"]).sum()),
            "distinct_codes": int(ref["codes"].unique().numel()),
            "features_max_abs_diff": float((feats - ref["features"]).abs().max()),
            "recon_max_abs_diff": float((recon - ref["recon"]).abs().max()),
            "recon_vs_official_decode_of_codes": float((recon - ref["recon_codes"]).abs().max()),
        }
        results["names"][name] = row
        print(name, json.dumps(row), flush=True)
        del tok, ref
    return results


# ---- speed ----------------------------------------------------------------------------------------
def speed_models(checkout: Path) -> list[tuple[str, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]:
    """``(name, official_fn, vistok_fn)`` at full configuration with the same random weights.

    ibq-1024 / ibq-8192 are ibq-16384's network with a smaller codebook and are left out (memory);
    ibq-262144 is kept for its quantization cost. Both callables take ``[1, 3, 256, 256]`` in
    ``[0, 1]`` and return the reconstruction in ``[0, 1]``.
    """
    off = _official(checkout)
    out = []
    for i, name in enumerate(("open-magvit2-256", "ibq-16384", "ibq-262144")):
        cfg, lfq = _NAMES[name]
        model = _build(off, cfg, lfq, use_ema=False)
        _randomize(model, torch.Generator().manual_seed(200 + i))
        tok = _to_vistok(name, model, _init_args(cfg, lfq, "stub", use_ema=False))
        model.loss = nn.Identity()  # not used by encode / decode

        def official_fn(img: Tensor, model: nn.Module = model) -> Tensor:
            with torch.no_grad():
                quant = model.encode(img * 2.0 - 1.0)[0]
                return ((model.decode(quant) + 1.0) * 0.5).clamp(0.0, 1.0)

        def vistok_fn(img: Tensor, tok: nn.Module = tok) -> Tensor:
            return tok.reconstruct(img)

        out.append((name, official_fn, vistok_fn))
    return out
