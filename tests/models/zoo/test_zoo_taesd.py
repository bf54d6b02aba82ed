"""TAESD family (``taesd``, ``taesdxl``, ``taesd3``, ``taef1``, ``taef2``, ``taesana``): parity with madebyollin/taesd.

Fixtures (``tests/fixtures/official/taesd/``, made by ``scripts/official_fixtures/taesd.py``):
the official ``conv`` / ``Block`` / ``Clamp`` at width 8 in the official order, saved as the
release is (a folder with the float16 ``{release}_encoder.pth`` + ``{release}_decoder.pth``).
With ``VISTOK_TAESD_WEIGHTS`` pointing at a checkout of the official repository (it holds the
real ``taef2`` weights), the real-weights test runs too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vistok
from vistok.models.zoo._cli import convert
from vistok.registry import SpecError
from vistok.tokens import Tokens

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "official"
NAMES = ["taesd", "taesdxl", "taesd3", "taef1", "taef2", "taesana"]


def _case(case: str) -> tuple[dict, dict[str, torch.Tensor], Path]:
    d = FIXTURES / "taesd" / case
    if not (d / "case.json").is_file() or not (d / "io.safetensors").is_file():
        pytest.fail(f"parity fixture {d} is missing: run scripts/make_official_fixtures.py taesd")
    return json.loads((d / "case.json").read_text()), load_file(str(d / "io.safetensors")), d


@pytest.mark.parametrize("case", ["f8", "f8_gn", "f32"])
def test_latents_and_decodes_equal_the_official_code(case: str) -> None:
    meta, io, folder = _case(case)
    tok = vistok.create(meta["spec"], weights=str(folder))
    x = io["images"]
    with torch.no_grad():
        torch.testing.assert_close(tok._latents(x), io["latents"], atol=meta["atol"], rtol=0)
        # the decoder alone, on the official latents (outputs reach |3|: relative 1e-5)
        torch.testing.assert_close(tok._pixels(io["latents"]), io["recon"], atol=4e-5, rtol=0)
    t = tok.encode(x)
    assert t.latents.dtype == torch.float16
    assert float(t.bits[0]) == 16.0 * t.latents[0].numel()
    assert t.latents.shape[-1] * tok.stride == x.shape[-1]
    official_tokens = Tokens(bits=t.bits, latents=io["latents"].half())
    torch.testing.assert_close(
        tok.decode(official_tokens), io["recon_of_half"].clamp(0, 1), atol=4e-5, rtol=0
    )


def test_diffusers_layout_reads_through_the_declared_key_map(tmp_path: Path) -> None:
    """The same weights as diffusers ``AutoencoderTiny`` names them load to the same model."""
    meta, io, folder = _case("f8")
    tok = vistok.create(meta["spec"], weights=str(folder))
    from safetensors.torch import save_file

    state = {}
    for k, v in tok.state_dict().items():
        part, idx, rest = k.split(".", 2)
        i = int(idx) - (1 if part == "decoder" else 0)
        state[f"{part}.layers.{i}.{rest}"] = v.half().contiguous()
    save_file(state, str(tmp_path / "diffusion_pytorch_model.safetensors"))
    (tmp_path / "config.json").write_text(
        json.dumps({"_class_name": "AutoencoderTiny", "latent_channels": 4})
    )
    other = vistok.create(meta["spec"], weights=str(tmp_path))
    assert torch.equal(other.encode(io["images"]).latents, tok.encode(io["images"]).latents)
    (tmp_path / "config.json").write_text(
        json.dumps({"_class_name": "AutoencoderTiny", "latent_channels": 16})
    )
    with pytest.raises(SpecError, match=r"config\.json: AutoencoderTiny latent_channels=16"):
        vistok.create(meta["spec"], weights=str(tmp_path))


def test_wrong_files_are_one_line_errors(tmp_path: Path) -> None:
    meta, _, folder = _case("f8")
    with pytest.raises(SpecError, match=r"holds neither taesd_encoder\.pth"):
        vistok.create(meta["spec"], weights=str(tmp_path))
    with pytest.raises(SpecError, match="a TAESD release is a pair"):
        vistok.create(meta["spec"], weights=str(folder / "taesd_encoder.pth"))
    gn_meta, _, gn_folder = _case("f8_gn")  # a FLUX.2-variant pair read as plain TAESD
    with pytest.raises(SpecError, match=r"not a TAESD checkpoint of this configuration") as e:
        vistok.create(
            gn_meta["spec"].replace("midblock_gn=true", "midblock_gn=false"), weights=str(gn_folder)
        )
    assert "\n" not in str(e.value)
    with pytest.raises(SpecError, match="released only in the git repository"):
        vistok.create("taef2:pretrained=true")


def test_convert_round_trip(tmp_path: Path) -> None:
    meta, io, folder = _case("f8_gn")
    out = convert(meta["spec"], folder, tmp_path / "conv")
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert "weights" not in cfg and "release" not in cfg
    back = vistok.load(out)
    ref = vistok.create(meta["spec"], weights=str(folder))
    assert torch.equal(back.encode(io["images"]).latents, ref.encode(io["images"]).latents)


@pytest.mark.parametrize("name", NAMES)
def test_published_names_match_the_official_parameter_counts(name: str) -> None:
    full = FIXTURES / "taesd" / "full_check.json"
    if not full.is_file():
        pytest.fail(f"{full} is missing: run scripts/make_official_fixtures.py taesd --full")
    row = json.loads(full.read_text())["models"][name]
    with torch.device("meta"):
        tok = vistok.create(name)
    assert sum(p.numel() for p in tok.parameters()) == row["official_parameters"]
    assert row["small_case_order_matches_official"]
    assert row["random_max_abs_diff_latents"] < 1e-3


@pytest.mark.skipif(
    not os.environ.get("VISTOK_TAESD_WEIGHTS"), reason="set VISTOK_TAESD_WEIGHTS to a taesd checkout"
)
def test_real_taef2_weights_equal_the_official_code() -> None:
    import importlib.util

    root = Path(os.environ["VISTOK_TAESD_WEIGHTS"])
    spec = importlib.util.spec_from_file_location("taesd_official", root / "taesd.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ref = mod.TAESD(encoder_path=root / "taef2_encoder.pth", decoder_path=root / "taef2_decoder.pth").eval()
    tok = vistok.create("taef2", weights=str(root))
    _, io, _ = _case("f32")  # two real 64x64 photo crops
    x = io["images"]
    with torch.no_grad():
        torch.testing.assert_close(tok._latents(x), ref.encoder(x), atol=1e-4, rtol=0)
        y = tok.decode(tok.encode(x))
        torch.testing.assert_close(
            y, ref.decoder(ref.encoder(x).half().float()).clamp(0, 1), atol=2e-3, rtol=0
        )
    assert float(((y - x) ** 2).mean()) < 0.01  # trained weights reconstruct
