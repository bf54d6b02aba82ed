"""Parity fixtures of MAR's KL-16 VAE, made by the official code.

    python scripts/make_official_fixtures.py mar --checkout /tmp/official/mar --commit SHA [--full]

The official ``models/vae.py`` is imported from the checkout (it needs only torch and numpy).
Its ``AutoencoderKL`` always builds ``Encoder``/``Decoder`` with ``ch=128``; the small case
builds the official ``Encoder`` and ``Decoder`` classes at ``ch=8`` with the same other
arguments ``AutoencoderKL`` passes, assembles them into an official ``AutoencoderKL`` object
(its ``encode`` / ``decode`` methods are used unchanged), and builds ``Normalize`` with 4 GroupNorm
groups while it is built, so that 8-channel widths are legal (vistok builds the same with
``groups=4``). ``--full`` uses the official ``AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))``
unchanged, as ``main_mar.py`` builds it.

The checkpoint is saved as the release is: ``torch.save({"model": state_dict})`` (``kl16.ckpt``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import sys
import tempfile
import types
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from _photos import image_256, small_images
from safetensors.torch import save_file

REPO = "LTH14/mar"
_OFFICIAL: dict[str, types.ModuleType] = {}


def official_vae(checkout: Path) -> types.ModuleType:
    """The official ``models/vae.py`` as a module."""
    key = str(checkout)
    if key not in _OFFICIAL:
        spec = importlib.util.spec_from_file_location("mar_official_vae", checkout / "models" / "vae.py")
        assert spec is not None and spec.loader is not None
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        _OFFICIAL[key] = mod
    return _OFFICIAL[key]


@contextlib.contextmanager
def _groups(vae: types.ModuleType, n: int) -> Iterator[None]:
    original = vae.Normalize
    vae.Normalize = lambda c, num_groups=32: original(c, num_groups=n)
    try:
        yield
    finally:
        vae.Normalize = original


def build_small(checkout: Path, *, ch: int, ch_mult: tuple[int, ...], embed_dim: int, seed: int):
    """An official ``AutoencoderKL`` at ``ch`` channels (4 GroupNorm groups), seeded random weights."""
    vae = official_vae(checkout)
    torch.manual_seed(seed)
    with _groups(vae, 4):
        model = vae.AutoencoderKL.__new__(vae.AutoencoderKL)
        torch.nn.Module.__init__(model)
        kw = dict(ch=ch, ch_mult=ch_mult, z_channels=embed_dim, resolution=32, num_res_blocks=1)
        model.encoder = vae.Encoder(**kw, attn_resolutions=(8,))
        model.decoder = vae.Decoder(**kw)
        model.use_variational = True
        model.quant_conv = torch.nn.Conv2d(2 * embed_dim, 2 * embed_dim, 1)
        model.post_quant_conv = torch.nn.Conv2d(embed_dim, embed_dim, 1)
        model.embed_dim = embed_dim
    _spread(model, seed)
    return model.eval()


def _spread(model: torch.nn.Module, seed: int) -> None:
    """Give GroupNorm affines random values, so the fixture exercises them (defaults are 1 / 0)."""
    g = torch.Generator().manual_seed(seed + 1)
    for m in model.modules():
        if isinstance(m, torch.nn.GroupNorm):
            m.weight.data = 1 + 0.2 * torch.randn(m.weight.shape, generator=g)
            m.bias.data = 0.1 * torch.randn(m.bias.shape, generator=g)


@torch.no_grad()
def official_outputs(model, images: torch.Tensor, seed: int = 3) -> dict[str, torch.Tensor]:
    """Posterior mean, log-variance (clamped), a seeded sample and the decodes, by the official code."""
    post = model.encode(images * 2 - 1)
    torch.manual_seed(seed)
    sample = post.sample()
    return {
        "mean": post.mode(),
        "logvar": post.logvar,
        "sample": sample,
        "recon": model.decode(post.mode()),
        "recon_of_half": model.decode(post.mode().half().float()),
    }


def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    model = build_small(checkout, ch=8, ch_mult=(1, 2, 2), embed_dim=4, seed=0)
    d = out / "kl_tiny"
    d.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict()}, d / "kl16.ckpt")
    square, wide = small_images()
    tensors = {"images": square, "images_wide": wide}
    for suffix, x in (("", square), ("_wide", wide)):
        for k, v in official_outputs(model, x).items():
            tensors[k + suffix] = v
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "io.safetensors"))
    case = {
        "spec": "mar-kl:embed_dim=4,ch=8,ch_mult=[1,2,2],num_res_blocks=1,attn_resolutions=[8],resolution=32,groups=4",
        "weights": "kl16.ckpt",
        "sample_seed": 3,
        "atol": 2e-5,
        "notes": "official AutoencoderKL.encode/decode on images*2-1; mean = posterior.mode(); sample = "
        "torch.manual_seed(3); posterior.sample(); recon = decode(mean) (raw, ~[-1,1]); recon_of_half = "
        "decode of the float16-rounded mean (what vistok's Tokens carry); *_wide: a 32x48 input.",
    }
    (d / "case.json").write_text(json.dumps(case, indent=2) + "\n")
    return ["kl_tiny"]


def _full_official(checkout: Path, seed: int = 0):
    vae = official_vae(checkout)
    torch.manual_seed(seed)
    model = vae.AutoencoderKL(embed_dim=16, ch_mult=(1, 1, 2, 2, 4))
    _spread(model, seed)
    return model.eval()


def full_check(checkout: Path) -> dict:
    import vistok

    torch.set_num_threads(1)
    model = _full_official(checkout)
    x = image_256()
    o = official_outputs(model, x)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kl16.ckpt"
        torch.save({"model": model.state_dict()}, path)
        tok = vistok.create("mar-kl16", weights=str(path))
    with torch.no_grad():
        mean, logvar = tok.posterior(x)
        t = tok.encode(x)
        rec = tok.decode(t)
    ref = ((o["recon_of_half"] + 1) * 0.5).clamp(0, 1)
    row = {
        "official_parameters": sum(p.numel() for p in model.parameters()),
        "vistok_parameters": sum(p.numel() for p in tok.parameters()),
        "latent_shape": list(t.latents.shape),
        "bits": float(t.bits[0]),
        "max_abs_diff_mean": float((mean - o["mean"]).abs().max()),
        "max_abs_diff_logvar": float((logvar - o["logvar"]).abs().max()),
        "max_abs_diff_recon": float((rec - ref).abs().max()),
        "input": "skimage astronaut, square crop resized to 256x256 (bicubic)",
    }
    print(row, flush=True)
    return {"family": "mar", "models": {"mar-kl16": row}}


def speed_models(checkout: Path) -> list[tuple[str, Callable, Callable]]:
    import vistok

    model = _full_official(checkout)
    tok = vistok.create("mar-kl16")
    tok.load_state_dict(model.state_dict())
    tok.eval()

    def official(x: torch.Tensor) -> torch.Tensor:
        return ((model.decode(model.encode(x * 2 - 1).mode()) + 1) * 0.5).clamp(0, 1)

    return [("mar-kl16", official, tok.reconstruct)]


if __name__ == "__main__":  # pragma: no cover
    sys.exit("run through scripts/make_official_fixtures.py mar")
