"""TiTok (VQ, VAE, legacy two-stage) and MaskGIT-VQGAN: parity with the official code (fixtures it produced)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo._cli import convert
from vistok.registry import TOKENIZERS, SpecError, parse_spec
from vistok.tokens import Tokens
from vistok.utils.checkpoints import CheckpointError, read_safetensors

FAMILY = "titok"
VQ_CASES = ("bl_vq", "legacy", "maskgit_vqgan")
# name -> (hub, kind, tokens, vocab or channels)
NAMES = {
    "titok-l-32": ("yucornetto/tokenizer_titok_l32_imagenet", "discrete", 32, 4096),
    "titok-b-64": ("yucornetto/tokenizer_titok_b64_imagenet", "discrete", 64, 4096),
    "titok-s-128": ("yucornetto/tokenizer_titok_s128_imagenet", "discrete", 128, 4096),
    "titok-bl-64-vq": ("yucornetto/tokenizer_titok_bl64_vq8k_imagenet", "discrete", 64, 8192),
    "titok-bl-128-vq": ("yucornetto/tokenizer_titok_bl128_vq8k_imagenet", "discrete", 128, 8192),
    "titok-sl-256-vq": ("yucornetto/tokenizer_titok_sl256_vq8k_imagenet", "discrete", 256, 8192),
    "titok-bl-64-vae": ("yucornetto/tokenizer_titok_bl64_vae_c16_imagenet", "continuous", 64, 16),
    "titok-bl-128-vae": ("yucornetto/tokenizer_titok_bl128_vae_c16_imagenet", "continuous", 128, 16),
    "titok-ll-32-vae": ("yucornetto/tokenizer_titok_ll32_vae_c16_imagenet", "continuous", 32, 16),
    "maskgit-vqgan": ("fun-research/TiTok/maskgit-vqgan-imagenet-f16-256.bin", "discrete", 256, 1024),
}


def _create(spec: str, **kw: object) -> vistok.Tokenizer:
    """``vistok.create`` with the spec's keys as keywords (the fixture specs are long)."""
    family, raw = parse_spec(spec)
    return vistok.create(family, **raw, **kw)


def _load(case: str, **overrides: object) -> tuple[vistok.Tokenizer, dict, dict, Path]:
    d = fixture_case(FAMILY, case)
    meta = case_meta(d)
    path = d / meta["weights"]
    io = load_io(d)
    io["images"] = io["images"].float() / 255.0
    return _create(meta["spec"], weights=str(path), **overrides), meta, io, path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- parity ---------------------------------------------------------------------------------
@pytest.mark.parametrize("case", VQ_CASES)
def test_parity_codes_and_reconstruction(case: str) -> None:
    tok, meta, io, _ = _load(case)
    x = io["images"]
    t = tok.encode(x)
    assert meta["min_code_gap"] > 1e-5  # codes are well separated: exact equality is meaningful
    assert torch.equal(t.ids, io["ids"])
    assert t.ids.unique().numel() > 3  # the fixture's codes vary
    latents = tok.encoder(x) if case == "maskgit_vqgan" else tok._latents(x)
    torch.testing.assert_close(latents, io["latents"], atol=1e-5, rtol=0)
    # decoding the official codes gives the official reconstruction (clamped to [0, 1] here)
    y = tok.decode(Tokens(bits=t.bits, ids=io["ids"]))
    torch.testing.assert_close(y, io["recon"].clamp(0, 1), atol=meta["atol"], rtol=0)


def test_parity_vae_posterior_mean_and_decode() -> None:
    tok, meta, io, _ = _load("bl_vae")
    x = io["images"]
    mean, std = tok.posterior(x)
    torch.testing.assert_close(mean, io["mean"], atol=1e-5, rtol=0)
    torch.testing.assert_close(std, io["std"], atol=1e-5, rtol=0)
    t = tok.encode(x)  # float16 posterior mean by default
    assert t.latents.dtype == torch.float16
    torch.testing.assert_close(t.latents.float(), io["mean"], atol=meta["latent_atol"], rtol=0)
    y = tok.decode(Tokens(bits=t.bits, latents=io["mean"]))
    torch.testing.assert_close(y, io["recon"].clamp(0, 1), atol=meta["atol"], rtol=0)


def test_vae_sampling_is_seeded() -> None:
    _, meta, io, path = _load("bl_vae")
    x = io["images"]
    a = _create(meta["spec"], weights=str(path), sample=True, seed=3).encode(x).latents
    b = _create(meta["spec"], weights=str(path), sample=True, seed=3).encode(x).latents
    c = _create(meta["spec"], weights=str(path), sample=True, seed=4).encode(x).latents
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert not torch.equal(a.float(), io["mean"].half().float())


# ---- files ----------------------------------------------------------------------------------
def _expect_bad(spec: str, path: Path, match: str) -> None:
    with pytest.raises((CheckpointError, SpecError)) as e:
        _create(spec, weights=str(path))
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg, msg
    assert match in msg, msg


def test_wrong_files(tmp_path: Path) -> None:
    _, vq, _, vq_dir = _load("bl_vq")
    _, vae, _, vae_dir = _load("bl_vae")
    _, leg, _, leg_path = _load("legacy")
    _, mg, _, mg_path = _load("maskgit_vqgan")
    # the other bottleneck's folder: config.json says so
    _expect_bad(vq["spec"], vae_dir, "quantize_mode is 'vae'")
    _expect_bad(vae["spec"], vq_dir, "quantize_mode is 'vq'")
    # the legacy state dict is not a single-stage TiTok, MaskGIT-VQGAN is not TiTok
    _expect_bad(vq["spec"], leg_path, "not a TiTok checkpoint")
    _expect_bad(leg["spec"], mg_path, "not a TiTok checkpoint")
    _expect_bad(mg["spec"], leg_path, "not a MaskGITVQGAN checkpoint")
    # another family's checkpoint
    others = sorted(p for p in FIXTURES.glob("*/*/*") if p.suffix in {".pt", ".pth", ".ckpt", ".bin"})
    others = [p for p in others if p.parts[-3] not in (FAMILY, "one_d_piece")]
    foreign = others[0] if others else tmp_path / "foreign.bin"
    if not others:
        torch.save({"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3)}, foreign)
    _expect_bad(leg["spec"], foreign, "")
    # truncated files
    cut = tmp_path / "cut.bin"
    cut.write_bytes(leg_path.read_bytes()[:4000])
    _expect_bad(leg["spec"], cut, "not a readable torch checkpoint")
    cut_dir = tmp_path / "cut_folder"
    shutil.copytree(vq_dir, cut_dir)
    (cut_dir / "model.safetensors").write_bytes((vq_dir / "model.safetensors").read_bytes()[:3000])
    _expect_bad(vq["spec"], cut_dir, "unreadable safetensors")
    # a missing and an extra tensor
    from vistok.utils.checkpoints import read_pickle

    sd, _ = read_pickle(leg_path)
    missing = tmp_path / "missing.bin"
    torch.save({k: v for k, v in sd.items() if k != "pixel_decoder.conv_out.bias"}, missing)
    _expect_bad(leg["spec"], missing, "missing 1 (pixel_decoder.conv_out.bias)")
    extra = tmp_path / "extra.bin"
    torch.save({**sd, "decoder.extra": torch.zeros(2)}, extra)
    _expect_bad(leg["spec"], extra, "unexpected 1 (decoder.extra)")
    # another size: the shape error names the tensor
    _expect_bad(
        leg["spec"].replace("codebook_size=32", "codebook_size=16"), leg_path, "quantize.embedding.weight"
    )


def test_config_json_mismatch_names_the_field(tmp_path: Path) -> None:
    _, vq, io, vq_dir = _load("bl_vq")
    for key, value, match in (
        ("use_l2_norm", True, "use_l2_norm is True"),
        ("is_legacy", True, "is_legacy is True"),
        ("num_latent_tokens", 16, "num_latent_tokens is 16"),
        ("vit_enc_model_size", "base", "vit_enc_model_size is (768, 12, 12)"),
    ):
        d = tmp_path / key
        shutil.copytree(vq_dir, d)
        cfg = json.loads((d / "config.json").read_text())
        cfg["model"]["vq_model"][key] = value
        (d / "config.json").write_text(json.dumps(cfg))
        _expect_bad(vq["spec"], d, match)
    # the bare model.safetensors (no config.json) and a pytorch_model.bin folder load too
    sd = read_safetensors(vq_dir / "model.safetensors")
    d = tmp_path / "bin_folder"
    d.mkdir()
    torch.save(sd, d / "pytorch_model.bin")
    for src in (vq_dir / "model.safetensors", d):
        tok = _create(vq["spec"], weights=str(src))
        assert torch.equal(tok.encode(io["images"]).ids, io["ids"])


@pytest.mark.parametrize("case", ("bl_vq", "bl_vae", "legacy", "maskgit_vqgan"))
def test_convert_then_load(case: str, tmp_path: Path) -> None:
    tok, meta, io, path = _load(case)
    name, _raw = parse_spec(meta["spec"])
    spec = meta["spec"] if len(meta["spec"]) < 200 else name
    if spec == name:  # long specs: convert through the registry name with keywords
        out = tok.save_pretrained(tmp_path / "converted")
    else:
        out = convert(spec, path, tmp_path / "converted")
    again = vistok.load(out)
    assert type(again) is type(tok)
    x = io["images"]
    a, b = tok.encode(x), again.encode(x)
    if a.ids is not None:
        assert torch.equal(a.ids, b.ids)
    else:
        assert torch.equal(a.latents, b.latents)
    assert torch.equal(tok.decode(a), again.decode(b))
    cfg = json.loads((out / "config.json").read_text())
    assert "weights" not in cfg["config"] and "pretrained" not in cfg["config"]


# ---- registered names -----------------------------------------------------------------------
def _full_check() -> dict:
    path = FIXTURES / FAMILY / "full_check.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/make_official_fixtures.py {FAMILY} ... --full")
    return json.loads(path.read_text())["names"]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_build_with_official_parameter_counts(name: str) -> None:
    hub, kind, n, width = NAMES[name]
    with torch.device("meta"):
        tok = vistok.create(name)
    full = _full_check()[name]
    assert sum(p.numel() for p in tok.parameters()) == full["params_official"] == full["params_vistok"]
    assert full.get("codes_equal", True) and full["recon_max_abs_diff"] <= 1e-3
    assert full.get("latents_max_abs_diff", 0.0) <= 1e-2  # float16 posterior mean
    assert TOKENIZERS.get(name).defaults()["hub"] == hub
    assert tok.kind == kind and tok.max_tokens == n and not tok.variable_length
    if kind == "discrete":
        assert tok.vocab_size == width and tok.has_neighbours
    else:
        assert tok.vocab_size is None and tok.token_size == width
    if name == "maskgit-vqgan":
        assert tok.stride == 16 and tok.input_size is None
    else:
        assert tok.input_size == 256


# ---- the contract ---------------------------------------------------------------------------
def test_contract_shapes_ranges_bits() -> None:
    for case in ("bl_vq", "legacy"):
        tok, _, io, _ = _load(case)
        x = io["images"]
        t = tok.encode(x)
        assert t.ids.shape == (2, tok.max_tokens) and t.ids.dtype == torch.long
        assert torch.equal(
            t.bits, torch.full((2,), tok.max_tokens * math.log2(tok.vocab_size), dtype=torch.float64)
        )
        y = tok.decode(t)
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
        with pytest.raises(ValueError, match="fixed-length"):
            tok.encode(x, num_tokens=2)
        with pytest.raises(ValueError, match="decode needs ids"):
            tok.decode(Tokens(bits=t.bits, ids=t.ids[:, :2]))
        with pytest.raises(ValueError, match="accepts 16x16"):
            tok.encode(torch.rand(1, 3, 32, 32))
    tok, _, io, _ = _load("bl_vae")
    t = tok.encode(io["images"])
    assert t.latents.shape == (2, 8, 4) and t.ids is None
    assert torch.equal(t.bits, torch.full((2,), 8 * 4 * 16.0, dtype=torch.float64))
    tok, _, io, _ = _load("maskgit_vqgan")
    t = tok.encode(io["images"])
    assert t.ids.shape == (2, 8, 8) and torch.equal(t.bits, torch.full((2,), 64 * 6.0, dtype=torch.float64))
    assert tok.decode(tok.encode(torch.rand(1, 3, 8, 12))).shape == (
        1,
        3,
        8,
        12,
    )  # any multiple of the stride


@pytest.mark.parametrize("case", VQ_CASES)
def test_embed_and_neighbours(case: str) -> None:
    tok, _, io, _ = _load(case)
    ids = io["ids"]
    e = tok.embed(ids)
    assert e.shape == (*ids.shape, e.shape[-1])
    nb = tok.neighbours(ids, 3)
    assert nb.shape == (*ids.shape, 3) and not (nb == ids[..., None]).any()
    # the first neighbour is the nearest other code in the quantizer's distance
    cb = tok.quantize.codebook() if hasattr(tok.quantize, "codebook") else tok.quantize.embedding.weight
    i = int(ids.reshape(-1)[0])
    d = ((cb - cb[i]) ** 2).sum(1)
    d[i] = float("inf")
    assert int(nb.reshape(-1, 3)[0, 0]) == int(d.argmin())


def test_bad_architecture_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="dec_patch_size"):
        vistok.create("titok:dec_patch_size=8,image_size=256")
    with pytest.raises(SpecError, match="multiple of 32"):
        vistok.create("maskgit-vqgan:hidden_channels=48")


@pytest.mark.parametrize("l2", [False, True])
def test_training_quantizer_loss_is_the_official_formula(l2: bool) -> None:
    """Training VQ: ``mean((q - sg z)^2) + 0.25 mean((sg q - z)^2)`` on the (normalized) tokens, ids as
    ``indices``, straight-through gradient (identity to the normalized input); zero loss in eval."""
    from vistok.models.zoo.titok import VectorQuantizer

    torch.manual_seed(0)
    vq = VectorQuantizer(32, 6, use_l2_norm=l2)
    z = torch.randn(2, 5, 6, requires_grad=True)
    out = vq.train()(z)
    zn = torch.nn.functional.normalize(z, dim=-1) if l2 else z
    ids = vq.indices(z)
    assert torch.equal(out.indices, ids)
    q = vq.lookup(ids)
    expected = (1.0 + 0.25) * (q - zn).pow(2).mean()
    torch.testing.assert_close(out.loss, expected)
    torch.testing.assert_close(out.quantized, q)
    (g,) = torch.autograd.grad(out.quantized.sum(), z, retain_graph=True)
    (g_ref,) = torch.autograd.grad(zn.sum(), z)
    torch.testing.assert_close(g, g_ref)
    assert float(vq.eval()(z).loss) == 0.0
