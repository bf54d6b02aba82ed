"""Parity fixtures of MaskBit's VQGAN+ / MaskBit tokenizers, made by the official code.

    python scripts/make_official_fixtures.py maskbit --checkout /tmp/official/maskbit \
        --commit SHA [--full]

The official ``modeling.conv_vqgan.ConvVQModel`` is imported from ``--checkout`` (a checkout of
https://github.com/markweberdev/maskbit) and needs ``einops`` and ``omegaconf`` (install them
into a venv made with ``--system-site-packages``). ``modeling.modules`` also imports the
training losses, which import ``torchvision`` at module level only to build perceptual
networks; when torchvision is not installed, a tiny fake ``torchvision`` module (three empty
names) is put in ``sys.modules`` here, inside this script. Nothing of the official code is
committed.

Cases (``tests/fixtures/official/maskbit/<case>/``):

* ``lfq``: the bit tokenizer (``quantizer_type: lookup-free``), 6 bits, hidden width 32,
  ``channel_mult [1, 1, 2]`` (two down/up levels, one width change, so the released
  ``nin_shortcut`` quirk is exercised), two residual blocks per stage;
* ``vq``: VQGAN+ (``quantizer_type: lookup``), a 32 x 8 codebook, ``channel_mult [1, 2]``, one
  encoder block and two decoder blocks per stage (``num_res_blocks_decoder``).

Each checkpoint is the release layout: a bare ``torch.save`` of ``ConvVQModel.state_dict()``
named ``<name>.bin`` (the LFQ one holds the constant ``quantize.bits_to_indices`` /
``quantize.codebook`` buffers, as released). To keep the fixtures small, the float weights of
one case are views at seeded random offsets into one shared random pool (one storage in the
file: every tensor still differs from every other), norm weights ``1 + U(-0.1, 0.1)``; the VQ
codebook is drawn around encoder outputs so that the codes vary. ``io.safetensors`` holds the
inputs (crops of ``skimage.data.astronaut()`` / ``chelsea()``, [0, 1]), the encoder output
(``latents``), the codes (``ids``) and ``decode_tokens(ids)`` (``recon_tokens``, not clamped);
for a non-square input (``*_wide``) the same but with the official forward's reconstruction
(``recon_wide``, not clamped: ``z + (q - z).detach()`` through the decoder), since
``decode_tokens`` assumes square grids.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import Tensor

REPO = "markweberdev/maskbit"

# name -> the official config it is built from (configs/tokenizer/<file>.yaml)
NAMES = {
    "maskbit-10bit": "maskbit_tokenizer_10bit",
    "maskbit-12bit": "maskbit_tokenizer_12bit",
    "maskbit-14bit": "maskbit_tokenizer_14bit",
    "maskbit-16bit": "maskbit_tokenizer_16bit",
    "maskbit-18bit": "maskbit_tokenizer_18bit",
    "vqgan-plus-10bit": "vqgan_plus_10bit",
    "vqgan-plus-12bit": "vqgan_plus_12bit",
}

CASES = {
    "lfq": {
        "file": "maskbit_tokenizer_6bit.bin",
        "config": dict(
            quantizer_type="lookup-free",
            token_size=6,
            codebook_size=64,
            hidden_channels=32,
            channel_mult=[1, 1, 2],
            num_resolutions=3,
            num_res_blocks=2,
        ),
        "spec": "maskbit:token_bits=6,hidden_channels=32,channel_mult=[1,1,2],num_res_blocks=2",
    },
    "vq": {
        "file": "vqgan_plus_5bit.bin",
        "config": dict(
            quantizer_type="lookup",
            token_size=8,
            codebook_size=32,
            hidden_channels=32,
            channel_mult=[1, 2],
            num_resolutions=2,
            num_res_blocks=1,
            num_res_blocks_decoder=2,
        ),
        "spec": (
            "vqgan-plus:codebook_size=32,token_size=8,hidden_channels=32,channel_mult=[1,2],"
            "num_res_blocks=1,num_res_blocks_decoder=2"
        ),
    },
}


def _stub_torchvision() -> None:
    """A fake ``torchvision`` (only the names ``modeling.modules`` imports) when it is absent."""
    try:
        import torchvision  # noqa: F401
    except ImportError:
        tv = types.ModuleType("torchvision")
        models = types.ModuleType("torchvision.models")
        fe = types.ModuleType("torchvision.models.feature_extraction")

        def unavailable(*args: object, **kwargs: object) -> None:
            raise RuntimeError("torchvision is stubbed in this fixture script")

        fe.create_feature_extractor = unavailable  # type: ignore[attr-defined]
        models.feature_extraction = fe  # type: ignore[attr-defined]
        tv.models = models  # type: ignore[attr-defined]
        sys.modules.update(
            {"torchvision": tv, "torchvision.models": models, "torchvision.models.feature_extraction": fe}
        )


def _official_class(checkout: Path):
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    _stub_torchvision()
    from modeling.conv_vqgan import ConvVQModel

    return ConvVQModel


def _config(**overrides: object):
    from omegaconf import OmegaConf

    base = dict(
        model_class="vqgan+",
        commitment_cost=0.25,
        entropy_loss_weight=0.0,
        entropy_loss_temperature=0.01,
        entropy_gamma=1.0,
        num_channels=3,
        sample_with_conv=True,
    )
    base.update(overrides)
    return OmegaConf.create(base)


def _release_config(checkout: Path, file: str):
    """``model.vq_model`` of an official config, with eval_tokenizer.py's LFQ codebook_size fix."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(checkout / "configs" / "tokenizer" / f"{file}.yaml").model.vq_model
    if cfg.quantizer_type == "lookup-free":
        cfg.codebook_size = 2**cfg.token_size
    return cfg


def _image(which: str, h: int, w: int) -> Tensor:
    """float ``[1, 3, h, w]`` in [0, 1]: a real photo, area-downsampled to ``h x w``."""
    from skimage import data

    img = {"astronaut": data.astronaut, "chelsea": data.chelsea}[which]()
    t = torch.from_numpy(img).permute(2, 0, 1).float().div(255.0)[None]
    side = min(t.shape[-2:])
    t = t[..., :side, :side] if which == "chelsea" else t[..., 20 : 20 + 400, 90 : 90 + 400]
    return F.interpolate(t, size=(h, w), mode="area").clamp(0.0, 1.0)


def _pooled_weights(model: torch.nn.Module, seed: int) -> dict[str, Tensor]:
    """Seeded weights for ``model``: float tensors are views into one shared random pool."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    largest = max(v.numel() for k, v in sd.items() if v.is_floating_point() and not k.startswith("quantize."))
    pool = (torch.rand(largest + 4096, generator=g) * 2 - 1) * 0.05
    norms = 1.0 + (torch.rand(4096, generator=g) * 2 - 1) * 0.1
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        if k.startswith("quantize.") or not v.is_floating_point():
            out[k] = v.clone()
            continue
        n = v.numel()
        if ".norm" in k and k.endswith(".weight"):
            off = int(torch.randint(0, norms.numel() - n + 1, (1,), generator=g))
            out[k] = norms[off : off + n].view(v.shape)
        else:
            off = int(torch.randint(0, pool.numel() - n + 1, (1,), generator=g))
            out[k] = pool[off : off + n].view(v.shape)
    return out


def _inputs() -> tuple[Tensor, Tensor]:
    images = torch.cat([_image("astronaut", 32, 32), _image("chelsea", 32, 32)])
    wide = _image("astronaut", 32, 48)
    return images, wide


def _spread_codebook(model: torch.nn.Module, images: Tensor, seed: int) -> None:
    """Draw the VQ codebook around encoder outputs (the official init collapses to a few codes)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        z = model.encoder(images).permute(0, 2, 3, 1).reshape(-1, model.quantize.embedding.weight.shape[1])
        emb = model.quantize.embedding.weight
        pick = torch.randint(0, z.shape[0], (emb.shape[0],), generator=g)
        emb.copy_(z[pick] + torch.randn(emb.shape, generator=g) * z.std() * 0.5)


@torch.no_grad()
def _run(model: torch.nn.Module, images: Tensor, *, square: bool) -> dict[str, Tensor]:
    latents = model.encoder(images)
    recon, result = model(images)
    out = {"latents": latents, "ids": result["min_encoding_indices"].long()}
    if square:  # decode_tokens reshapes the ids to a square grid
        out["recon_tokens"] = model.decode_tokens(out["ids"].reshape(images.shape[0], -1))
    else:
        out["recon"] = recon
    return out


def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    ConvVQModel = _official_class(checkout)
    images, wide = _inputs()
    for seed, (case, spec) in enumerate(CASES.items()):
        model = ConvVQModel(_config(**spec["config"])).eval()
        sd = _pooled_weights(model, seed)  # saved as these views: the pool is one storage in the file
        model.load_state_dict(sd)
        if spec["config"]["quantizer_type"] == "lookup":
            _spread_codebook(model, images, seed)
            sd["quantize.embedding.weight"] = model.quantize.embedding.weight.detach().clone()
        d = out / case
        d.mkdir(parents=True, exist_ok=True)
        torch.save(sd, d / spec["file"])
        io = {"images": images, "images_wide": wide}
        io.update(_run(model, images, square=True))
        io.update({f"{k}_wide": v for k, v in _run(model, wide, square=False).items()})
        save_file({k: v.contiguous() for k, v in io.items()}, str(d / "io.safetensors"))
        distinct = int(torch.unique(io["ids"]).numel())
        meta = {
            "spec": spec["spec"],
            "weights": spec["file"],
            "official_config": spec["config"],
            "atol_latents": 1e-5,
            "atol_recon": 1e-4,
            "distinct_codes": distinct,
            "notes": (
                "seeded random weights (views into one shared pool, see the fixture script); "
                "images in [0, 1]; recon_wide / recon_tokens are the official outputs before clamping; "
                "recon_wide is the forward (z + (q - z).detach()), recon_tokens is decode_tokens(ids)"
            ),
        }
        (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(
            f"{case}: {distinct} distinct codes of {io['ids'].numel()}, {(d / spec['file']).stat().st_size} bytes"
        )
    return list(CASES)


def _full_pair(checkout: Path, name: str, seed: int = 0) -> tuple[torch.nn.Module, torch.nn.Module, dict]:
    """The official model at ``name``'s full config (random weights) and vistok's with the same weights."""
    import vistok

    ConvVQModel = _official_class(checkout)
    cfg = _release_config(checkout, NAMES[name])
    torch.manual_seed(seed)
    official = ConvVQModel(cfg).eval()
    if cfg.quantizer_type == "lookup":
        _spread_codebook(official, _image("astronaut", 256, 256), seed)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{NAMES[name]}.bin"
        torch.save(official.state_dict(), path)
        tok = vistok.create(name, weights=str(path))
    return official, tok, dict(cfg)


def _seconds(fn: Callable[[Tensor], object], x: Tensor) -> float:
    """Best of two wall-clock runs of ``fn(x)`` (one thread, a shared machine: indicative only)."""
    best = math.inf
    for _ in range(2):
        t0 = time.perf_counter()
        fn(x)
        best = min(best, time.perf_counter() - t0)
    return best


def full_check(checkout: Path) -> dict:
    """Every name at its full official config: parameter counts, codes, max abs differences."""
    torch.set_num_threads(1)
    x = _image("astronaut", 256, 256)
    results = {}
    for name in NAMES:
        official, tok, cfg = _full_pair(checkout, name)
        with torch.no_grad():
            z_o = official.encoder(x)
            rec_o, res = official(x)
            ids_o = res["min_encoding_indices"].long()
            tok_o = official.decode_tokens(ids_o.reshape(1, -1))
            z_v = tok.pre_quant(x)
            tokens = tok.encode(x)
            rec_v = tok.decode_ids(tokens.ids)
            t_off, t_vis = _seconds(official, x), _seconds(tok.reconstruct, x)
        results[name] = {
            "official_config": {
                k: (list(v) if not isinstance(v, (int, float, str, bool)) else v) for k, v in cfg.items()
            },
            "params_official": sum(p.numel() for p in official.parameters()),
            "params_vistok": sum(p.numel() for p in tok.parameters()),
            "codes_equal": bool(torch.equal(ids_o, tokens.ids)),
            "distinct_codes": int(torch.unique(ids_o).numel()),
            "max_abs_latents": float((z_o - z_v).abs().max()),
            "max_abs_recon_vs_decode_tokens": float((tok_o - rec_v).abs().max()),
            "max_abs_recon_vs_forward": float((rec_o - rec_v).abs().max()),
            "max_abs_recon_clamped_vs_forward": float((rec_o.clamp(0, 1) - tok.decode(tokens)).abs().max()),
            "bits_per_image": float(tokens.bits[0]),
            "tokens": int(tokens.ids[0].numel()),
            "seconds_official_forward": round(t_off, 2),
            "seconds_vistok_reconstruct": round(t_vis, 2),
        }
        print(name, json.dumps(results[name]))
        del official, tok
    return {
        "input": "skimage astronaut, 400x400 crop, area-resized to 256x256",
        "timing": "one thread, best of 2, on a shared 2-core machine: indicative only",
        "names": results,
    }


def speed_models(checkout: Path) -> list[tuple[str, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]:
    """``(name, official_fn, vistok_fn)`` per distinct architecture, same random weights, 256x256 in [0, 1]."""
    out = []
    for name in ("maskbit-12bit", "maskbit-18bit", "vqgan-plus-10bit", "vqgan-plus-12bit"):
        official, tok, _ = _full_pair(checkout, name)

        def official_fn(x: Tensor, m: torch.nn.Module = official) -> Tensor:
            with torch.no_grad():
                return m(x)[0].clamp(0.0, 1.0)

        def vistok_fn(x: Tensor, t: torch.nn.Module = tok) -> Tensor:
            return t.reconstruct(x)

        out.append((name, official_fn, vistok_fn))
    return out
