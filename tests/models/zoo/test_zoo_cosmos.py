"""NVIDIA Cosmos image tokenizers (cosmos-di8/16, cosmos-ci8/16): parity with the official code, loading, contract.

The fixtures ``tests/fixtures/official/cosmos/{di,ci}`` were made by the official
``cosmos_tokenizer`` networks (``scripts/official_fixtures/cosmos.py``) and traced to
TorchScript as the official export does: ``di`` is an ``encoder.jit`` + ``decoder.jit``
folder, ``ci`` an ``autoencoder.jit`` folder. ``full_check.json`` holds the
full-configuration comparison.
"""

from __future__ import annotations

import json
import math
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo.cosmos import CosmosCI, CosmosDI
from vistok.registry import SpecError
from vistok.tokens import Tokens
from vistok.utils.checkpoints import CheckpointError

FAMILY = "cosmos"


def _case(name: str) -> tuple[Path, dict, dict[str, torch.Tensor]]:
    d = fixture_case(FAMILY, name)
    return d, case_meta(d), load_io(d)


@pytest.fixture(scope="module")
def di() -> tuple[Path, dict, dict[str, torch.Tensor]]:
    return _case("di")


@pytest.fixture(scope="module")
def ci() -> tuple[Path, dict, dict[str, torch.Tensor]]:
    return _case("ci")


@pytest.fixture(scope="module")
def di_tok(di: tuple) -> CosmosDI:
    d, meta, _ = di
    return vistok.create(meta["spec"], weights=str(d / meta["weights"]))


@pytest.fixture(scope="module")
def ci_tok(ci: tuple) -> CosmosCI:
    d, meta, _ = ci
    return vistok.create(meta["spec"], weights=str(d / meta["weights"]))


def _to01(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


# ---- parity with the official code --------------------------------------------------------
def test_discrete_codes_and_reconstructions_match_official(di: tuple, di_tok: CosmosDI) -> None:
    _, meta, io = di
    tokens = di_tok.encode(io["images"])
    assert tokens.ids.dtype == torch.long and torch.equal(tokens.ids, io["codes"])
    assert meta["distinct_codes"] > 50  # the fixture's codes vary
    # the FSQ code vectors of the ids are exactly the official quantized codes
    assert torch.equal(di_tok.embed(tokens.ids).permute(0, 3, 1, 2), io["codes_vectors"])
    tol = meta["tolerance"]["reconstruction"]
    torch.testing.assert_close(di_tok.decode(tokens), _to01(io["recon"]), atol=tol, rtol=0)
    raw = di_tok.decoder(di_tok.post_quant_conv(io["codes_vectors"]))
    torch.testing.assert_close(raw, io["recon"], atol=tol, rtol=0)


def test_continuous_latents_and_reconstructions_match_official(ci: tuple, ci_tok: CosmosCI) -> None:
    _, meta, io = ci
    tol = meta["tolerance"]
    torch.testing.assert_close(ci_tok.latent(io["images"]), io["latents"], atol=tol["latents"], rtol=0)
    tokens = ci_tok.encode(io["images"])
    assert tokens.latents.dtype == torch.float16
    # float16 storage: within half an ulp of float16 of the official float32 latents
    torch.testing.assert_close(tokens.latents.float(), io["latents"], atol=1e-3, rtol=1e-3)
    official = Tokens(bits=tokens.bits, latents=io["latents"])
    torch.testing.assert_close(
        ci_tok.decode(official), _to01(io["recon"]), atol=tol["reconstruction"], rtol=0
    )
    # the whole round trip through float16 latents stays close to the official reconstruction
    torch.testing.assert_close(ci_tok.reconstruct(io["images"]), _to01(io["recon"]), atol=2e-2, rtol=0)


# ---- the release layout -------------------------------------------------------------------
def test_release_is_read_without_running_its_code(di: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    d, meta, io = di

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    tok = vistok.create(meta["spec"], weights=str(d))
    assert torch.equal(tok.encode(io["images"]).ids, io["codes"])
    # the traced modules' fixed buffers (Haar filters, FSQ tables) are checked and dropped
    assert tok.ignored == sorted(
        [f"{p}.{b}" for p in ("encoder.patcher", "decoder.unpatcher") for b in ("wavelets", "_arange")]
        + [
            f"{p}quantizer.{b}"
            for p in ("", "inv_quant.")
            for b in ("_levels", "_basis", "implicit_codebook")
        ]
    )


def test_autoencoder_jit_alone_or_as_a_file(ci: tuple, ci_tok: CosmosCI, tmp_path: Path) -> None:
    d, meta, io = ci
    assert sorted(p.name for p in d.glob("*.jit")) == ["autoencoder.jit"]
    by_file = vistok.create(meta["spec"], weights=str(d / "autoencoder.jit"))
    assert torch.equal(by_file.latent(io["images"]), ci_tok.latent(io["images"]))


def _one_line_naming(err: BaseException, path: Path) -> None:
    msg = str(err)
    assert "\n" not in msg and str(path) in msg, msg


def _rewrite_zip(src: Path, dst: Path, cut: int) -> None:
    data = src.read_bytes()
    dst.write_bytes(data[:cut])


@pytest.mark.parametrize(
    "damage",
    [
        "truncated",
        "encoder_only",
        "empty_folder",
        "extra_key",
        "other_family",
        "other_size",
        "other_kind",
        "levels",
    ],
)
def test_wrong_files_raise_one_line_errors(di: tuple, ci: tuple, tmp_path: Path, damage: str) -> None:
    d, meta, _ = di
    spec, path = meta["spec"], d
    if damage == "truncated":
        path = tmp_path / "cut"
        path.mkdir()
        shutil.copy(d / "encoder.jit", path / "encoder.jit")
        _rewrite_zip(d / "decoder.jit", path / "decoder.jit", (d / "decoder.jit").stat().st_size // 2)
    elif damage == "encoder_only":  # the decoder's tensors are missing
        path = d / "encoder.jit"
    elif damage == "empty_folder":
        path = tmp_path / "empty"
        path.mkdir()
    elif damage == "extra_key":  # a configuration without the decoder's level attention
        spec = spec.replace("attn_resolutions=[32]", "attn_resolutions=[]")
    elif damage == "other_family":  # a plain torch.save checkpoint of another family
        path = FIXTURES / "llamagen" / "tiny" / "vq_tiny.pt"
    elif damage == "other_size":
        spec = spec.replace("z_channels=16", "z_channels=32")
    elif damage == "other_kind":  # the continuous release read as a discrete tokenizer
        path = ci[0]
    else:  # the same widths, other FSQ levels
        spec = spec.replace("levels=[8,5,5,5]", "levels=[8,8,5,5]")
    with pytest.raises((CheckpointError, SpecError)) as err:
        vistok.create(spec, weights=str(path))
    _one_line_naming(err.value, path)


def test_a_discrete_release_is_refused_by_the_continuous_tokenizer(di: tuple, ci: tuple) -> None:
    d, _, _ = di
    spec = ci[1]["spec"]
    with pytest.raises((CheckpointError, SpecError), match="discrete Cosmos-DI") as err:
        vistok.create(spec, weights=str(d))
    _one_line_naming(err.value, d)


def test_the_archives_are_torchscript_zips(di: tuple) -> None:
    d, _, _ = di
    for name in ("encoder.jit", "decoder.jit"):
        with zipfile.ZipFile(d / name) as z:
            names = z.namelist()
        assert f"{name[:-4]}/data.pkl" in names and any("/code/__torch__/" in n for n in names)


def test_convert_then_load_gives_identical_outputs(di: tuple, ci: tuple, tmp_path: Path) -> None:
    from vistok.models.zoo._cli import convert

    for case in (di, ci):
        d, meta, io = case
        tok = vistok.create(meta["spec"], weights=str(d))
        out = convert(meta["spec"], d, tmp_path / d.name)
        back = vistok.load(out)
        assert "weights" not in json.loads((out / "config.json").read_text())["config"]
        a, b = tok.encode(io["images"]), back.encode(io["images"])
        if a.ids is not None:
            assert torch.equal(a.ids, b.ids)
        else:
            assert torch.equal(a.latents, b.latents)
        assert torch.equal(tok.decode(a), back.decode(b))


# ---- names and parameter counts -------------------------------------------------------------
@pytest.mark.parametrize(
    "name,stride,kind",
    [("cosmos-di8", 8, "DI"), ("cosmos-di16", 16, "DI"), ("cosmos-ci8", 8, "CI"), ("cosmos-ci16", 16, "CI")],
)
def test_registered_names_match_the_official_full_configuration(name: str, stride: int, kind: str) -> None:
    full = json.loads((FIXTURES / FAMILY / "full_check.json").read_text())["names"][name]
    with torch.device("meta"):
        tok = vistok.create(name)
    assert sum(p.numel() for p in tok.parameters()) == full["params_official"] == full["params_vistok"]
    assert (tok.stride, tok.max_tokens) == (stride, (256 // stride) ** 2)
    assert tok.config["hub"] == f"nvidia/Cosmos-0.1-Tokenizer-{kind}{stride}x{stride}/encoder.jit+decoder.jit"
    assert full["recon_raw_max_abs_diff"] < 1e-3
    if kind == "DI":
        assert tok.kind == "discrete" and tok.vocab_size == 64000 and tok.index_factors == [8, 8, 8, 5, 5, 5]
        assert full["codes_equal"]
    else:
        assert tok.kind == "continuous" and tok.latent_channels == 16
        assert full["latents_max_abs_diff"] < 1e-3


# ---- the contract ---------------------------------------------------------------------------
def test_discrete_contract(di: tuple, di_tok: CosmosDI) -> None:
    _, _, io = di
    images = io["images"]
    tokens = di_tok.encode(images)
    b, _, h, w = images.shape
    assert tokens.ids.shape == (b, h // 4, w // 4)
    assert int(tokens.ids.min()) >= 0 and int(tokens.ids.max()) < di_tok.vocab_size == 1000
    assert torch.equal(
        tokens.bits, torch.full((b,), (h // 4) * (w // 4) * math.log2(1000), dtype=torch.float64)
    )
    # index_factors: id = d0 + 8 d1 + 40 d2 + 200 d3
    digits = di_tok.embed(tokens.ids)
    half = [4, 2, 2, 2]
    rebuilt = sum(
        (digits[..., i] * half[i] + half[i]).round().long() * m for i, m in enumerate([1, 8, 40, 200])
    )
    assert di_tok.index_factors == [8, 5, 5, 5] and torch.equal(rebuilt, tokens.ids)
    out = di_tok.decode(tokens)
    assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert di_tok.decode(tokens[1]).shape == (1, 3, h, w)
    with pytest.raises(ValueError, match="multiples of 4"):
        di_tok.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match="fixed-length"):
        di_tok.encode(images, num_tokens=3)


def test_discrete_any_multiple_of_the_stride(di_tok: CosmosDI) -> None:
    tokens = di_tok.encode(torch.rand(1, 3, 24, 40))
    assert tokens.ids.shape == (1, 6, 10)
    assert di_tok.decode(tokens).shape == (1, 3, 24, 40)


def test_continuous_contract(ci: tuple, ci_tok: CosmosCI) -> None:
    _, meta, io = ci
    images = io["images"]
    tokens = ci_tok.encode(images)
    b, _, h, w = images.shape
    assert tokens.latents.shape == (b, 4, h // 2, w // 2) and tokens.ids is None
    assert torch.equal(tokens.bits, torch.full((b,), 16.0 * 4 * (h // 2) * (w // 2), dtype=torch.float64))
    out = ci_tok.decode(tokens)
    assert out.shape == images.shape and float(out.min()) >= 0 and float(out.max()) <= 1
    assert ci_tok.vocab_size is None and ci_tok.kind == "continuous"
    with pytest.raises(SpecError, match="fixed-length"):
        vistok.create(meta["spec"] + "@3")


def test_bad_configurations_are_spec_errors() -> None:
    with pytest.raises(SpecError, match="multiple of 32"):
        vistok.create("cosmos-ci:channels=48,channels_mult=[1],spatial_compression=4")
    with pytest.raises(SpecError, match="resamplings"):
        vistok.create("cosmos-ci:channels=32,channels_mult=[1],spatial_compression=16")
