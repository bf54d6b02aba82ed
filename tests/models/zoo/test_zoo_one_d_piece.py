"""One-D-Piece: parity with the official code at every prefix length the fixture recorded."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.registry import TOKENIZERS, SpecError, parse_spec
from vistok.tokens import Tokens
from vistok.utils.checkpoints import CheckpointError

FAMILY = "one_d_piece"
NAMES = {
    "one-d-piece-s-256": "turing-motors/One-D-Piece-S-256/pytorch_model.bin",
    "one-d-piece-b-256": "turing-motors/One-D-Piece-B-256/pytorch_model.bin",
    "one-d-piece-l-256": "turing-motors/One-D-Piece-L-256/pytorch_model.bin",
}


def _load(**overrides: object) -> tuple[vistok.Tokenizer, dict, dict, Path]:
    d = fixture_case(FAMILY, "prefix")
    meta = case_meta(d)
    path = d / meta["weights"]
    io = load_io(d)
    io["images"] = io["images"].float() / 255.0
    family, raw = parse_spec(meta["spec"])
    return vistok.create(family, **raw, weights=str(path), **overrides), meta, io, path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_parity_codes_and_every_prefix() -> None:
    tok, meta, io, _ = _load()
    x = io["images"]
    assert meta["min_code_gap"] > 1e-5
    full = tok.encode(x)
    assert torch.equal(full.ids, io["ids"]) and full.ids.unique().numel() > 3
    torch.testing.assert_close(tok._latents(x), io["latents"], atol=1e-5, rtol=0)
    for k in meta["prefixes"]:
        t = tok.encode(x, num_tokens=k)
        assert torch.equal(t.ids, io["ids"][:, :k]) and torch.equal(t.lengths, torch.full((2,), k))
        assert torch.equal(t.bits, torch.full((2,), k * math.log2(32), dtype=torch.float64))
        torch.testing.assert_close(tok.decode(t), io[f"recon_{k}"].clamp(0, 1), atol=meta["atol"], rtol=0)
    # the prefixes really differ (the tail is dropped, not ignored): by far more than the tolerance
    # (the random-weight decoder leans little on the tail: ~3.5e-3 against atol 3e-5)
    assert (io["recon_1"] - io["recon_8"]).abs().max() > 30 * meta["atol"]


def test_point_grammar_and_mixed_lengths() -> None:
    tok, meta, io, path = _load()
    x = io["images"]
    family, raw = parse_spec(meta["spec"])
    at3 = vistok.create(family, **raw, weights=str(path)).at_num_tokens(3)
    assert at3.spec.endswith("@3")
    t3 = at3.encode(x)
    assert t3.ids.shape == (2, 3)
    torch.testing.assert_close(at3.decode(t3), io["recon_3"].clamp(0, 1), atol=meta["atol"], rtol=0)
    # one batch, per-image lengths: each image decodes from its own prefix
    t = tok.encode(x)
    mixed = Tokens(bits=t.bits, ids=t.ids, lengths=torch.tensor([3, 8]))
    y = tok.decode(mixed)
    torch.testing.assert_close(y[0], io["recon_3"][0].clamp(0, 1), atol=meta["atol"], rtol=0)
    torch.testing.assert_close(y[1], io["recon_8"][1].clamp(0, 1), atol=meta["atol"], rtol=0)
    with pytest.raises(ValueError, match=r"num_tokens must be in 1\.\.8"):
        tok.encode(x, num_tokens=9)
    with pytest.raises(ValueError, match="decode needs ids"):
        tok.decode(Tokens(bits=t.bits, ids=torch.zeros(2, 9, dtype=torch.long)))


def test_wrong_files(tmp_path: Path) -> None:
    _, meta, _, path = _load()
    family, raw = parse_spec(meta["spec"])
    legacy = fixture_case("titok", "legacy")
    foreign = legacy / case_meta(legacy)["weights"]  # a TiTok of another size
    cut = tmp_path / "cut.bin"
    cut.write_bytes(path.read_bytes()[:3000])
    for bad, match in ((foreign, "pytorch_model"), (cut, "not a readable torch checkpoint")):
        with pytest.raises((CheckpointError, SpecError)) as e:
            vistok.create(family, **raw, weights=str(bad))
        assert str(bad) in str(e.value) and "\n" not in str(e.value)
        if match != "pytorch_model":
            assert match in str(e.value)


def test_convert_then_load(tmp_path: Path) -> None:
    tok, _, io, _ = _load()
    out = tok.save_pretrained(tmp_path / "converted")
    again = vistok.load(out)
    assert type(again) is type(tok) and again.variable_length
    a, b = tok.encode(io["images"], num_tokens=3), again.encode(io["images"], num_tokens=3)
    assert torch.equal(a.ids, b.ids) and torch.equal(tok.decode(a), again.decode(b))
    cfg = json.loads((out / "config.json").read_text())
    assert "weights" not in cfg["config"] and "pretrained" not in cfg["config"]


def _full_check() -> dict:
    path = FIXTURES / FAMILY / "full_check.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/make_official_fixtures.py {FAMILY} ... --full")
    return json.loads(path.read_text())["names"]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_build_with_official_parameter_counts(name: str) -> None:
    with torch.device("meta"):
        tok = vistok.create(name)
    full = _full_check()[name]
    assert sum(p.numel() for p in tok.parameters()) == full["params_official"] == full["params_vistok"]
    assert (
        full["codes_equal"]
        and full["recon_max_abs_diff_at_256"] <= 1e-3
        and full["recon_max_abs_diff_at_32"] <= 1e-3
    )
    assert TOKENIZERS.get(name).defaults()["hub"] == NAMES[name]
    assert tok.variable_length and tok.max_tokens == 256 and tok.vocab_size == 4096 and tok.input_size == 256
    with torch.device("meta"):
        assert vistok.create(f"{name}@32").default_num_tokens == 32
