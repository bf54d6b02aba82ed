"""Parity fixtures of the LlamaGen VQ tokenizers, made by the official code.

    python scripts/make_official_fixtures.py llamagen --checkout /tmp/official/llamagen \
        --commit SHA [--full]

The official module ``tokenizer/tokenizer_image/vq_model.py`` imports only torch, so it
runs in the project's environment as it is (no stubs, no extra packages); it is imported
from ``--checkout`` at run time and nothing of it is copied.

Case ``tiny``: the official ``VQModel`` with ``codebook_size=64``, ``z_channels=16``,
``ch_mult=[1, 1]`` and, through the official ``Encoder``/``Decoder`` constructor arguments
that ``ModelArgs`` does not expose, ``ch=32, num_res_blocks=1`` (the smallest widths the
32-group GroupNorm allows), with seeded random weights (norm affines and biases included,
so that every tensor matters). The checkpoint is saved as the training script saves it
(``{"model", "optimizer", "discriminator", "optimizer_disc", "steps", "args"}`` with
``args`` an ``argparse.Namespace``), with two departures that keep the fixture small: its
tensors are stored as float16 (the random weights are rounded to float16 *before* the
official model runs in float32, so the file holds exactly the weights that produced the
outputs), and the 65536-float ``quantize.codebook_used`` usage log of the release's
weights is left out (the test adds it back to a copy to check that vistok ignores it). ``io.safetensors`` holds two 32x32 crops of real
photographs (astronaut, chelsea) and one 24x40 crop, with what the official code made of
them (codes, pre-quantization latents, codes' vectors, both reconstructions, the
training-mode losses and gradients).

``--full``: ``VQ_16()`` and ``VQ_8()`` at the released configuration with their own
(seeded) random initialization, the same weights loaded into vistok through ``weights=``
(a ``{"model": ..., "args": ...}`` file as released), one 256x256 photograph.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file

REPO = "FoundationVision/LlamaGen"
TINY = {
    "codebook_size": 64,
    "codebook_embed_dim": 8,
    "z_channels": 16,
    "ch_mult": [1, 1],
    "ch": 32,
    "num_res_blocks": 1,
}
TINY_SPEC = (
    "llamagen-vq:codebook_size=64,codebook_embed_dim=8,z_channels=16,encoder_ch_mult=[1,1],"
    "decoder_ch_mult=[1,1],ch=32,num_res_blocks=1,image_size=32"
)


def _official(checkout: Path) -> ModuleType:
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    return importlib.import_module("tokenizer.tokenizer_image.vq_model")


def _photo(name: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    """A crop ``box`` (left, top, right, bottom) of a skimage photograph resized to ``size`` (w, h):
    float ``[1, 3, h, w]`` in [0, 1]."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    img = Image.fromarray(arr).crop(box).resize(size, Image.Resampling.BICUBIC)
    t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
    return t.unsqueeze(0).clamp(0, 1).contiguous()


def _tiny_official(vq: ModuleType) -> torch.nn.Module:
    """The official VQModel at the tiny configuration (encoder/decoder rebuilt with ch, num_res_blocks)."""
    t = TINY
    args = vq.ModelArgs(
        codebook_size=t["codebook_size"],
        codebook_embed_dim=t["codebook_embed_dim"],
        encoder_ch_mult=t["ch_mult"],
        decoder_ch_mult=t["ch_mult"],
        z_channels=t["z_channels"],
    )
    model = vq.VQModel(args)
    model.encoder = vq.Encoder(ch=t["ch"], ch_mult=t["ch_mult"], num_res_blocks=t["num_res_blocks"],
                               z_channels=t["z_channels"])  # fmt: skip
    model.decoder = vq.Decoder(ch=t["ch"], ch_mult=t["ch_mult"], num_res_blocks=t["num_res_blocks"],
                               z_channels=t["z_channels"])  # fmt: skip
    return model


@torch.no_grad()
def _randomize(model: torch.nn.Module, seed: int) -> None:
    """Seeded random weights, float16-representable: convs ~ N(0, 1/fan_in), norm affines near (1, 0),
    biases small; the codebook random unit vectors (the official init, re-drawn)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if name.endswith("embedding.weight"):
            v = torch.nn.functional.normalize(torch.randn(p.shape, generator=g), dim=-1)
        elif p.ndim == 4:
            fan_in = p.shape[1] * p.shape[2] * p.shape[3]
            v = torch.randn(p.shape, generator=g) / math.sqrt(fan_in)
        elif "norm" in name and name.endswith("weight"):
            v = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
        else:
            v = 0.05 * torch.randn(p.shape, generator=g)
        p.copy_(v.half().float())


def _release_layout(sd: dict[str, torch.Tensor], vq_model: str, extra: dict[str, Any]) -> dict[str, Any]:
    """The dict ``vq_train.py`` saves: weights under ``"model"`` and the training state beside them."""
    disc = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 4, 2, 1), torch.nn.LeakyReLU(0.2), torch.nn.Conv2d(4, 1, 4)
    )
    opt_disc = torch.optim.Adam(disc.parameters(), lr=1e-4)
    n_params = len(sd)
    return {
        "model": sd,
        "optimizer": {
            "state": {},
            "param_groups": [{"lr": 1e-4, "betas": (0.9, 0.95), "params": list(range(n_params))}],
        },
        "discriminator": {k: v.half() for k, v in disc.state_dict().items()},
        "optimizer_disc": opt_disc.state_dict(),
        "steps": 0,
        "args": argparse.Namespace(vq_model=vq_model, ema=False, image_size=256, **extra),
    }


def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    vq = _official(checkout)
    torch.manual_seed(0)
    model = _tiny_official(vq)
    _randomize(model, seed=1)
    model.eval()

    case = out / "tiny"
    case.mkdir(parents=True, exist_ok=True)
    # the release also holds quantize.codebook_used (65536 floats, dropped by vistok on load):
    # left out here for size; the test adds it back to a copy to check that it is ignored
    sd = {k: v.half() for k, v in model.state_dict().items() if k != "quantize.codebook_used"}
    extra = {"codebook_size": TINY["codebook_size"], "codebook_embed_dim": TINY["codebook_embed_dim"]}
    torch.save(_release_layout(sd, "VQ-tiny", extra), case / "vq_tiny.pt")

    images = torch.cat(
        [
            _photo("astronaut", (150, 20, 350, 220), (32, 32)),
            _photo("chelsea", (110, 20, 310, 220), (32, 32)),
        ]
    )
    rect = _photo("coffee", (100, 60, 500, 300), (40, 24))
    io: dict[str, torch.Tensor] = {"images": images.contiguous(), "rect_images": rect}
    e = TINY["codebook_embed_dim"]
    with torch.no_grad():
        for key, x in (("", images), ("rect_", rect)):
            xm = x * 2.0 - 1.0
            h = model.quant_conv(model.encoder(xm))
            _, _, (_, _, idx) = model.encode(xm)
            b, _, gh, gw = h.shape
            io[f"{key}latents"] = h.contiguous()
            io[f"{key}codes"] = idx.reshape(b, gh, gw).long().contiguous()
            if not key:
                io["recon_forward"] = model(xm)[0].contiguous()  # [-1, 1] scale, unclamped
            io[f"{key}recon_codes"] = model.decode_code(idx, shape=(b, e, gh, gw)).contiguous()
    # training mode: the official quantizer losses and their gradients (dropout is 0)
    model.train()
    # codebook_used is registered as a buffer holding an nn.Parameter; on the CPU its in-place
    # usage log would need it detached (on the GPU, .to(device) already returns a plain tensor)
    model.quantize.codebook_used.requires_grad_(False)
    h = io["latents"].clone().requires_grad_(True)
    _, (vq_loss, commit_loss, _, _), _ = model.quantize(h)
    total = vq_loss + commit_loss
    total.backward()
    io["train_vq_loss"] = vq_loss.detach().reshape(1)
    io["train_commit_loss"] = commit_loss.detach().reshape(1)
    io["train_grad_latents"] = h.grad.detach().contiguous()
    io["train_grad_codebook"] = model.quantize.embedding.weight.grad.detach().contiguous()
    # the entropy term (ratio 1) of an official quantizer holding the same codebook
    ent_q = vq.VectorQuantizer(TINY["codebook_size"], e, 0.25, 1.0, True, False)
    ent_q.embedding.weight.data.copy_(model.quantize.embedding.weight.data)
    ent_q.train()
    with torch.no_grad():
        _, (_, _, ent, _), _ = ent_q(io["latents"])
    io["train_entropy_loss"] = ent.detach().reshape(1)
    save_file(io, str(case / "io.safetensors"))

    n_codes = int(torch.unique(io["codes"]).numel())
    meta = {
        "spec": TINY_SPEC,
        "weights": "vq_tiny.pt",
        "official_config": {**TINY, "codebook_l2_norm": True, "commit_loss_beta": 0.25, "show_usage": True},
        "tolerance": {"latents": 1e-4, "reconstruction": 1e-4, "loss": 1e-6, "grad": 1e-6},
        "tolerance_why": "float32 throughout; SDPA vs bmm-softmax attention, F.silu vs x*sigmoid(x) and "
        "channels-last convs "
        "differ in the last bits only; codes must be equal",
        "distinct_codes": n_codes,
        "notes": "checkpoint tensors stored as float16 (weights rounded to float16 before the "
        "official float32 run, so they are exactly the weights used); reconstructions in io are "
        "the official [-1, 1] outputs, unclamped (recon_forward: model(x); recon_codes: decode_code(ids))",
    }
    (case / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
    return ["tiny"]


def _release_file(sd: dict[str, torch.Tensor], vq_model: str, folder: Path) -> Path:
    path = folder / f"{vq_model}.pt"
    torch.save({"model": sd, "args": argparse.Namespace(vq_model=vq_model)}, path)
    return path


def _full_models(checkout: Path, name: str, folder: Path) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The official model at the released configuration (seeded init) and vistok's with its weights."""
    import vistok

    vq = _official(checkout)
    fn = {"llamagen-vq16": vq.VQ_16, "llamagen-vq8": vq.VQ_8}[name]
    torch.manual_seed(0)
    official = fn().eval()
    path = _release_file(official.state_dict(), name, folder)
    tok = vistok.create(name, weights=str(path))
    return official, tok


def full_check(checkout: Path) -> dict:
    torch.set_num_threads(1)
    image = _photo("astronaut", (0, 0, 512, 512), (256, 256))
    result: dict[str, Any] = {"image": "skimage astronaut, 512 -> 256 bicubic", "names": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("llamagen-vq16", "llamagen-vq8"):
            official, tok = _full_models(checkout, name, Path(tmp))
            with torch.no_grad():
                xm = image * 2 - 1
                h_off = official.quant_conv(official.encoder(xm))
                t0 = time.perf_counter()
                _, _, (_, _, idx) = official.encode(xm)
                b, c, gh, gw = h_off.shape
                rec_off = official.decode_code(idx, shape=(b, c, gh, gw))
                t_off = time.perf_counter() - t0
                t0 = time.perf_counter()
                tokens = tok.encode(image)
                rec_vt = tok.decode(tokens)
                t_vt = time.perf_counter() - t0
                h_vt, _ = tok._encode_h(image)
                raw_vt, _ = tok._decode_q(tok.embed(tokens.ids).permute(0, 3, 1, 2))
            codes_off = idx.reshape(b, gh, gw)
            result["names"][name] = {
                "params_official": sum(p.numel() for p in official.parameters()),
                "params_vistok": sum(p.numel() for p in tok.parameters()),
                "tokens": int(tokens.ids[0].numel()),
                "bits": float(tokens.bits[0]),
                "codes_equal": bool(torch.equal(codes_off, tokens.ids)),
                "codes_equal_fraction": float((codes_off == tokens.ids).float().mean()),
                "distinct_codes": int(torch.unique(codes_off).numel()),
                "latents_max_abs_diff": float((h_off - h_vt).abs().max()),
                "recon_raw_max_abs_diff": float((rec_off - raw_vt).abs().max()),
                "recon_01_max_abs_diff": float((((rec_off + 1) / 2).clamp(0, 1) - rec_vt).abs().max()),
                "seconds_official_encode_decode": round(t_off, 2),
                "seconds_vistok_encode_decode": round(t_vt, 2),
            }
            print(name, json.dumps(result["names"][name]), flush=True)
            del official, tok
    return result


def speed_models(checkout: Path) -> list[tuple[str, Callable, Callable]]:
    """``(name, official_fn, vistok_fn)`` at the released configurations, same random weights;
    both take float ``[1, 3, 256, 256]`` in [0, 1] and return the reconstruction in [0, 1]."""
    out = []
    folder = Path(tempfile.mkdtemp(prefix="llamagen-speed-"))
    for name in ("llamagen-vq16", "llamagen-vq8"):
        official, tok = _full_models(checkout, name, folder)

        def official_fn(x: torch.Tensor, m: torch.nn.Module = official) -> torch.Tensor:
            with torch.no_grad():
                return ((m(x * 2 - 1)[0] + 1) / 2).clamp(0, 1)

        def vistok_fn(x: torch.Tensor, t: torch.nn.Module = tok) -> torch.Tensor:
            return t.reconstruct(x)

        out.append((name, official_fn, vistok_fn))
    return out
