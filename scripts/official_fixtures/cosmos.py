"""Parity fixtures of the NVIDIA Cosmos image tokenizers (DI / CI), made by the official code.

    /tmp/venv-cosmos/bin/python scripts/make_official_fixtures.py cosmos \
        --checkout /tmp/official/cosmos --commit SHA [--full]

The official package ``cosmos_tokenizer`` imports ``einops`` and ``loguru`` (and, in
``utils.py``, ``mediapy``, which this script does not import): run it from a venv made with
``python -m venv --system-site-packages /tmp/venv-cosmos`` and
``/tmp/venv-cosmos/bin/pip install -c <(echo torch==2.13.0) einops loguru``. The official
networks are imported from ``--checkout`` at run time; nothing of them is copied.

The release is made as NVIDIA's export CLI makes it (``cosmos_predict1/tokenizer/training/
jit_cli.py``): ``torch.jit.trace(network.encoder_jit(), example)`` and
``torch.jit.trace(network.decoder_jit(), encoder_jit(example)[0])``, saved as
``encoder.jit`` / ``decoder.jit``, with the network and example in bfloat16 (the dtype of
the official API). The random weights are rounded to bfloat16 *before* the official network
runs in float32 for the reference outputs, so the archives hold exactly the weights that
produced them. The float32 run sets the FSQ quantizer's output dtype to float32 through
the official ``DiscreteImageTokenizer.to(dtype=...)`` (its default, bfloat16, would feed
bfloat16 codes to a float32 ``post_quant_conv``; the codes are exact in both dtypes).

Cases (the smallest widths the official 32-group GroupNorm allows):

* ``di``: ``DiscreteImageTokenizer`` with ``channels=32, channels_mult=[1],
  num_res_blocks=0, patch_size=4, spatial_compression=8, z_channels=16``, FSQ
  ``levels=[8, 5, 5, 5]`` (1,000 codes: the released 64,000-code levels would put a
  768 KB ``implicit_codebook`` buffer in each archive), ``resolution=64,
  attn_resolutions=[16]`` (so the decoder level has a self-attention block as well as the
  mid block), two-level Haar, one down/up-sampling.
* ``ci``: ``ContinuousImageTokenizer`` (``formulation="AE"``) with ``channels=32,
  channels_mult=[1], num_res_blocks=0, patch_size=2, spatial_compression=2,
  z_channels=16, latent_channels=8``: one Haar level.

Norm affines and biases are randomized too, ``quant_conv`` is scaled so that the latents
spread over the FSQ levels (codes vary) and ``conv_out`` so that reconstructions stay
mostly inside ``[-1, 1]``. ``io.safetensors`` holds two 32x32 photographs (astronaut,
chelsea) in ``[0, 1]`` and what the official code made of them: ``codes`` (int64 of the
official int32 indices), ``codes_vectors`` (the official quantized codes), ``recon``
(``decode_code(indices)``, official ``[-1, 1]``, unclamped) for DI; ``latents`` and
``recon`` (``decode(latents)``) for CI.

``--full``: each released configuration (``cosmos-di8/16``, ``cosmos-ci8/16``) with the
official default initialization (``quant_conv`` scaled as above), traced to
``encoder.jit``/``decoder.jit`` in float32, loaded into vistok through ``weights=``, one
256x256 photograph.
"""

from __future__ import annotations

import copy
import importlib
import json
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

REPO = "NVIDIA/Cosmos-Tokenizer"

CASES: dict[str, dict[str, Any]] = {
    "di": {
        "kind": "DI",
        "config": {
            "channels": 32,
            "channels_mult": [1],
            "num_res_blocks": 0,
            "patch_size": 2,
            "spatial_compression": 4,
            "z_channels": 16,
            "levels": [8, 5, 5, 5],
            "embedding_dim": 4,
            "resolution": 64,
            "attn_resolutions": [32],
        },
        "image_size": 32,
        "release": ["encoder.jit", "decoder.jit"],
        "spec": "cosmos-di:channels=32,channels_mult=[1],num_res_blocks=0,patch_size=2,spatial_compression=4,"
        "z_channels=16,levels=[8,5,5,5],resolution=64,attn_resolutions=[32]",
    },
    "ci": {
        "kind": "CI",
        "config": {
            "channels": 32,
            "channels_mult": [1],
            "num_res_blocks": 0,
            "patch_size": 2,
            "spatial_compression": 2,
            "z_channels": 16,
            "latent_channels": 4,
            "resolution": 64,
            "attn_resolutions": [],
        },
        "image_size": 16,
        "release": ["autoencoder.jit"],
        "spec": "cosmos-ci:channels=32,channels_mult=[1],num_res_blocks=0,patch_size=2,spatial_compression=2,"
        "z_channels=16,latent_channels=4,resolution=64,attn_resolutions=[]",
    },
}
FULL = {
    "cosmos-di8": ("DI", 8),
    "cosmos-di16": ("DI", 16),
    "cosmos-ci8": ("CI", 8),
    "cosmos-ci16": ("CI", 16),
}


def _official(checkout: Path) -> ModuleType:
    if str(checkout) not in sys.path:
        sys.path.insert(0, str(checkout))
    from loguru import logger

    logger.remove()  # the official constructors log their whole configuration
    return importlib.import_module("cosmos_tokenizer.networks")


def _photo(name: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> torch.Tensor:
    """Crop ``box`` of a skimage photograph resized to ``size`` (w, h): float ``[1, 3, h, w]`` in [0, 1]."""
    import skimage.data

    arr = getattr(skimage.data, name)()
    img = Image.fromarray(arr).crop(box).resize(size, Image.Resampling.BICUBIC)
    t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
    return t.unsqueeze(0).clamp(0, 1).contiguous()


def _images(size: int) -> torch.Tensor:
    """Two ``size`` x ``size`` photographs (astronaut's face, chelsea): float ``[2, 3, size, size]`` in [0, 1]."""
    box = (size, size)
    return torch.cat(
        [_photo("astronaut", (150, 40, 330, 220), box), _photo("chelsea", (90, 20, 330, 260), box)]
    )


def _network(nets: ModuleType, kind: str, overrides: dict[str, Any]) -> torch.nn.Module:
    cfg = dict(nets.TokenizerConfigs[kind].value)
    cfg.update(overrides)
    return nets.TokenizerModels[kind].value(**cfg).eval()


@torch.no_grad()
def _randomize(net: torch.nn.Module, images: torch.Tensor, seed: int, *, all_tensors: bool) -> None:
    """Seeded weights: norm affines and biases too (``all_tensors``); codes that vary; outputs mostly in range."""
    g = torch.Generator().manual_seed(seed)
    if all_tensors:
        for name, p in net.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            elif p.ndim == 1:  # GroupNorm weight
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    x = images * 2 - 1
    z = net.quant_conv(net.encoder(x))
    net.quant_conv.weight.mul_(1.5 / z.std())
    net.quant_conv.bias.zero_()
    out = net.decoder(net.post_quant_conv(net.quant_conv(net.encoder(x))))
    net.decoder.conv_out.weight.mul_(0.5 / out.std())


def _round_bf16(net: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(p.bfloat16().float())


@torch.no_grad()
def _official_outputs(net: torch.nn.Module, kind: str, images: torch.Tensor) -> dict[str, torch.Tensor]:
    x = images * 2 - 1
    if kind == "DI":
        indices, codes, _ = net.encode(x)
        return {
            "codes": indices.long(),
            "codes_vectors": codes.float(),
            "recon": net.decode_code(indices).float(),
        }
    latents = net.encode(x)[0]
    return {"latents": latents.float(), "recon": net.decode(latents).float()}


def _export(net: torch.nn.Module, folder: Path, example: torch.Tensor, dtype: torch.dtype) -> None:
    """``encoder.jit`` + ``decoder.jit`` as the official export CLI traces them."""
    folder.mkdir(parents=True, exist_ok=True)
    torch._C._jit_set_texpr_fuser_enabled(False)
    with torch.no_grad():
        enc = torch.jit.trace(net.encoder_jit(), example.to(dtype), strict=False)
        dec = torch.jit.trace(net.decoder_jit(), enc(example.to(dtype))[0], strict=False)
    torch.jit.save(enc, str(folder / "encoder.jit"))
    torch.jit.save(dec, str(folder / "decoder.jit"))


def _export_autoencoder(
    net: torch.nn.Module, folder: Path, example: torch.Tensor, dtype: torch.dtype
) -> None:
    """``autoencoder.jit``: the whole network traced, as the official export CLI traces it."""
    folder.mkdir(parents=True, exist_ok=True)
    torch._C._jit_set_texpr_fuser_enabled(False)
    with torch.no_grad():
        full = torch.jit.trace(net, example.to(dtype), strict=False)
    torch.jit.save(full, str(folder / "autoencoder.jit"))


def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    nets = _official(checkout)
    for i, (case, spec) in enumerate(CASES.items()):
        kind = spec["kind"]
        images = _images(spec["image_size"])
        torch.manual_seed(100 + i)
        net = _network(nets, kind, spec["config"])
        _randomize(net, images, 200 + i, all_tensors=True)
        _round_bf16(net)
        net = net.to(dtype=torch.float32)  # DiscreteImageTokenizer.to also sets the FSQ output dtype
        ref = _official_outputs(net, kind, images)
        x = images * 2 - 1
        # the float32 traced archives give the same outputs as the eager network
        with tempfile.TemporaryDirectory() as tmp:
            if spec["release"] == ["autoencoder.jit"]:
                _export_autoencoder(net, Path(tmp), x, torch.float32)
                with torch.no_grad():
                    recon_jit = torch.jit.load(str(Path(tmp) / "autoencoder.jit"))(x)[0]
            else:
                _export(net, Path(tmp), x, torch.float32)
                enc = torch.jit.load(str(Path(tmp) / "encoder.jit"))
                dec = torch.jit.load(str(Path(tmp) / "decoder.jit"))
                with torch.no_grad():
                    first = enc(x)[0]
                    recon_jit = dec(first)
                assert (
                    torch.equal(first.long(), ref["codes"])
                    if kind == "DI"
                    else torch.equal(first, ref["latents"])
                )
            assert torch.allclose(recon_jit, ref["recon"], atol=1e-5), case
        folder = out / case
        released = copy.deepcopy(net).to(dtype=torch.bfloat16)
        if spec["release"] == ["autoencoder.jit"]:
            _export_autoencoder(released, folder, x, torch.bfloat16)
        else:
            _export(released, folder, x, torch.bfloat16)
        tensors = {"images": images.contiguous(), **{k: v.contiguous() for k, v in ref.items()}}
        save_file(tensors, str(folder / "io.safetensors"))
        meta = {
            "spec": spec["spec"],
            "weights": ".",
            "release": spec["release"],
            "official_config": spec["config"],
            "tolerance": {"latents": 1e-4, "reconstruction": 1e-4},
            "tolerance_why": "float32 throughout; SDPA vs bmm-softmax attention and F.silu vs x*sigmoid(x) differ in "
            "the last bits only (the Haar transforms are bit-identical); codes must be equal",
            "notes": "archives traced in bfloat16 as the official export does (weights rounded to bfloat16 before the "
            "official float32 run that made io.safetensors); recon is the official [-1, 1] output, unclamped",
        }
        if kind == "DI":
            meta["distinct_codes"] = int(ref["codes"].unique().numel())
        (folder / "case.json").write_text(json.dumps(meta, indent=2) + "\n")
        print(case, {k: tuple(v.shape) for k, v in ref.items()}, meta.get("distinct_codes", ""), flush=True)
    return list(CASES)


def _full_pair(nets: ModuleType, name: str, image: torch.Tensor, seed: int) -> tuple[torch.nn.Module, Any]:
    """The official network at ``name``'s released configuration (seeded init) and vistok's, same weights."""
    import vistok

    kind, s = FULL[name]
    torch.manual_seed(seed)
    net = _network(nets, kind, {"spatial_compression": s})
    _randomize(net, image, seed, all_tensors=False)
    net = net.to(dtype=torch.float32)
    with tempfile.TemporaryDirectory() as tmp:
        _export(net, Path(tmp), torch.rand(1, 3, 64, 64) * 2 - 1, torch.float32)
        tok = vistok.create(name, weights=tmp)
    return net, tok


def full_check(checkout: Path) -> dict:
    torch.set_num_threads(1)
    nets = _official(checkout)
    image = _photo("astronaut", (0, 0, 512, 512), (256, 256))
    result: dict[str, Any] = {"image": "skimage astronaut, 512 -> 256 bicubic", "names": {}}
    for i, name in enumerate(FULL):
        kind, _ = FULL[name]
        net, tok = _full_pair(nets, name, image, 1000 + i)
        t0 = time.perf_counter()
        ref = _official_outputs(net, kind, image)
        t1 = time.perf_counter()
        tokens = tok.encode(image)
        recon = tok.decode(tokens)
        t2 = time.perf_counter()
        entry: dict[str, Any] = {
            "params_official": sum(p.numel() for p in net.parameters()),
            "params_vistok": sum(p.numel() for p in tok.parameters()),
            "tokens": int(tok.max_tokens),
            "bits": float(tokens.bits[0]),
        }
        if kind == "DI":
            eq = tokens.ids == ref["codes"]
            entry.update(
                codes_equal=bool(eq.all()),
                codes_equal_fraction=float(eq.float().mean()),
                distinct_codes=int(ref["codes"].unique().numel()),
            )
            raw = tok.decoder(tok.post_quant_conv(tok.embed(ref["codes"]).permute(0, 3, 1, 2)))
        else:
            with torch.no_grad():
                z = tok.latent(image)
                raw = tok.decoder(tok.post_quant_conv(ref["latents"]))
            entry["latents_max_abs_diff"] = float((z - ref["latents"]).abs().max())
            entry["latents_float16_max_abs_diff"] = float(
                (tokens.latents.float() - ref["latents"]).abs().max()
            )
        with torch.no_grad():
            entry["recon_raw_max_abs_diff"] = float((raw - ref["recon"]).abs().max())
        entry["recon_01_max_abs_diff"] = float((recon - ((ref["recon"] + 1) / 2).clamp(0, 1)).abs().max())
        entry["seconds_official_encode_decode"] = round(t1 - t0, 2)
        entry["seconds_vistok_encode_decode"] = round(t2 - t1, 2)
        result["names"][name] = entry
        print(name, json.dumps(entry), flush=True)
        del net, tok
    return result


def speed_models(checkout: Path) -> list[tuple[str, Callable, Callable]]:
    """``(name, official_fn, vistok_fn)`` at each released configuration, same random weights."""
    import vistok

    nets = _official(checkout)
    image = _photo("astronaut", (0, 0, 512, 512), (256, 256))
    models = []
    for i, name in enumerate(FULL):
        kind, s = FULL[name]
        torch.manual_seed(1000 + i)
        net = _network(nets, kind, {"spatial_compression": s})
        _randomize(net, image, 1000 + i, all_tensors=False)
        net = net.to(dtype=torch.float32)
        tok = vistok.create(name)
        tok.load_state_dict(net.state_dict(), strict=True)  # the same keys: non-persistent buffers aside
        tok.eval()

        def official_fn(x: torch.Tensor, m: torch.nn.Module = net, k: str = kind) -> torch.Tensor:
            with torch.no_grad():
                if k == "DI":
                    y = m.decode_code(m.encode(x * 2 - 1)[0])
                else:
                    y = m.decode(m.encode(x * 2 - 1)[0])
            return ((y.float() + 1) / 2).clamp(0, 1)

        def vistok_fn(x: torch.Tensor, t: torch.nn.Module = tok) -> torch.Tensor:
            return t.decode(t.encode(x))

        models.append((name, official_fn, vistok_fn))
    return models
