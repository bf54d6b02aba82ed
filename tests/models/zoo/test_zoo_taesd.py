"""TAESD family (taesd, taesdxl, taesd3, taef1, taef2, taesana): parity with madebyollin/taesd.

Fixtures (``tests/fixtures/official/taesd/``, made by ``scripts/official_fixtures/taesd.py``):
the official ``Encoder``/``Decoder`` (plain and FLUX.2 variant) and ``F32Encoder``/
``F32Decoder`` built by the official constructors with their widths narrowed 16x, saved as
the release is (``NAME_encoder.pth`` + ``NAME_decoder.pth``, float16 state dicts), and a
diffusers ``AutoencoderTiny`` folder. With ``VISTOK_TAESD_WEIGHTS`` set to an extracted
checkout of madebyollin/taesd (its ``taesd.py`` and the real ``taef2_*.pth`` /
``taesana_encoder.pth``), the real-weights tests run too; without it they are skipped (the
weights are not part of vistok).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo._cli import convert
from vistok.registry import SpecError
from vistok.tokens import Tokens

NAMES = ["taesd", "taesdxl", "taesd3", "taef1", "taef2", "taesana"]
OFFICIAL_CASES = ["taesd-w4", "taef2-w4", "taesana-w4"]
ALL_CASES = [*OFFICIAL_CASES, "diffusers-taesd-w4"]


def _load(case: str) -> tuple[vistok.Tokenizer, dict[str, torch.Tensor], dict, Path]:
    d = fixture_case("taesd", case)
    meta = case_meta(d)
    tok = vistok.create(meta["spec"], weights=str(d / meta["weights"]))
    return tok, load_io(d), meta, d


@pytest.mark.parametrize("case", ALL_CASES)
def test_latents_and_reconstructions_equal_the_official_code(case: str) -> None:
    tok, io, meta, _ = _load(case)
    x = io["images"]
    with torch.no_grad():
        torch.testing.assert_close(tok.encode_grid(x), io["latents"], atol=meta["atol_latents"], rtol=0)
    t = tok.encode(x)
    assert t.latents.dtype == torch.float16
    # float16 storage: within half an ulp of the official float32 latents (plus their 1e-5)
    torch.testing.assert_close(t.latents.float(), io["latents"], atol=1e-5, rtol=2**-11)
    # the decoder on exactly the latents the official decoder saw (float16-rounded)
    official = Tokens(bits=t.bits, latents=io["latents"].half())
    with torch.no_grad():
        torch.testing.assert_close(
            tok.decode_grid(official.latents.float()), io["decoded"], atol=meta["atol_recon"], rtol=0
        )
    torch.testing.assert_close(
        tok.decode(official), io["decoded"].clamp(0, 1), atol=meta["atol_recon"], rtol=0
    )


@pytest.mark.parametrize("case", OFFICIAL_CASES)
def test_contract_shapes_ranges_and_bits(case: str) -> None:
    tok, io, _, _ = _load(case)
    x = io["images"]
    t = tok.encode(x)
    b, c, h, w = t.latents.shape
    assert (b, c) == (x.shape[0], tok.latent_channels)
    assert (h * tok.stride, w * tok.stride) == tuple(x.shape[-2:])
    assert t.bits.dtype == torch.float64 and torch.all(t.bits == 16.0 * c * h * w)
    y = tok.decode(t)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    assert tok.kind == "continuous" and not tok.variable_length and tok.vocab_size is None
    with pytest.raises(ValueError, match="multiples of"):
        tok.encode(x[..., :, : x.shape[-1] - 4])
    with pytest.raises(ValueError, match="fixed-length"):
        tok.encode(x, num_tokens=1)


def test_diffusers_layout_and_official_pair_give_the_same_model(tmp_path: Path) -> None:
    """The official pair renamed by the declared key map into diffusers keys loads to the same model."""
    tok, io, meta, _ = _load("taesd-w4")
    state = {}
    for k, v in tok.state_dict().items():
        part, idx, rest = k.split(".", 2)
        state[f"{part}.layers.{int(idx) - (part == 'decoder')}.{rest}"] = v.contiguous()
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    for weights in (tmp_path, tmp_path / "diffusion_pytorch_model.safetensors"):
        other = vistok.create(meta["spec"], weights=str(weights))
        assert torch.equal(other.encode(io["images"]).latents, tok.encode(io["images"]).latents)
    (tmp_path / "config.json").write_text(
        json.dumps({"_class_name": "AutoencoderTiny", "latent_channels": 16})
    )
    with pytest.raises(SpecError, match=r"config\.json: AutoencoderTiny latent_channels=16"):
        vistok.create(meta["spec"], weights=str(tmp_path))


def test_a_folder_of_several_releases_picks_the_named_pair(tmp_path: Path) -> None:
    for case in OFFICIAL_CASES:
        for f in fixture_case("taesd", case).glob("*.pth"):
            shutil.copy(f, tmp_path / f.name)
    for case in OFFICIAL_CASES:
        tok, io, meta, _ = _load(case)
        other = vistok.create(meta["spec"], weights=str(tmp_path))
        assert torch.equal(other.encode(io["images"]).latents, tok.encode(io["images"]).latents)


def test_wrong_files_are_one_line_errors(tmp_path: Path) -> None:
    _, _, meta, d = _load("taesd-w4")
    spec = meta["spec"]

    def fails(match: str, **kw: str) -> None:
        with pytest.raises(SpecError, match=match) as e:
            vistok.create(kw.pop("spec", spec), **kw)
        assert "\n" not in str(e.value)

    fails(r"holds neither taesd_encoder\.pth", weights=str(tmp_path))
    fails("a TAESD release is a pair", weights=str(d / "taesd_encoder.pth"))
    # another family's checkpoint, and another architecture of this family
    fails(
        "not a diffusers AutoencoderTiny file",
        weights=str(FIXTURES / "taesd" / "taesd-w4" / "io.safetensors"),
    )
    gn = fixture_case("taesd", "taef2-w4")
    fails(
        r"not a TAESD checkpoint of this configuration",
        spec="taesd:channels=4,release=taef2",
        weights=str(gn),
    )
    fails(r"has shape", spec="taesd:channels=8", weights=str(d))
    # truncated, missing key, extra key
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.copy(d / "taesd_decoder.pth", bad / "taesd_decoder.pth")
    (bad / "taesd_encoder.pth").write_bytes((d / "taesd_encoder.pth").read_bytes()[:2000])
    fails(r"taesd_encoder\.pth: not a readable torch checkpoint", weights=str(bad))
    enc = torch.load(d / "taesd_encoder.pth", weights_only=True)
    missing = dict(enc)
    missing.pop("14.bias")
    torch.save(missing, bad / "taesd_encoder.pth")
    fails(r"missing 1 \(encoder\.14\.bias\)", weights=str(bad))
    torch.save({**enc, "15.weight": enc["14.weight"]}, bad / "taesd_encoder.pth")
    fails(r"unexpected 1 \(encoder\.15\.weight\)", weights=str(bad))
    fails("released only in the git repository", spec="taef2:pretrained=true")
    fails("released only in the git repository", spec="taesana:pretrained=true")


def test_convert_round_trip(tmp_path: Path) -> None:
    tok, io, meta, d = _load("taef2-w4")
    out = convert(meta["spec"], d, tmp_path / "converted")
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert "weights" not in cfg and "release" not in cfg
    back = vistok.load(out)
    t = back.encode(io["images"])
    assert torch.equal(t.latents, tok.encode(io["images"]).latents)
    assert torch.equal(back.decode(t), tok.decode(t))


@pytest.mark.parametrize("name", NAMES)
def test_published_names_match_the_official_parameter_counts(name: str) -> None:
    full = FIXTURES / "taesd" / "full_check.json"
    if not full.is_file():
        pytest.fail(f"{full} is missing: run scripts/make_official_fixtures.py taesd --full")
    row = json.loads(full.read_text())["random_weights"][name]
    with torch.device("meta"):
        tok = vistok.create(name)
    assert sum(p.numel() for p in tok.parameters()) == row["params_official"] == row["params_vistok"]
    assert row["max_abs_latents"] < 1e-4 and row["max_abs_recon"] < 1e-4


# ---- real weights (opt-in: VISTOK_TAESD_WEIGHTS=/tmp/official/taesd) ------------------------
REAL = os.environ.get("VISTOK_TAESD_WEIGHTS")
real_weights = pytest.mark.skipif(
    not REAL, reason="set VISTOK_TAESD_WEIGHTS to an extracted madebyollin/taesd"
)


def _official_module():  # the official taesd module
    import importlib.util

    assert REAL is not None
    spec = importlib.util.spec_from_file_location("taesd_official", Path(REAL) / "taesd.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _photos() -> torch.Tensor:
    from skimage import data

    out = []
    for img in (data.astronaut(), data.chelsea()[:288, :288]):
        x = torch.from_numpy(img.copy()).permute(2, 0, 1)[None].float() / 255.0
        out.append(torch.nn.functional.interpolate(x, size=(128, 128), mode="area"))
    return torch.cat(out).clamp(0, 1)


@real_weights
def test_real_taef2_weights_equal_the_official_code() -> None:
    root = Path(REAL or "")
    if not (root / "taef2_decoder.pth").is_file():
        pytest.fail(f"{root} holds no taef2_encoder.pth + taef2_decoder.pth")
    ref = _official_module().TAESD(root / "taef2_encoder.pth", root / "taef2_decoder.pth").eval()
    tok = vistok.create("taef2", weights=str(root))
    x = _photos()
    with torch.no_grad():
        torch.testing.assert_close(tok.encode_grid(x), ref.encoder(x), atol=1e-4, rtol=0)
        t = tok.encode(x)
        y = tok.decode(t)
        torch.testing.assert_close(y, ref.decoder(t.latents.float()).clamp(0, 1), atol=1e-4, rtol=0)
    assert float(((y - x) ** 2).mean()) < 0.01  # trained weights reconstruct (above 20 dB)


@real_weights
def test_real_taesana_encoder_equals_the_official_code(tmp_path: Path) -> None:
    root = Path(REAL or "")
    if not (root / "taesana_encoder.pth").is_file():
        pytest.fail(f"{root} holds no taesana_encoder.pth")
    mod = _official_module()
    ref = mod.TAESD(root / "taesana_encoder.pth", None).eval()
    shutil.copy(root / "taesana_encoder.pth", tmp_path / "taesana_encoder.pth")
    if (root / "taesana_decoder.pth").is_file():
        ref.decoder.load_state_dict(torch.load(root / "taesana_decoder.pth", weights_only=True))
    torch.save(ref.decoder.state_dict(), tmp_path / "taesana_decoder.pth")  # random where not released here
    tok = vistok.create("taesana", weights=str(tmp_path))
    x = _photos()
    with torch.no_grad():
        torch.testing.assert_close(tok.encode_grid(x), ref.encoder(x), atol=1e-4, rtol=0)
        t = tok.encode(x)
        torch.testing.assert_close(
            tok.decode(t), ref.decoder(t.latents.float()).clamp(0, 1), atol=1e-4, rtol=0
        )
