"""MAR's KL-16 VAE (``mar-kl16``): parity with the official ``AutoencoderKL`` of LTH14/mar.

The fixture (``tests/fixtures/official/mar/``, made by ``scripts/official_fixtures/mar.py``
from the official code) is ``{"model": state_dict}`` saved with ``torch.save``, as released.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo._cli import convert
from vistok.registry import SpecError

FAMILY = "mar"


def _case() -> tuple[dict, dict[str, torch.Tensor], Path]:
    """(case.json, io.safetensors, checkpoint path) of the fixture; a missing fixture fails."""
    d = fixture_case(FAMILY, "kl_tiny")
    meta = case_meta(d)
    return meta, load_io(d), d / meta["weights"]


@pytest.mark.parametrize("suffix", ["", "_wide"])
def test_posterior_and_reconstruction_equal_the_official_code(suffix: str) -> None:
    meta, io, ckpt = _case()
    tok = vistok.create(meta["spec"], weights=str(ckpt))
    x = io["images" + suffix]
    mean, logvar = tok.posterior(x)
    torch.testing.assert_close(mean, io["mean" + suffix], atol=meta["atol"], rtol=0)
    torch.testing.assert_close(logvar, io["logvar" + suffix], atol=meta["atol"], rtol=0)
    t = tok.encode(x)
    assert t.latents.dtype == torch.float16 and t.latents.shape == io["mean" + suffix].shape
    torch.testing.assert_close(t.latents.float(), io["mean" + suffix].half().float(), atol=1e-3, rtol=0)
    assert float(t.bits[0]) == 16.0 * t.latents[0].numel()
    # The decoder is compared on the official code's own float16 latents: our mean equals the
    # official one to ``atol``, but a value that close to a float16 rounding boundary may round
    # to the neighbouring half (one half-ulp, ~1e-3 relative), which the decoder carries to
    # ~3e-5 in pixels on some CPUs — a property of float16, not a difference of the decoders.
    official = dataclasses.replace(t, latents=io["mean" + suffix].half())
    ref = ((io["recon_of_half" + suffix] + 1) * 0.5).clamp(0, 1)
    torch.testing.assert_close(tok.decode(official), ref, atol=meta["atol"], rtol=0)
    # and our own latents decode to within what one half-ulp of a latent moves the pixels
    torch.testing.assert_close(tok.decode(t), ref, atol=20 * meta["atol"], rtol=0)


def test_sample_is_the_official_seeded_draw() -> None:
    meta, io, ckpt = _case()
    tok = vistok.create(meta["spec"], weights=str(ckpt), sample=True, seed=meta["sample_seed"])
    t = tok.encode(io["images"])
    torch.testing.assert_close(t.latents.float(), io["sample"].half().float(), atol=1e-3, rtol=0)
    assert not torch.allclose(t.latents.float(), io["mean"].half().float(), atol=1e-2)


def test_wrong_files_are_one_line_errors(tmp_path: Path) -> None:
    meta, _, ckpt = _case()
    taming = FIXTURES / "taming" / "f4_tiny" / "last.ckpt"  # a Lightning file: no "model" key
    with pytest.raises(SpecError, match=r"last\.ckpt: no state dict under 'model'"):
        vistok.create(meta["spec"], weights=str(taming))
    with pytest.raises(SpecError, match=r"kl16\.ckpt: tensor .* has shape"):
        vistok.create(meta["spec"].replace("embed_dim=4", "embed_dim=8"), weights=str(ckpt))
    from vistok.utils.checkpoints import read_state_dict

    sd = read_state_dict(ckpt, keys=("model",))
    sd["decoder.extra"] = torch.zeros(2)
    torch.save({"model": sd}, tmp_path / "extra.ckpt")
    with pytest.raises(SpecError, match=r"extra\.ckpt: .*unexpected 1 \(decoder\.extra\)") as e:
        vistok.create(meta["spec"], weights=str(tmp_path / "extra.ckpt"))
    assert "\n" not in str(e.value)


def test_convert_round_trip_and_flat_safetensors(tmp_path: Path) -> None:
    meta, io, ckpt = _case()
    out = convert(meta["spec"], ckpt, tmp_path / "conv")
    back = vistok.load(out)
    ref = vistok.create(meta["spec"], weights=str(ckpt))
    assert torch.equal(back.encode(io["images"]).latents, ref.encode(io["images"]).latents)
    # the Hub's kl16.safetensors is the same flat state dict
    from safetensors.torch import save_file

    from vistok.utils.checkpoints import read_state_dict

    save_file(read_state_dict(ckpt, keys=("model",)), str(tmp_path / "kl16.safetensors"))
    flat = vistok.create(meta["spec"], weights=str(tmp_path / "kl16.safetensors"))
    assert torch.equal(flat.encode(io["images"]).latents, ref.encode(io["images"]).latents)


def test_published_name_builds_at_the_official_size() -> None:
    with torch.device("meta"):
        tok = vistok.create("mar-kl16")
    full = FIXTURES / "mar" / "full_check.json"
    if not full.is_file():
        pytest.fail(f"{full} is missing: run scripts/make_official_fixtures.py mar --full")
    row = json.loads(full.read_text())["models"]["mar-kl16"]
    assert sum(p.numel() for p in tok.parameters()) == row["official_parameters"]
    assert tok.stride == 16 and tok.kind == "continuous"
