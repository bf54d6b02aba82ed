"""Parity fixtures of TiTok and MaskGIT-VQGAN (bytedance/1d-tokenizer), made by the official code.

    python scripts/make_official_fixtures.py titok --checkout /tmp/official/titok --commit SHA [--full]

``--checkout`` is a checkout of https://github.com/bytedance/1d-tokenizer; its ``modeling``
package is imported from there (needs ``einops``, ``omegaconf``, ``huggingface_hub``: install
``einops`` into a venv made with ``--system-site-packages``). Two things are replaced inside this
script, never in the checkout:

* ``modeling/modules/__init__.py`` (re-exports, plus the training losses, which import
  ``torchvision``) is not run: ``modeling.modules`` is registered as a bare package of that folder;
* ``accelerate`` (imported by ``modeling/quantizer/quantizer.py`` at module level only for a
  multi-GPU ``gather`` used in training) is a tiny fake module in ``sys.modules`` when it is not
  installed;
* the official ViTs take their width/depth/heads from a fixed table (``small``/``base``/
  ``large``); to build small fixtures, ``modeling/modules/blocks.py`` is executed from its own
  source with extra entries ``t16``/``t24`` added to those three tables (the text of every
  other line is the official one). Likewise the MaskGIT pixel decoder and codebook that
  ``TiTok.__init__`` builds at a fixed size are built at the small size of the case (the
  official ``Decoder``/``VectorQuantizer`` classes, another config).

Cases (``tests/fixtures/official/titok/<case>/``), two 16x16 images (crops of
``skimage.data.astronaut()`` / ``chelsea()``, stored in ``io`` as uint8, the inputs being k/255):

* ``bl_vq``: single-stage VQ (``is_legacy: False``, ``finetune_decoder: False``), ViT t16
  (16 wide, 2 blocks, 2 heads) encoder, patch 4, t8 (8, 1, 2) decoder, patch 4, 8 tokens, 64 codes of 8 dims, no l2 norm; release
  layout: ``PyTorchModelHubMixin`` folder written by the official ``save_pretrained``
  (``config.json`` + ``model.safetensors``);
* ``bl_vae``: the same with ``quantize_mode: vae``, 4 channels per token; ``io`` holds the
  posterior mean and std and ``decode_tokens(mean)``;
* ``legacy``: two-stage TiTok (defaults: ``is_legacy``, ``finetune_decoder``), l2-normalized 32 x
  6 codebook, t16 encoder, patch 4, t8 (8, 1, 2) decoder, patch 2, MaskGIT pixel decoder at hidden 32,
  ``channel_mult [1, 1]``, one residual block, 8-dim pixel codes (1024 of them, as the official
  head is fixed to 1024 logits); release layout: the bare state dict ``.bin`` of
  ``fun-research/TiTok`` (``tokenizer_titok_*.bin``);
* ``maskgit_vqgan``: the MaskGIT VQGAN at hidden 32, ``channel_mult [2, 1]`` (both width
  changes, so the official ``nin_shortcut`` wiring is exercised), one residual block, 64 codes of
  8 dims; release layout: a bare state dict ``.bin`` (``maskgit-vqgan-imagenet-f16-256.bin``),
  loaded and run by the official ``PretrainedTokenizer``.

To keep the ``.bin`` fixtures small their float weights are views into one shared seeded random
pool (one storage in the file; norm weights ``1 + U(-0.1, 0.1)``). Codebooks are drawn around the
encoder outputs so that codes vary; the smallest gap between the nearest and second-nearest
code is recorded in ``case.json`` (``min_code_gap``), so exact code equality is meaningful.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file
from torch import Tensor

REPO = "bytedance/1d-tokenizer"

SIZES = {"t8": (8, 1, 2), "t16": (16, 2, 2)}  # extra (width, depth, heads) entries for the fixtures

# name -> official infer config (configs/infer/TiTok/<file>)
NAMES = {
    "titok-l-32": "titok_l32.yaml",
    "titok-b-64": "titok_b64.yaml",
    "titok-s-128": "titok_s128.yaml",
    "titok-bl-64-vq": "titok_bl64_vq8k.yaml",
    "titok-bl-128-vq": "titok_bl128_vq8k.yaml",
    "titok-sl-256-vq": "titok_sl256_vq8k.yaml",
    "titok-bl-64-vae": "titok_bl64_vae_c16.yaml",
    "titok-bl-128-vae": "titok_bl128_vae_c16.yaml",
    "titok-ll-32-vae": "titok_ll32_vae_c16.yaml",
}

PIXEL_FULL = {
    "channel_mult": [1, 1, 2, 2, 4], "num_resolutions": 5, "dropout": 0.0, "hidden_channels": 128,
    "num_channels": 3, "num_res_blocks": 2, "resolution": 256, "z_channels": 256,
}  # fmt: skip


# ---- importing the official code ------------------------------------------------------------------
def _stub_accelerate() -> None:
    try:
        import accelerate.utils.operations  # noqa: F401
    except ImportError:
        acc = types.ModuleType("accelerate")
        utils = types.ModuleType("accelerate.utils")
        ops = types.ModuleType("accelerate.utils.operations")
        ops.gather = lambda x: x  # type: ignore[attr-defined]
        acc.utils = utils  # type: ignore[attr-defined]
        utils.operations = ops  # type: ignore[attr-defined]
        sys.modules.update({"accelerate": acc, "accelerate.utils": utils, "accelerate.utils.operations": ops})


def _load_blocks(checkout: Path) -> None:
    """Execute the official blocks module with the fixture sizes added to its size tables."""
    path = checkout / "modeling" / "modules" / "blocks.py"
    src = path.read_text()
    for key, idx in (('"large": 1024,', 0), ('"large": 24,', 1), ('"large": 16,', 2)):
        extra = " ".join(f'"{n}": {v[idx]},' for n, v in SIZES.items())
        if src.count(key) < 2:
            raise SystemExit(f"{path}: size table entry {key} not found twice; another revision?")
        src = src.replace(key, f"{key} {extra}")
    import modeling  # noqa: F401  (the package, from the checkout)

    pkg = types.ModuleType(
        "modeling.modules"
    )  # its __init__ only re-exports, and imports the training losses
    pkg.__path__ = [str(path.parent)]
    sys.modules["modeling.modules"] = pkg
    mod = types.ModuleType("modeling.modules.blocks")
    mod.__file__ = str(path)
    sys.modules["modeling.modules.blocks"] = mod
    exec(compile(src, str(path), "exec"), mod.__dict__)


def _official(checkout: Path) -> types.ModuleType:
    """``modeling.titok`` of the checkout (size tables extended)."""
    if "modeling.titok" in sys.modules:
        return sys.modules["modeling.titok"]
    sys.path.insert(0, str(checkout))
    _stub_accelerate()
    _load_blocks(checkout)
    import modeling.titok

    return modeling.titok


class _PixelSize:
    """Within the block, ``TiTok.__init__``/``PretrainedTokenizer`` build the MaskGIT parts at ``conf``."""

    def __init__(
        self, titok: types.ModuleType, conf: dict[str, Any] | None, num_embeddings: int | None = None
    ):
        self.m, self.conf, self.k = titok, conf, num_embeddings

    def __enter__(self) -> None:
        import modeling.modules.maskgit_vqgan as mv
        from omegaconf import OmegaConf

        m, conf, k = self.m, self.conf, self.k
        self.saved = (m.Pixel_Eecoder, m.Pixel_Decoder, m.Pixel_Quantizer)
        if conf is None:
            return
        c = OmegaConf.create(conf)
        m.Pixel_Eecoder = lambda _conf: mv.Encoder(c)
        m.Pixel_Decoder = lambda _conf: mv.Decoder(c)
        m.Pixel_Quantizer = lambda num_embeddings, embedding_dim, commitment_cost: mv.VectorQuantizer(
            k or num_embeddings, c.z_channels, commitment_cost
        )

    def __exit__(self, *exc: object) -> None:
        self.m.Pixel_Eecoder, self.m.Pixel_Decoder, self.m.Pixel_Quantizer = self.saved


def _config(
    *, crop: int, enc: str, dec: str, ep: int, dp: int, n: int, token_size: int, mode: str = "vq",
    codebook: int = 4096, l2: bool = True, legacy: bool = True,
) -> dict[str, Any]:  # fmt: skip
    vq: dict[str, Any] = {
        "token_size": token_size, "vit_enc_model_size": enc, "vit_dec_model_size": dec,
        "vit_enc_patch_size": ep, "vit_dec_patch_size": dp, "num_latent_tokens": n,
        "finetune_decoder": legacy,
    }  # fmt: skip
    if mode == "vq":
        vq.update(codebook_size=codebook, use_l2_norm=l2, commitment_cost=0.25)
    else:
        vq["quantize_mode"] = "vae"
    if not legacy:
        vq["is_legacy"] = False
    return {"model": {"vq_model": vq}, "dataset": {"preprocessing": {"crop_size": crop}}}


def _release_config(checkout: Path, file: str) -> dict[str, Any]:
    from omegaconf import OmegaConf

    cfg = OmegaConf.to_container(
        OmegaConf.load(checkout / "configs" / "infer" / "TiTok" / file), resolve=True
    )
    return {"model": {"vq_model": cfg["model"]["vq_model"]}, "dataset": cfg["dataset"]}


# ---- inputs and weights -------------------------------------------------------------------------
def _image(which: str, size: int) -> Tensor:
    import numpy as np
    import skimage.data
    from PIL import Image

    arr = {
        "astronaut": skimage.data.astronaut()[40:340, 120:420],
        "chelsea": skimage.data.chelsea()[0:300, 80:380],
    }[which]
    img = Image.fromarray(arr).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0


def _inputs(size: int) -> Tensor:
    return torch.stack([_image("astronaut", size), _image("chelsea", size)])


def _is_norm(name: str, model: torch.nn.Module) -> bool:
    mod_name = name.rsplit(".", 1)[0]
    mod = dict(model.named_modules()).get(mod_name)
    return isinstance(mod, (torch.nn.LayerNorm, torch.nn.GroupNorm))


def _randomize(model: torch.nn.Module, seed: int, *, pooled: bool) -> dict[str, Tensor]:
    """Seeded weights for every float tensor of ``model`` (loaded into it); views of one pool if ``pooled``."""
    g = torch.Generator().manual_seed(seed)
    sd = model.state_dict()
    largest = max(v.numel() for v in sd.values())
    pool = (torch.rand(largest + 4096, generator=g) * 2 - 1) * 0.1
    out: dict[str, Tensor] = {}
    for k, v in sd.items():
        n = v.numel()
        if _is_norm(k, model):
            base = 1.0 if k.endswith("weight") else 0.0
            out[k] = base + (torch.rand(v.shape, generator=g) * 2 - 1) * 0.1
        elif pooled:
            off = int(torch.randint(0, pool.numel() - n + 1, (1,), generator=g))
            out[k] = pool[off : off + n].view(v.shape)
        else:
            out[k] = (torch.rand(v.shape, generator=g) * 2 - 1) * 0.1
    model.load_state_dict(out)
    return out


def _spread(codebook: torch.nn.Embedding, vectors: Tensor, seed: int, *, l2: bool) -> None:
    """Codes around the (normalized) encoder outputs ``vectors [M, C]``, so that many are used."""
    g = torch.Generator().manual_seed(seed)
    v = torch.nn.functional.normalize(vectors, dim=-1) if l2 else vectors
    k = codebook.weight.shape[0]
    pick = v[torch.randint(0, v.shape[0], (k,), generator=g)]
    noise = torch.randn(pick.shape, generator=g) * v.std() * 0.5
    with torch.no_grad():
        codebook.weight.copy_(pick + noise)


def _sharpen(model: Any, seed: int) -> None:
    """Legacy head: logits large enough for a peaked softmax and a unit-scale pixel codebook, so the
    mixed MaskGIT map varies across positions (a flat map makes GroupNorm amplify float rounding)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        model.decoder.ffn[2].weight.mul_(25.0)
        w = model.pixel_quantize.embedding.weight
        w.copy_(torch.randn(w.shape, generator=g))


def _code_gap(vectors: Tensor, codes: Tensor, *, l2: bool) -> float:
    """Smallest (second-nearest minus nearest) squared distance over ``vectors [M, C]``."""
    if l2:
        vectors = torch.nn.functional.normalize(vectors, dim=-1)
        codes = torch.nn.functional.normalize(codes, dim=-1)
    d = torch.cdist(vectors.double(), codes.double()) ** 2
    two = d.topk(2, dim=1, largest=False).values
    return float((two[:, 1] - two[:, 0]).min())


def _pooled_state(model: torch.nn.Module, drawn: dict[str, Tensor]) -> dict[str, Tensor]:
    """``model``'s state for ``torch.save``: the drawn pool views where unchanged (one shared storage)."""
    return {k: (drawn[k] if torch.equal(drawn[k], v) else v.clone()) for k, v in model.state_dict().items()}


def _write_case(out: Path, case: str, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    d = out / case
    d.mkdir(parents=True, exist_ok=True)
    tensors = {**tensors, "images": (tensors["images"] * 255).round().to(torch.uint8)}  # exact: k / 255
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(d / "io.safetensors"))
    (d / "case.json").write_text(json.dumps(meta, indent=2) + "\n")


def _save_mixin(model: torch.nn.Module, folder: Path) -> None:
    """The official ``save_pretrained`` (config.json + model.safetensors); the model card is dropped."""
    model.save_pretrained(str(folder))
    for extra in folder.iterdir():
        if extra.name not in ("config.json", "model.safetensors"):
            extra.unlink()


def _vq_ids(model: Any, x: Tensor) -> tuple[Tensor, Tensor]:
    """Official encode: the pre-quantization latents ``[B, N, C]`` and ids ``[B, N]``."""
    z = model.encoder(pixel_values=x, latent_tokens=model.latent_tokens)
    _, rd = model.encode(x)
    return z[:, :, 0, :].transpose(1, 2), rd["min_encoding_indices"][:, 0, :]


# ---- the small cases -----------------------------------------------------------------------------
def _case_single(m: types.ModuleType, out: Path, *, mode: str) -> str:
    case = f"bl_{mode}"
    torch.manual_seed(1)
    ts = 8 if mode == "vq" else 4
    cfg = _config(crop=16, enc="t16", dec="t8", ep=4, dp=4, n=8, token_size=ts, mode=mode, codebook=64,
                  l2=False, legacy=False)  # fmt: skip
    model = m.TiTok(cfg).eval()
    _randomize(model, seed=11 if mode == "vq" else 12, pooled=False)
    x = _inputs(16)
    spec = "titok-vae" if mode == "vae" else "titok"
    common = ("image_size=16,enc_patch_size=4,dec_patch_size=4,enc_width=16,enc_depth=2,enc_heads=2,"
              f"dec_width=8,dec_depth=1,dec_heads=2,num_latent_tokens=8,token_size={ts}")  # fmt: skip
    meta: dict[str, Any] = {"weights": "release", "atol": 1e-5}
    with torch.no_grad():
        if mode == "vq":
            z0, _ = _vq_ids(model, x)
            _spread(model.quantize.embedding, z0.reshape(-1, ts), seed=13, l2=False)
            z, ids = _vq_ids(model, x)
            recon = model.decode_tokens(ids[:, None, :])
            io = {"images": x, "latents": z, "ids": ids, "recon": recon}
            meta["min_code_gap"] = _code_gap(z.reshape(-1, ts), model.quantize.embedding.weight, l2=False)
            meta["spec"] = f"{spec}:{common},codebook_size=64,use_l2_norm=false,legacy=false"
        else:
            post = model.encode(x)[1]
            recon = model.decode_tokens(post.mean)
            io = {"images": x, "mean": post.mean[:, :, 0, :].transpose(1, 2),
                  "std": post.std[:, :, 0, :].transpose(1, 2), "recon": recon}  # fmt: skip
            meta["spec"] = f"{spec}:{common}"
            meta["latent_atol"] = 2e-3  # float16 latents
    _save_mixin(model, out / case / "release")
    meta["notes"] = (
        "official TiTok saved with its save_pretrained (PyTorchModelHubMixin folder); recon = "
        + ("decode_tokens(ids)" if mode == "vq" else "decode_tokens(posterior mean)")
        + ", not clamped"
    )
    _write_case(out, case, io, meta)
    return case


def _case_legacy(m: types.ModuleType, out: Path) -> str:
    case = "legacy"
    torch.manual_seed(2)
    pixel = {"channel_mult": [1, 1], "num_resolutions": 2, "dropout": 0.0, "hidden_channels": 32,
             "num_channels": 3, "num_res_blocks": 1, "resolution": 16, "z_channels": 8}  # fmt: skip
    cfg = _config(crop=16, enc="t16", dec="t8", ep=4, dp=2, n=6, token_size=6, codebook=32, l2=True)
    with _PixelSize(m, pixel):
        model = m.TiTok(cfg).eval()
    drawn = _randomize(model, seed=21, pooled=True)
    x = _inputs(16)
    with torch.no_grad():
        z0, _ = _vq_ids(model, x)
        _spread(model.quantize.embedding, z0.reshape(-1, 6), seed=23, l2=True)
        _sharpen(model, seed=24)
        z, ids = _vq_ids(model, x)
        recon = model.decode_tokens(ids[:, None, :])
    d = out / case
    d.mkdir(parents=True, exist_ok=True)
    torch.save(_pooled_state(model, drawn), d / "tokenizer_titok_t6.bin")
    gap = _code_gap(z.reshape(-1, 6), model.quantize.embedding.weight, l2=True)
    spec = ("titok:image_size=16,enc_patch_size=4,dec_patch_size=2,enc_width=16,enc_depth=2,enc_heads=2,"
            "dec_width=8,dec_depth=1,dec_heads=2,num_latent_tokens=6,codebook_size=32,token_size=6,"
            "use_l2_norm=true,legacy=true,pixel_hidden_channels=32,pixel_channel_mult=[1,1],"
            "pixel_num_res_blocks=1,pixel_z_channels=8")  # fmt: skip
    _write_case(out, case, {"images": x, "latents": z, "ids": ids, "recon": recon}, {
        "spec": spec, "weights": "tokenizer_titok_t6.bin", "atol": 3e-5, "min_code_gap": gap,
        "notes": "two-stage TiTok: decoder -> 1024 MaskGIT logits -> softmax mix of pixel_quantize -> pixel_decoder; "
                 "recon = decode_tokens(ids), not clamped; bare state dict .bin; atol: the MaskGIT decoder GroupNorm scales "
                 "float rounding of the softmax mix (output scale ~2) up to ~1e-5",
    })  # fmt: skip
    return case


def _case_maskgit(m: types.ModuleType, out: Path) -> str:
    case = "maskgit_vqgan"
    import modeling.modules.maskgit_vqgan as mv
    from omegaconf import OmegaConf

    torch.manual_seed(3)
    conf = {"channel_mult": [2, 1], "num_resolutions": 2, "dropout": 0.0, "hidden_channels": 32,
            "num_channels": 3, "num_res_blocks": 1, "resolution": 16, "z_channels": 8}  # fmt: skip
    c = OmegaConf.create(conf)
    holder = torch.nn.Module()
    holder.encoder, holder.decoder = mv.Encoder(c), mv.Decoder(c)
    holder.quantize = mv.VectorQuantizer(64, 8, 0.25)
    drawn = _randomize(holder, seed=31, pooled=True)
    x = _inputs(16)
    with torch.no_grad():
        h = holder.encoder(x)
        _spread(holder.quantize.embedding, h.permute(0, 2, 3, 1).reshape(-1, 8), seed=33, l2=False)
    d = out / case
    d.mkdir(parents=True, exist_ok=True)
    path = d / "maskgit-vqgan-t64.bin"
    torch.save(_pooled_state(holder, drawn), path)
    with _PixelSize(m, conf, num_embeddings=64):
        tok = m.PretrainedTokenizer(str(path))  # the official loader (strict) and model
    with torch.no_grad():
        latents = tok.encoder(x)
        ids = tok.encode(x).view(2, 8, 8)
        recon = tok.decode(ids)
    gap = _code_gap(latents.permute(0, 2, 3, 1).reshape(-1, 8), tok.quantize.embedding.weight, l2=False)
    _write_case(out, case, {"images": x, "latents": latents, "ids": ids, "recon": recon}, {
        "spec": "maskgit-vqgan:hidden_channels=32,channel_mult=[2,1],num_res_blocks=1,z_channels=8,num_embeddings=64",
        "weights": "maskgit-vqgan-t64.bin", "atol": 1e-5, "min_code_gap": gap,
        "notes": "official PretrainedTokenizer (modeling/titok.py) at a small config; recon = its decode (clamped)",
    })  # fmt: skip
    return case


def make(checkout: Path, out: Path) -> list[str]:
    torch.set_num_threads(1)
    m = _official(checkout)
    cases = [
        _case_single(m, out, mode="vq"),
        _case_single(m, out, mode="vae"),
        _case_legacy(m, out),
        _case_maskgit(m, out),
    ]
    for case in cases:  # the VQ/VAE release folders are named "release" in case.json
        meta_path = out / case / "case.json"
        meta = json.loads(meta_path.read_text())
        print(
            case,
            meta.get("min_code_gap"),
            sum(p.stat().st_size for p in (out / case).rglob("*") if p.is_file()),
        )
    return cases


# ---- the full configurations ---------------------------------------------------------------------
def _build_full(m: types.ModuleType, checkout: Path, name: str) -> Any:
    cfg = _release_config(checkout, NAMES[name])
    torch.manual_seed(0)
    with _PixelSize(m, None):
        model = m.TiTok(cfg).eval()
    return model


def _official_recon(model: Any, x: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
    with torch.no_grad():
        if model.quantize_mode == "vq":
            _, rd = model.encode(x)
            ids = rd["min_encoding_indices"]
            return ids[:, 0, :], None, model.decode_tokens(ids)  # type: ignore[return-value]
        post = model.encode(x)[1]
        return None, post.mean[:, :, 0, :].transpose(1, 2), model.decode_tokens(post.mean)  # type: ignore[return-value]


def full_check(checkout: Path) -> dict[str, Any]:
    import gc

    import vistok

    torch.set_num_threads(1)
    m = _official(checkout)
    x = _inputs(256)[:1]
    results: dict[str, Any] = {"input": "skimage astronaut crop, 256x256", "names": {}}
    for name in [*NAMES, "maskgit-vqgan"]:
        t0 = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            if name == "maskgit-vqgan":
                import modeling.modules.maskgit_vqgan as mv
                from omegaconf import OmegaConf

                holder = torch.nn.Module()
                c = OmegaConf.create(PIXEL_FULL)
                holder.encoder, holder.decoder = mv.Encoder(c), mv.Decoder(c)
                holder.quantize = mv.VectorQuantizer(1024, 256, 0.25)
                path = Path(tmp) / "maskgit-vqgan-imagenet-f16-256.bin"
                torch.save(holder.state_dict(), path)
                del holder
                off = m.PretrainedTokenizer(str(path))
                n_off = sum(p.numel() for p in off.parameters())
                with torch.no_grad():
                    ids_o = off.encode(x).view(1, 16, 16)
                    rec_o = off.decode(ids_o)
                lat_o = None
            else:
                off = _build_full(m, checkout, name)
                n_off = sum(p.numel() for p in off.parameters())
                ids_o, lat_o, rec_o = _official_recon(off, x)
                rec_o = rec_o.clamp(0, 1)
                path = Path(tmp) / "release"
                _save_mixin(off, path)
            del off
            gc.collect()
            tok = vistok.create(name, weights=str(path))
            n_vis = sum(p.numel() for p in tok.parameters())
            with torch.no_grad():
                t = tok.encode(x)
                rec_v = tok.decode(t)
            del tok
            gc.collect()
        r: dict[str, Any] = {"params_official": n_off, "params_vistok": n_vis}
        if ids_o is not None:
            r["codes_equal"] = bool(torch.equal(ids_o, t.ids))
            r["codes_differ"] = int((ids_o != t.ids).sum())
        if lat_o is not None:
            r["latents_max_abs_diff"] = float((lat_o - t.latents.float()).abs().max())
        r["recon_max_abs_diff"] = float((rec_o - rec_v).abs().max())
        r["seconds"] = round(time.time() - t0, 1)
        results["names"][name] = r
        print(name, r, flush=True)
    results["note"] = (
        "random official init (seed 0) at each release's full config, saved in its release layout and loaded "
        "with weights=; VAE latents compared as vistok's float16 posterior mean"
    )
    return results


def speed_models(checkout: Path) -> list[tuple[str, Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]]:
    """One name per distinct architecture (legacy, single-stage VQ, VAE, MaskGIT-VQGAN), same weights.

    Memory: each entry holds the official and the vistok model (titok-bl-64-* ~1.6 GB each pair).
    """
    import vistok

    m = _official(checkout)
    out = []
    for name in ("titok-s-128", "titok-bl-64-vq", "titok-bl-64-vae"):
        off = _build_full(m, checkout, name)
        tok = vistok.create(name)
        tok.load_state_dict(off.state_dict())

        def off_fn(x: Tensor, off: Any = off) -> Tensor:
            with torch.no_grad():
                if off.quantize_mode == "vq":
                    return off.decode_tokens(off.encode(x)[1]["min_encoding_indices"]).clamp(0, 1)
                return off.decode_tokens(off.encode(x)[1].mean).clamp(0, 1)

        out.append((name, off_fn, tok.reconstruct))
    import modeling.modules.maskgit_vqgan as mv
    from omegaconf import OmegaConf

    with tempfile.TemporaryDirectory() as tmp:
        holder = torch.nn.Module()
        c = OmegaConf.create(PIXEL_FULL)
        holder.encoder, holder.decoder = mv.Encoder(c), mv.Decoder(c)
        holder.quantize = mv.VectorQuantizer(1024, 256, 0.25)
        path = Path(tmp) / "maskgit.bin"
        torch.save(holder.state_dict(), path)
        off = m.PretrainedTokenizer(str(path))
        tok = vistok.create("maskgit-vqgan", weights=str(path))
    out.append(
        (
            "maskgit-vqgan",
            lambda x, off=off: off.decode(off.encode(x).view(x.shape[0], 16, 16)),
            tok.reconstruct,
        )
    )
    return out


if __name__ == "__main__":  # pragma: no cover - run through scripts/make_official_fixtures.py
    raise SystemExit("run: python scripts/make_official_fixtures.py titok --checkout PATH --commit SHA")
