"""taming-transformers VQGAN (``taming-f16-1024``, ``taming-f16-16384``): parity with the official ``VQModel``.

The fixture (``tests/fixtures/official/taming/``, made by ``scripts/official_fixtures/taming.py``
from the official code) is a Lightning ``last.ckpt`` with ``loss.*`` keys, as released.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo._cli import convert
from vistok.registry import SpecError
from vistok.utils.checkpoints import CheckpointError

FAMILY = "taming"


def _case() -> tuple[dict, dict[str, torch.Tensor], Path]:
    """(case.json, io.safetensors, checkpoint path) of the fixture; a missing fixture fails."""
    d = fixture_case(FAMILY, "f4_tiny")
    meta = case_meta(d)
    return meta, load_io(d), d / meta["checkpoint"]


def test_codes_latents_and_reconstructions_equal_the_official_code() -> None:
    meta, io, ckpt = _case()
    tok = vistok.create(meta["spec"], weights=str(ckpt))
    assert tok.ignored and all(k.startswith("loss.") for k in tok.ignored)  # the GAN/LPIPS keys
    for suffix in ("", "_wide"):  # a square batch and a 32x48 image (any multiple of the stride)
        x = io["images" + suffix]
        t = tok.encode(x)
        assert torch.equal(t.ids, io["ids" + suffix])
        assert io["ids" + suffix].unique().numel() > 4
        torch.testing.assert_close(tok.latent(x), io["latent" + suffix], atol=meta["atol_latent"], rtol=0)
        ref = ((io["recon" + suffix] + 1) * 0.5).clamp(0, 1)
        torch.testing.assert_close(tok.decode(t), ref, atol=meta["atol_recon"], rtol=0)
        bits = t.ids[0].numel() * 6.0  # 64 codes
        assert torch.equal(t.bits, torch.full((x.shape[0],), bits, dtype=torch.float64))


def test_neighbours_are_the_nearest_codes() -> None:
    meta, io, ckpt = _case()
    tok = vistok.create(meta["spec"], weights=str(ckpt))
    ids = io["ids"][:, :2, :2]
    nb = tok.neighbours(ids, 3)
    w = tok.embed(torch.arange(64))
    d = torch.cdist(w, w).fill_diagonal_(float("inf"))
    assert torch.equal(nb, d.topk(3, largest=False).indices[ids])


def test_wrong_files_are_one_line_errors(tmp_path: Path) -> None:
    meta, _, ckpt = _case()
    other = FIXTURES / "llamagen" / "tiny" / "vq_tiny.pt"
    with pytest.raises(SpecError, match=r"vq_tiny\.pt: no state dict under 'state_dict'"):
        vistok.create(meta["spec"], weights=str(other))
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes(ckpt.read_bytes()[:5000])
    with pytest.raises(SpecError, match=r"cut\.ckpt: not a readable torch checkpoint"):
        vistok.create(meta["spec"], weights=str(cut))
    with pytest.raises(SpecError, match=r"last\.ckpt: tensor .* has shape"):
        vistok.create(meta["spec"].replace("n_embed=64", "n_embed=32"), weights=str(ckpt))
    from vistok.utils.checkpoints import read_state_dict

    sd = read_state_dict(ckpt)
    sd["encoder.extra.weight"] = torch.zeros(1)
    torch.save({"state_dict": sd}, tmp_path / "extra.ckpt")
    with pytest.raises(SpecError, match=r"extra\.ckpt: .*unexpected 1 \(encoder\.extra\.weight\)"):
        vistok.create(meta["spec"], weights=str(tmp_path / "extra.ckpt"))
    del sd["encoder.extra.weight"], sd["quantize.embedding.weight"]
    torch.save({"state_dict": sd}, tmp_path / "missing.ckpt")
    with pytest.raises(SpecError, match=r"missing\.ckpt: .*missing 1 \(quantize\.embedding\.weight\)"):
        vistok.create(meta["spec"], weights=str(tmp_path / "missing.ckpt"))
    assert CheckpointError  # the errors above are CheckpointErrors, wrapped by the registry


def test_convert_round_trip(tmp_path: Path) -> None:
    meta, io, ckpt = _case()
    out = convert(meta["spec"], ckpt, tmp_path / "conv")
    back = vistok.load(out)
    assert torch.equal(back.encode(io["images"]).ids, io["ids"])
    assert "weights" not in json.loads((out / "config.json").read_text())["config"]


@pytest.mark.parametrize("name", ["taming-f16-1024", "taming-f16-16384"])
def test_published_names_build_at_the_official_size(name: str) -> None:
    with torch.device("meta"):
        tok = vistok.create(name)
    params = sum(p.numel() for p in tok.parameters())
    full = FIXTURES / "taming" / "full_check.json"
    if not full.is_file():
        pytest.fail(f"{full} is missing: run scripts/make_official_fixtures.py taming --full")
    assert params == json.loads(full.read_text())["models"][name]["official_parameters"]
    assert tok.stride == 16 and tok.vocab_size in (1024, 16384)
