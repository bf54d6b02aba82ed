"""Parity fixtures of One-D-Piece (turingmotors/One-D-Piece), made by the official code.

    python scripts/make_official_fixtures.py one_d_piece --checkout /tmp/official/odp --commit SHA [--full]

``--checkout`` is a checkout of https://github.com/turingmotors/One-D-Piece; its ``modeling``
package (``modeling/one_d_piece.py``, its own copy of TiTok) is imported from there, with the
same in-script replacements as ``titok.py`` (whose helpers this module reuses): a fake
``accelerate``, ``modeling.modules`` as a bare package, the official ``blocks.py`` executed with
small ViT sizes added to its size tables, and the MaskGIT pixel decoder built at a small config.

Case ``prefix`` (``tests/fixtures/official/one_d_piece/prefix/``): two 16x16 images, ViT t16
encoder (patch 4), t8 decoder (patch 2), 8 tokens, l2-normalized 32 x 6 codebook, MaskGIT pixel
decoder at hidden 32, ``channel_mult [1, 1]``, no residual blocks (the ``titok`` legacy case
covers them), ``strict_length_assertion: False`` as in the release configs. ``io`` holds the
codes and ``decode_tokens(ids[:, :, :k])`` for k = 8, 3 and 1 (``recon_k``, not clamped), as
the official notebook decodes a k-token prefix. Release layout: ``pytorch_model.bin``, the bare
state dict (float weights views of one seeded pool, see ``titok.py``).
"""

from __future__ import annotations

import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import titok as tk  # scripts/official_fixtures/titok.py (the dispatcher puts this folder on sys.path)
import torch
from torch import Tensor

REPO = "turingmotors/One-D-Piece"
NAMES = {
    "one-d-piece-s-256": "one-d-piece_s256.yaml",
    "one-d-piece-b-256": "one-d-piece_b256.yaml",
    "one-d-piece-l-256": "one-d-piece_l256.yaml",
}
PREFIXES = (8, 3, 1)


def _official(checkout: Path) -> tuple[types.ModuleType, types.ModuleType]:
    """``(modeling.titok, modeling.one_d_piece)`` of the One-D-Piece checkout."""
    sys.path.insert(0, str(checkout))
    tk._stub_accelerate()
    tk._load_blocks(checkout)
    import modeling.one_d_piece
    import modeling.titok

    return modeling.titok, modeling.one_d_piece


def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    titok, odp = _official(checkout)
    case = "prefix"
    torch.manual_seed(4)
    pixel = {"channel_mult": [1, 1], "num_resolutions": 2, "dropout": 0.0, "hidden_channels": 32,
             "num_channels": 3, "num_res_blocks": 0, "resolution": 16, "z_channels": 8}  # fmt: skip
    cfg = tk._config(crop=16, enc="t16", dec="t8", ep=4, dp=2, n=8, token_size=6, codebook=32, l2=True)
    cfg["model"]["vq_model"]["strict_length_assertion"] = False
    with tk._PixelSize(titok, pixel):
        model = odp.OneDPiece(cfg).eval()
    drawn = tk._randomize(model, seed=41, pooled=True)
    x = tk._inputs(16)
    io: dict[str, Tensor] = {"images": x}
    with torch.no_grad():
        z0, _ = tk._vq_ids(model, x)
        tk._spread(model.quantize.embedding, z0.reshape(-1, 6), seed=43, l2=True)
        tk._sharpen(model, seed=44)
        z, ids = tk._vq_ids(model, x)
        io.update(latents=z, ids=ids)
        for k in PREFIXES:
            io[f"recon_{k}"] = model.decode_tokens(ids[:, None, :k])
    d = out / case
    d.mkdir(parents=True, exist_ok=True)
    torch.save(tk._pooled_state(model, drawn), d / "pytorch_model.bin")
    spec = ("one-d-piece:image_size=16,enc_patch_size=4,dec_patch_size=2,enc_width=16,enc_depth=2,enc_heads=2,"
            "dec_width=8,dec_depth=1,dec_heads=2,num_latent_tokens=8,codebook_size=32,token_size=6,"
            "pixel_hidden_channels=32,pixel_channel_mult=[1,1],pixel_num_res_blocks=0,pixel_z_channels=8")  # fmt: skip
    gap = tk._code_gap(z.reshape(-1, 6), model.quantize.embedding.weight, l2=True)
    tk._write_case(out, case, io, {
        "spec": spec, "weights": "pytorch_model.bin", "atol": 3e-5, "min_code_gap": gap, "prefixes": list(PREFIXES),
        "notes": "OneDPiece.decode_tokens(ids[:, :, :k]) (the official notebook's prefix decode), not clamped; "
                 "atol: the MaskGIT decoder's GroupNorm scales float rounding of the softmax mix up to ~1e-5",
    })  # fmt: skip
    print(case, gap, sum(p.stat().st_size for p in d.rglob("*") if p.is_file()))
    return [case]


def _build_full(titok: types.ModuleType, odp: types.ModuleType, checkout: Path, name: str) -> Any:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(OmegaConf.load(checkout / "configs" / NAMES[name]), resolve=True)
    cfg = {"model": {"vq_model": cfg["model"]["vq_model"]}, "dataset": {"preprocessing": {"crop_size": 256}}}
    torch.manual_seed(0)
    with tk._PixelSize(titok, None):
        return odp.OneDPiece(cfg).eval()


def full_check(checkout: Path) -> dict[str, Any]:
    import gc

    import vistok

    torch.set_num_threads(1)
    titok, odp = _official(checkout)
    x = tk._inputs(256)[:1]
    results: dict[str, Any] = {"input": "skimage astronaut crop, 256x256", "names": {}}
    for name in NAMES:
        t0 = time.time()
        off = _build_full(titok, odp, checkout, name)
        n_off = sum(p.numel() for p in off.parameters())
        with torch.no_grad():
            ids_o = off.encode(x)[1]["min_encoding_indices"]
            rec_o = {k: off.decode_tokens(ids_o[:, :, :k]).clamp(0, 1) for k in (256, 32)}
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "pytorch_model.bin"
            torch.save(off.state_dict(), path)
            del off
            gc.collect()
            tok = vistok.create(name, weights=str(path))
        n_vis = sum(p.numel() for p in tok.parameters())
        r: dict[str, Any] = {"params_official": n_off, "params_vistok": n_vis}
        with torch.no_grad():
            for k in (256, 32):
                t = tok.encode(x, num_tokens=k)
                if k == 256:
                    r["codes_equal"] = bool(torch.equal(t.ids, ids_o[:, 0, :]))
                r[f"recon_max_abs_diff_at_{k}"] = float((tok.decode(t) - rec_o[k]).abs().max())
        del tok
        gc.collect()
        r["seconds"] = round(time.time() - t0, 1)
        results["names"][name] = r
        print(name, r, flush=True)
    results["note"] = (
        "random official init (seed 0) at each release's full config, saved as pytorch_model.bin"
    )
    return results


def speed_models(checkout: Path) -> list[tuple[str, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]:
    """``one-d-piece-s-256`` at all 256 tokens, official and vistok with the same weights."""
    import vistok

    titok, odp = _official(checkout)
    off = _build_full(titok, odp, checkout, "one-d-piece-s-256")
    tok = vistok.create("one-d-piece-s-256")
    tok.load_state_dict(off.state_dict())

    def off_fn(x: Tensor) -> Tensor:
        with torch.no_grad():
            return off.decode_tokens(off.encode(x)[1]["min_encoding_indices"]).clamp(0, 1)

    return [("one-d-piece-s-256", off_fn, tok.reconstruct)]
