"""Parity fixtures of VAR's multi-scale VQVAE (``var-vqvae``), made by the official code.

    python scripts/make_official_fixtures.py var --checkout /tmp/official/var --commit SHA [--full]

The checkout is FoundationVision/VAR; its ``models/vqvae.py`` (``VQVAE``), ``models/quant.py``
and ``models/basic_vae.py`` are imported from it (``models/__init__`` also imports the VAR
transformer, which needs ``huggingface_hub``; nothing is stubbed).

The official ``VQVAE`` fixes the encoder/decoder layout (``ch_mult = (1, 1, 2, 2, 4)``, two
blocks, GroupNorm(32)), so even ``ch = 32`` is 4.4 M parameters. The small cases therefore
build ``VQVAE`` and then replace its ``encoder`` / ``decoder`` with the official
``Encoder`` / ``Decoder`` at a small ``ch_mult`` / ``num_res_blocks``, with the official
``basic_vae.Normalize`` patched to 2 groups while they are built (the blocks, key names and
computation stay the official ones; vistok's ``norm_groups`` / ``ch_mult`` /
``num_res_blocks`` spec keys rebuild the same thing). The full-configuration check uses the
unmodified ``VQVAE`` of the release.

Each case saves, in ``tests/fixtures/official/var/CASE/``:

* ``vae.pth``: ``torch.save(vae.state_dict())``, the layout of ``vae_ch160v4096z32.pth``
  (``quantize.ema_vocab_hit_SV`` included);
* ``io.safetensors``: ``images`` (``[B, 3, S, S]`` in [0, 1], crops of skimage photos),
  ``ids`` (``img_to_idxBl`` concatenated, ``[B, N]``), ``f`` (``quant_conv(encoder(x))``),
  ``recon`` (``idxBl_to_img(ids, same_shape=True, last_one=True)`` mapped to [0, 1]),
  ``recon_direct`` (``img_to_reconstructed_img(x, last_one=True)``, mapped; ``scales10`` only), and
  ``recon_s{s}`` (the partial sum of the first ``s`` scales: ``quantize.embed_to_fhat(...,
  last_one=False)[s - 1]`` through ``fhat_to_img``, i.e. ``idxBl_to_img(..., last_one=False)[s - 1]``
  without decoding the other prefixes), mapped;
* ``case.json``: the vistok spec, tolerances, notes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

REPO = "FoundationVision/VAR"
GROUPS = 2  # GroupNorm groups of the small cases (the release: 32)
RELEASE_SPEC = "var-vqvae"

# name -> (spec kwargs for vistok, official kwargs, encoder/decoder kwargs or None, image size, prefix scales)
CASES: dict[str, dict[str, Any]] = {
    "scales10": dict(
        spec="var-vqvae:vocab_size=64,z_channels=4,ch=4,ch_mult=[1,2],num_res_blocks=1,norm_groups=2",
        vqvae=dict(vocab_size=64, z_channels=4, ch=4, share_quant_resi=4, quant_resi=0.5),
        coder=dict(ch=4, z_channels=4, ch_mult=(1, 2), num_res_blocks=1, using_sa=True, using_mid_sa=True),
        size=32,
        prefixes=(4, 7),
        note="the release's 10 scales (1..16), 4 partially shared phi (VAR's tick tie at si=2 included)",
    ),
    "znorm-nonshared": dict(
        spec=(
            "var-vqvae:vocab_size=48,z_channels=4,ch=4,ch_mult=[1,2,2],num_res_blocks=1,norm_groups=2,"
            "using_sa=false,quant_conv_ks=1,using_znorm=true,quant_resi=-0.5,share_quant_resi=0,"
            "patch_nums=[1,2,4,8]"
        ),
        vqvae=dict(
            vocab_size=48,
            z_channels=4,
            ch=4,
            quant_conv_ks=1,
            using_znorm=True,
            quant_resi=-0.5,
            share_quant_resi=0,
            v_patch_nums=(1, 2, 4, 8),
        ),
        coder=dict(
            ch=4, z_channels=4, ch_mult=(1, 2, 2), num_res_blocks=1, using_sa=False, using_mid_sa=True
        ),
        size=32,
        prefixes=(2,),
        note="cosine code search, one phi per scale (PhiNonShared keys), |quant_resi|, 1x1 quant convs",
    ),
    "shared1": dict(
        spec=(
            "var-vqvae:vocab_size=32,z_channels=4,ch=4,ch_mult=[1,2],num_res_blocks=1,norm_groups=2,"
            "using_mid_sa=false,share_quant_resi=1,patch_nums=[1,2,3,5,8]"
        ),
        vqvae=dict(vocab_size=32, z_channels=4, ch=4, share_quant_resi=1, v_patch_nums=(1, 2, 3, 5, 8)),
        coder=dict(ch=4, z_channels=4, ch_mult=(1, 2), num_res_blocks=1, using_sa=True, using_mid_sa=False),
        size=16,
        prefixes=(3,),
        note="one phi for all scales (PhiShared keys: quantize.quant_resi.qresi.*)",
    ),
}


def _images(size: int) -> torch.Tensor:
    """Two real crops (astronaut face, chelsea) as float ``[2, 3, size, size]`` in [0, 1]."""
    from skimage import data

    crops = [data.astronaut()[40:232, 150:342], data.chelsea()[20:276, 120:376]]
    out = []
    for c in crops:
        t = torch.from_numpy(c.copy()).permute(2, 0, 1)[None].float() / 255.0
        out.append(torch.nn.functional.interpolate(t, size=(size, size), mode="area"))
    return torch.cat(out).clamp(0, 1).contiguous()


@contextlib.contextmanager
def _groups(n: int) -> Iterator[None]:
    """Build official blocks with GroupNorm(``n``) instead of VAR's fixed 32 (small cases only)."""
    import models.basic_vae as bv

    orig = bv.Normalize
    bv.Normalize = lambda in_channels, num_groups=32: orig(in_channels, num_groups=n)
    try:
        yield
    finally:
        bv.Normalize = orig


def _randomize(vae: torch.nn.Module, images: torch.Tensor, seed: int) -> None:
    """Seeded fan-in-scaled weights, then a codebook at the scale of the encoder's features.

    PyTorch's default init leaves the features far from the N(0, 1) codebook, so nearly every
    position would take the same code; matching the scales makes the codes vary.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in vae.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 / p[0].numel()) ** 0.5)
            elif "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
        f = vae.quant_conv(vae.encoder(images * 2 - 1))
        w = vae.quantize.embedding.weight
        w.copy_(torch.randn(w.shape, generator=g) * f.std(dim=(0, 2, 3)) + f.mean(dim=(0, 2, 3)))


def _official_small(cfg: dict[str, Any]) -> torch.nn.Module:
    from models.basic_vae import Decoder, Encoder
    from models.vqvae import VQVAE

    with _groups(GROUPS):
        vae = VQVAE(**cfg["vqvae"], test_mode=True)
        coder = dict(cfg["coder"], dropout=0.0, in_channels=3)
        vae.encoder = Encoder(double_z=False, **coder)
        vae.decoder = Decoder(**coder)
    return vae.eval()


def _pm1_to_01(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0)


@torch.no_grad()
def _official_outputs(
    vae: Any, images: torch.Tensor, prefixes: tuple[int, ...], *, direct: bool = True
) -> dict[str, torch.Tensor]:
    x = images * 2 - 1
    f = vae.quant_conv(vae.encoder(x))
    ids_bl = vae.img_to_idxBl(x)
    out = {
        "images": images,
        "ids": torch.cat(ids_bl, dim=1),
        "f": f,
        "recon": _pm1_to_01(vae.idxBl_to_img(ids_bl, same_shape=True, last_one=True)),
    }
    if direct:
        out["recon_direct"] = _pm1_to_01(vae.img_to_reconstructed_img(x, last_one=True))
    if prefixes:  # VQVAE.embed_to_img(..., last_one=False)[s - 1], decoding only the prefixes kept
        b, c = x.shape[0], vae.Cvae
        ms_h = [
            vae.quantize.embedding(i)
            .transpose(1, 2)
            .view(b, c, round(i.shape[1] ** 0.5), round(i.shape[1] ** 0.5))
            for i in ids_bl
        ]
        partial = vae.quantize.embed_to_fhat(ms_h, all_to_max_scale=True, last_one=False)
        for s in prefixes:
            out[f"recon_s{s}"] = _pm1_to_01(vae.fhat_to_img(partial[s - 1]))
    return {k: v.contiguous() for k, v in out.items()}


def make(checkout: Path, out: Path) -> list[str]:
    """Write the small cases (official code, seeded random weights) under ``out``."""
    torch.set_num_threads(1)
    names = []
    for i, (name, cfg) in enumerate(CASES.items()):
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        images = _images(cfg["size"])
        vae = _official_small(cfg)
        _randomize(vae, images, seed=100 + i)
        torch.save(vae.state_dict(), d / "vae.pth")
        io = _official_outputs(vae, images, cfg["prefixes"], direct=name == "scales10")
        save_file(io, str(d / "io.safetensors"))
        pn = list(vae.quantize.v_patch_nums)
        bounds = [sum(p * p for p in pn[:s]) for s in range(1, len(pn) + 1)]
        distinct = int(torch.unique(io["ids"]).numel())
        meta = {
            "spec": cfg["spec"],
            "weights": "vae.pth",
            "image_size": cfg["size"],
            "patch_nums": pn,
            "prefixes": {str(s): bounds[s - 1] for s in cfg["prefixes"]},
            "distinct_codes": distinct,
            "atol_latent": 1e-5,  # measured: 0.0 (bit-identical); room for other CPUs' kernels
            "atol_recon": 1e-5,
            "notes": cfg["note"]
            + "; encoder/decoder at small ch_mult with GroupNorm(2) (official blocks, patched Normalize); "
            "recon = idxBl_to_img (what vistok's decode computes, bit for bit); recon_direct = "
            "img_to_reconstructed_img (f_hat kept from the encoder loop: equal up to float rounding)",
        }
        (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(f"{name}: {len(pn)} scales, {bounds[-1]} tokens, {distinct} distinct codes")
        names.append(name)
    return names


# ---- full configuration ------------------------------------------------------------------------
def _official_full(patch_nums: tuple[int, ...]) -> Any:
    from models.vqvae import VQVAE

    # build_vae_var's VQVAE arguments (train.py: V=4096, Cvae=32, ch=160, share_quant_resi=4)
    return VQVAE(
        vocab_size=4096, z_channels=32, ch=160, test_mode=True, share_quant_resi=4, v_patch_nums=patch_nums
    )


def _vistok_from(name: str, vae: Any, tmp: Path) -> Any:
    import vistok

    path = tmp / f"{name}.pth"
    torch.save(vae.state_dict(), path)
    return vistok.create(name, weights=str(path))


def _photo(size: int) -> torch.Tensor:
    from skimage import data

    t = torch.from_numpy(data.astronaut().copy()).permute(2, 0, 1)[None].float() / 255.0
    return torch.nn.functional.interpolate(t, size=(size, size), mode="area").clamp(0, 1).contiguous()


def full_check(checkout: Path) -> dict[str, Any]:
    """Official vs vistok at each name's full configuration (random weights, one photo)."""
    import tempfile

    from vistok.models.zoo.var import PATCH_NUMS_256, PATCH_NUMS_512

    torch.set_num_threads(1)
    result: dict[str, Any] = {"names": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name, pn in (("var-vqvae", PATCH_NUMS_256), ("var-vqvae-512", PATCH_NUMS_512)):
            size = 16 * pn[-1]
            images = _photo(size)
            torch.manual_seed(0)
            vae = _official_full(pn).eval()
            _randomize(vae, images, seed=7)
            tok = _vistok_from(name, vae, Path(tmp))
            ref = _official_outputs(vae, images, prefixes=(4,))
            with torch.no_grad():  # one reconstruction each, back to back (a shared CPU: indicative only)
                t0 = time.perf_counter()
                vae.img_to_reconstructed_img(images * 2 - 1, last_one=True)
                t_off = time.perf_counter() - t0
                t0 = time.perf_counter()
                tokens = tok.encode(images)
                recon = tok.decode(tokens)
                t_vis = time.perf_counter() - t0
                f = tok.quant_conv(tok.encoder(tok.to_model(images)))
                k4 = tok.scale_boundaries[3]
                tokens4 = tok.encode(images, num_tokens=k4)
                recon4 = tok.decode(tokens4)
            result["names"][name] = {
                "image_size": size,
                "tokens": tok.max_tokens,
                "bits": float(tokens.bits[0]),
                "parameters_official": sum(p.numel() for p in vae.parameters()),
                "parameters_vistok": sum(p.numel() for p in tok.parameters()),
                "codes_equal": bool(torch.equal(tokens.ids, ref["ids"])),
                "distinct_codes": int(torch.unique(ref["ids"]).numel()),
                "max_abs_latent": float((f - ref["f"]).abs().max()),
                "max_abs_recon": float((recon - ref["recon"]).abs().max()),
                "max_abs_recon_vs_img_to_reconstructed_img": float((recon - ref["recon_direct"]).abs().max()),
                "prefix_4_scales_codes_equal": bool(torch.equal(tokens4.ids, ref["ids"][:, :k4])),
                "max_abs_recon_prefix_4_scales": float((recon4 - ref["recon_s4"]).abs().max()),
                "seconds_official_img_to_reconstructed_img_1thread": round(t_off, 2),
                "seconds_vistok_encode_decode_1thread": round(t_vis, 2),
            }
            print(name, json.dumps(result["names"][name]))
            del vae, tok
    return result


def speed_models(
    checkout: Path,
) -> list[tuple[str, Callable[[torch.Tensor], torch.Tensor], Callable[[torch.Tensor], torch.Tensor]]]:
    """``(name, official_fn, vistok_fn)`` at the release's configuration, same random weights.

    Both take float ``[1, 3, 256, 256]`` in [0, 1] and return the reconstruction in [0, 1]:
    the official ``img_to_reconstructed_img(x, last_one=True)``, vistok's ``reconstruct``.
    ``var-vqvae-512`` is the same network (only the scale list differs) and is not timed.
    """
    import tempfile

    from vistok.models.zoo.var import PATCH_NUMS_256

    images = _photo(256)
    vae = _official_full(PATCH_NUMS_256).eval()
    _randomize(vae, images, seed=7)
    with tempfile.TemporaryDirectory() as tmp:
        tok = _vistok_from(RELEASE_SPEC, vae, Path(tmp))

    @torch.no_grad()
    def official(x: torch.Tensor) -> torch.Tensor:
        return _pm1_to_01(vae.img_to_reconstructed_img(x * 2 - 1, last_one=True))

    @torch.no_grad()
    def native(x: torch.Tensor) -> torch.Tensor:
        return tok.reconstruct(x)

    return [(RELEASE_SPEC, official, native)]
