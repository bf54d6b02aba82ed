"""Parity fixtures of the TAESD family, made by the official ``taesd.py`` and by diffusers' ``AutoencoderTiny``.

    python scripts/make_official_fixtures.py taesd --checkout /tmp/official/taesd --commit SHA [--full]

``--checkout`` is an extracted work tree of github.com/madebyollin/taesd (``taesd.py``,
which imports only torch at top level, plus whichever ``*_encoder.pth`` / ``*_decoder.pth``
the checkout holds). Nothing needs installing: ``taesd.py`` runs on the project's torch, and
the diffusers case uses the diffusers already installed in the environment (its version is
recorded in ``case.json``).

Cases (random weights, seeded; inputs are two real photographs area-resized to 32x48, 32x64 for the 32x model):

* ``taesd-w4``, ``taef2-w4``, ``taesana-w4``: the official ``Encoder``/``Decoder`` (taesd,
  and taef2's ``use_midblock_gn``) and ``F32Encoder``/``F32Decoder`` (taesana), saved as the
  release is: ``NAME_encoder.pth`` + ``NAME_decoder.pth``, bare ``nn.Sequential`` state dicts
  in float16 (the real ``taef2_*.pth`` / ``taesana_encoder.pth`` are float16 ``OrderedDict``s),
  read back with ``torch.load(weights_only=True)`` into the float32 modules exactly as
  ``TAESD.__init__`` does. The official constructors hard-code the width 64 (and
  32/128/256 in the f32 pair); at that width a pair is 2.5-9.6 M parameters, far over the
  fixture budget, so the widths are narrowed 16x (64 -> 4) *while building*: the module's
  ``conv`` and ``Block`` globals, which the constructors call, are wrapped to divide each of
  those width literals once (``Block`` builds its inner convolutions with the original
  ``conv``). Layer order, forward code, key names and file
  layout are the official ones; vistok builds the same with ``channels=4``.
  The small taef2/taesana cases use 12 latent channels (32 is one of the narrowed literals).
* ``diffusers-taesd-w4``: diffusers ``AutoencoderTiny`` (block widths 4, 4 latent channels)
  written with ``save_pretrained`` (``config.json`` + ``diffusion_pytorch_model.safetensors``):
  the Hub layout of taesd/taesdxl/taesd3/taef1. diffusers takes and returns ``[-1, 1]``.

Random weights: ``_randomize`` redraws every conv at variance ``1.2 / fan_in`` (the default
init shrinks activations through ~40 layers until the latents carry almost nothing) and
the decoder's last bias is raised by 0.5 (outputs around mid-grey, mostly inside the clamp);
``case.json`` records the latent spread and how much of the output lies in ``(0, 1)``.

``io.safetensors`` of each case: ``images`` ``[2, 3, 32, 48]`` (``[2, 3, 32, 64]``) in ``[0, 1]``; ``latents``
(the official encoder's float32 output); ``decoded`` (the official decoder's unclamped
output on ``latents`` rounded to float16, which is what vistok's ``decode`` receives).

``full_check``: each registered name at its full official configuration with random weights
(drawn as for the cases; official model vs vistok loaded from the same ``.pth`` pair, one
256x256 photograph; ``max_abs_recon`` compares both decoders on the same float16 latents),
then, for every name whose real weights are in the checkout (taef2 pair, taesana encoder),
the same comparison with the real weights plus the PSNR of the reconstruction.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

REPO = "madebyollin/taesd"

# name -> (latent channels, official arch_variant)
NAMES: dict[str, tuple[int, str | None]] = {
    "taesd": (4, None),
    "taesdxl": (4, None),
    "taesd3": (16, None),
    "taef1": (16, None),
    "taef2": (32, "flux_2"),
    "taesana": (32, "f32"),
}
OFFICIAL_WIDTHS = (32, 64, 128, 256)  # every width literal of the official constructors


def _official(checkout: Path) -> Any:
    sys.path.insert(0, str(checkout))
    return importlib.import_module("taesd")


def _photos(h: int, w: int) -> torch.Tensor:
    """Astronaut and Chelsea (skimage), area-resized to ``h x w``: float ``[2, 3, h, w]`` in ``[0, 1]``."""
    from skimage import data

    out = []
    for img in (data.astronaut(), data.chelsea()):
        x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0
        out.append(F.interpolate(x, size=(h, w), mode="area"))
    return torch.cat(out).clamp(0, 1).contiguous()


@contextlib.contextmanager
def _narrow(mod: Any, factor: int) -> Iterator[None]:
    """While active, the official constructors build every 32/64/128/256 width ``factor`` times narrower."""
    conv, block = mod.conv, mod.Block

    def w(c: int) -> int:
        return c // factor if c in OFFICIAL_WIDTHS else c

    def narrow_conv(n_in: int, n_out: int, **kw: Any) -> torch.nn.Module:
        return conv(w(n_in), w(n_out), **kw)

    class NarrowBlock(block):  # type: ignore[misc, valid-type]
        def __init__(self, n_in: int, n_out: int, **kw: Any):
            mod.conv = conv  # the block's own convolutions: already narrowed widths
            try:
                super().__init__(w(n_in), w(n_out), **kw)
            finally:
                mod.conv = narrow_conv

    mod.conv, mod.Block = narrow_conv, NarrowBlock
    try:
        yield
    finally:
        mod.conv, mod.Block = conv, block


def _build(mod: Any, latent: int, arch: str | None) -> tuple[torch.nn.Module, torch.nn.Module]:
    if arch == "f32":
        return mod.F32Encoder(latent), mod.F32Decoder(latent)
    gn = arch == "flux_2"
    return mod.Encoder(latent, use_midblock_gn=gn), mod.Decoder(latent, use_midblock_gn=gn)


def _randomize(*modules: torch.nn.Module, seed: int) -> None:
    """Seeded weights that keep activations O(1) through ~40 layers (the default init decays them)."""
    g = torch.Generator().manual_seed(seed)
    for m in modules:
        for name, p in m.named_parameters():
            with torch.no_grad():
                if p.ndim == 4:
                    fan_in = p.shape[1] * p.shape[2] * p.shape[3]
                    p.copy_(torch.randn(p.shape, generator=g) * (1.2 / fan_in) ** 0.5)
                elif name.endswith("weight"):  # GroupNorm scale
                    p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
                else:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))


@torch.no_grad()
def _run(enc: torch.nn.Module, dec: torch.nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    z = enc(images)
    return {"images": images, "latents": z, "decoded": dec(z.half().float())}


def _stats(io: dict[str, torch.Tensor]) -> dict[str, float]:
    z, r = io["latents"], io["decoded"]
    return {
        "latent_std": round(float(z.std()), 4),
        "decoded_min": round(float(r.min()), 4),
        "decoded_max": round(float(r.max()), 4),
        "recon_in_range_fraction": round(float(((r > 0) & (r < 1)).float().mean()), 4),
    }


def _save_release(module: torch.nn.Module, path: Path) -> None:
    """As the release stores it: the bare ``state_dict`` (an ``OrderedDict``) in float16."""
    torch.save(OrderedDict((k, v.half()) for k, v in module.state_dict().items()), path)


def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    mod = _official(checkout)
    cases = []
    # name -> (latent channels, arch_variant, width reduction, seed)
    small = {"taesd": (4, None, 16, 1), "taef2": (12, "flux_2", 16, 2), "taesana": (12, "f32", 16, 3)}
    for name, (latent, arch, factor, seed) in small.items():
        with _narrow(mod, factor):
            enc, dec = _build(mod, latent, arch)
        _randomize(enc, dec, seed=seed)
        with torch.no_grad():
            dec[-1].bias += 0.5  # outputs around mid-grey, so the [0, 1] clamp keeps most of them
        images = _photos(32, 64 if arch == "f32" else 48)
        width = 64 // factor
        case = f"{name}-w{width}"
        d = out / case
        d.mkdir(parents=True, exist_ok=True)
        _save_release(enc, d / f"{name}_encoder.pth")
        _save_release(dec, d / f"{name}_decoder.pth")
        # what TAESD.__init__ does with the files: float16 tensors into the float32 modules
        enc.load_state_dict(torch.load(d / f"{name}_encoder.pth", map_location="cpu", weights_only=True))
        dec.load_state_dict(torch.load(d / f"{name}_decoder.pth", map_location="cpu", weights_only=True))
        enc.eval(), dec.eval()
        io = _run(enc, dec, images)
        save_file({k: v.contiguous() for k, v in io.items()}, str(d / "io.safetensors"))
        spec = f"{name}:channels={width}" + (f",latent_channels={latent}" if latent != NAMES[name][0] else "")
        meta = {
            "spec": spec,
            "weights": ".",
            "layout": f"official pair {name}_encoder.pth + {name}_decoder.pth (bare float16 state dicts)",
            "official": f"taesd.py {'F32Encoder/F32Decoder' if arch == 'f32' else 'Encoder/Decoder'}"
            + ("(use_midblock_gn=True)" if arch == "flux_2" else "")
            + f", widths narrowed {factor}x at build time (see scripts/official_fixtures/taesd.py)",
            "atol_latents": 1e-5,
            "atol_recon": 1e-5,
            "stats": _stats(io),
        }
        (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        cases.append(case)

    import diffusers

    vae = diffusers.AutoencoderTiny(
        encoder_block_out_channels=(4, 4, 4, 4), decoder_block_out_channels=(4, 4, 4, 4), latent_channels=4
    ).eval()
    _randomize(vae, seed=4)
    with torch.no_grad():
        vae.decoder.layers[-1].bias += 0.5
    images = _photos(32, 48)
    case = "diffusers-taesd-w4"
    d = out / case
    d.mkdir(parents=True, exist_ok=True)
    vae.save_pretrained(str(d), safe_serialization=True)
    with torch.no_grad():
        z = vae.encode(images * 2 - 1).latents
        decoded = (vae.decode(z.half().float()).sample + 1) / 2
    io = {"images": images, "latents": z, "decoded": decoded}
    save_file({k: v.contiguous() for k, v in io.items()}, str(d / "io.safetensors"))
    meta = {
        "spec": "taesd:channels=4",
        "weights": ".",
        "layout": "diffusers AutoencoderTiny folder (config.json + diffusion_pytorch_model.safetensors, float32)",
        "official": f"diffusers {diffusers.__version__} AutoencoderTiny; [-1, 1] in and out, stored here in [0, 1]",
        "atol_latents": 1e-5,
        "atol_recon": 1e-5,
        "stats": _stats(io),
    }
    (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    cases.append(case)
    return cases


def _pair_folder(name: str, enc: torch.nn.Module, dec: torch.nn.Module) -> Path:
    d = Path(tempfile.mkdtemp(prefix=f"taesd-{name}-"))
    torch.save(enc.state_dict(), d / f"{name}_encoder.pth")
    torch.save(dec.state_dict(), d / f"{name}_decoder.pth")
    return d


def _compare(
    name: str, enc: torch.nn.Module, dec: torch.nn.Module, folder: Path, x: torch.Tensor
) -> dict[str, Any]:
    import vistok

    tok = vistok.create(name, weights=str(folder))
    with torch.no_grad():
        z_off = enc(x)
        tokens = tok.encode(x)
        z_vis = tok.encode_grid(x)
        rec_off = dec(tokens.latents.float()).clamp(0, 1)  # both decoders on the same float16 latents
        rec_vis = tok.decode(tokens)
        mse = float(((rec_vis - x) ** 2).mean())
    return {
        "params_official": sum(p.numel() for p in enc.parameters())
        + sum(p.numel() for p in dec.parameters()),
        "params_vistok": sum(p.numel() for p in tok.parameters()),
        "latent_shape": list(tokens.latents.shape),
        "bits": float(tokens.bits[0]),
        "max_abs_latents": float((z_off - z_vis).abs().max()),
        "max_abs_latents_float16": float((z_off.half().float() - tokens.latents.float()).abs().max()),
        "max_abs_recon": float((rec_off - rec_vis).abs().max()),
        "psnr_vistok_db": round(10 * torch.log10(torch.tensor(1.0 / max(mse, 1e-12))).item(), 3),
    }


def full_check(checkout: Path) -> dict[str, Any]:
    torch.set_num_threads(1)
    mod = _official(checkout)
    x = _photos(256, 256)[:1]
    result: dict[str, Any] = {"input": "skimage astronaut, area-resized to 256x256", "random_weights": {}}
    for name, (latent, arch) in NAMES.items():
        torch.manual_seed(0)
        taesd = mod.TAESD(
            encoder_path=None, decoder_path=None, latent_channels=latent, arch_variant=arch
        ).eval()
        _randomize(taesd.encoder, taesd.decoder, seed=0)  # O(1) activations (the default init decays them)
        with torch.no_grad():
            taesd.decoder[-1].bias += 0.5
            latent_std = float(taesd.encoder(x).std())
        folder = _pair_folder(name, taesd.encoder, taesd.decoder)
        r = _compare(name, taesd.encoder, taesd.decoder, folder, x)
        r.pop("psnr_vistok_db")
        r["latent_std"] = round(latent_std, 4)
        result["random_weights"][name] = r
        print(name, r, flush=True)
    real: dict[str, Any] = {}
    for name, (latent, arch) in NAMES.items():
        enc_path, dec_path = checkout / f"{name}_encoder.pth", checkout / f"{name}_decoder.pth"
        if not enc_path.is_file():
            continue
        taesd = mod.TAESD(
            encoder_path=str(enc_path),
            decoder_path=str(dec_path) if dec_path.is_file() else None,
            latent_channels=latent,
            arch_variant=arch,
        ).eval()
        if dec_path.is_file():
            folder, note = checkout, "real encoder and decoder"
        else:
            torch.manual_seed(0)
            folder = _pair_folder(name, taesd.encoder, taesd.decoder)
            note = "real encoder; decoder random (its .pth is not in the checkout)"
        r = _compare(name, taesd.encoder, taesd.decoder, folder, x)
        if not dec_path.is_file():
            r.pop("psnr_vistok_db")
        r["weights"] = note
        real[name] = r
        print(name, "real", r, flush=True)
    result["real_weights"] = real
    result["real_weights_missing"] = sorted(n for n in NAMES if not (checkout / f"{n}_encoder.pth").is_file())
    return result


def speed_models(checkout: Path) -> list[tuple[str, Callable, Callable]]:
    """Per name: official and vistok reconstruction at the full configuration, same random weights."""
    import vistok

    mod = _official(checkout)
    out = []
    for name, (latent, arch) in NAMES.items():
        torch.manual_seed(0)
        taesd = mod.TAESD(
            encoder_path=None, decoder_path=None, latent_channels=latent, arch_variant=arch
        ).eval()
        tok = vistok.create(name, weights=str(_pair_folder(name, taesd.encoder, taesd.decoder)))

        def official(x: torch.Tensor, t: Any = taesd) -> torch.Tensor:
            with torch.no_grad():
                return t.decoder(t.encoder(x)).clamp(0, 1)

        out.append((name, official, tok.reconstruct))
    return out
