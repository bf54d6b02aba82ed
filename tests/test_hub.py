"""Checkpoints: config.json + model.safetensors, rebuilt by name, clear errors."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import vistok
from vistok.hub import CheckpointError
from vistok.registry import TOKENIZERS
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens


class Scaler(Tokenizer):
    """A tiny continuous tokenizer with weights, for checkpoint tests."""

    kind = "continuous"

    def __init__(self, width: int):
        super().__init__()
        self.enc = nn.Conv2d(3, width, 1)
        self.dec = nn.Conv2d(width, 3, 1)

    def encode(self, images: torch.Tensor, *, num_tokens: int | None = None) -> Tokens:
        z = self.enc(images)
        return Tokens(bits=torch.full((images.shape[0],), 16.0 * z[0].numel()), latents=z)

    def decode(self, tokens: Tokens) -> torch.Tensor:
        return self.dec(tokens.latents).sigmoid()


if "test-scaler" not in TOKENIZERS:

    @TOKENIZERS.register("test-scaler")
    def _scaler(*, width: int = 4) -> Tokenizer:
        return Scaler(width)


def test_save_load_identical_outputs(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tok = vistok.create("test-scaler:width=6")
    tok.save_pretrained(tmp_path / "ck")
    cfg = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert cfg["name"] == "test-scaler" and cfg["config"] == {"width": 6}
    back = vistok.load(tmp_path / "ck")
    x = torch.rand(2, 3, 8, 8)
    assert torch.equal(back.reconstruct(x), tok.reconstruct(x))
    assert torch.equal(vistok.create(str(tmp_path / "ck")).reconstruct(x), tok.reconstruct(x))


def test_missing_and_unexpected_tensors(tmp_path: Path) -> None:
    tok = vistok.create("test-scaler")
    ck = tok.save_pretrained(tmp_path / "ck")
    state = tok.state_dict()
    state.pop("dec.bias")
    state["extra"] = torch.zeros(1)
    save_file(state, str(ck / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"missing \['dec.bias'\], unexpected \['extra'\]"):
        vistok.load(ck)


def test_wrong_shapes_unknown_family_missing_files(tmp_path: Path) -> None:
    ck = vistok.create("test-scaler").save_pretrained(tmp_path / "ck")
    cfg = json.loads((ck / "config.json").read_text())
    cfg["config"]["width"] = 5
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"tensor 'enc.weight' has shape \(4, 3, 1, 1\)"):
        vistok.load(ck)
    cfg["name"] = "no-such-model"
    (ck / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json: unknown tokenizer 'no-such-model'"):
        vistok.load(ck)
    (ck / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"model.safetensors: missing"):
        vistok.load(ck)


def test_hub_name_uses_snapshot_download(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tok = vistok.create("test-scaler")
    ck = tok.save_pretrained(tmp_path / "ck")
    calls = []

    def fake_snapshot(repo_id: str, revision: str | None = None, allow_patterns: object = None) -> str:
        calls.append((repo_id, revision))
        return str(ck)

    monkeypatch.setitem(
        sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=fake_snapshot)
    )
    back = vistok.load("someorg/some-model", revision="v1")
    assert calls == [("someorg/some-model", "v1")]
    x = torch.rand(1, 3, 4, 4)
    assert torch.equal(back.reconstruct(x), tok.reconstruct(x))


def test_hub_offline_message(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(*a: object, **k: object) -> str:
        raise OSError("network unreachable")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(snapshot_download=offline))
    with pytest.raises(CheckpointError, match=r"someorg/x: could not fetch .* Offline\?"):
        vistok.load("someorg/x")


def test_checkpoint_saved_under_an_old_titok_name_loads_as_latent1d(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tok = vistok.create("latent1d-tiny").eval()
    tok.save_pretrained(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["name"] = "titok-tiny"  # what vistok < 0.3 wrote
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    back = vistok.load(tmp_path)
    assert back.registry_name == "latent1d-tiny"
    x = torch.rand(1, 3, 32, 32)
    assert torch.equal(tok.encode(x).ids, back.encode(x).ids)


def test_a_spec_longer_than_a_file_name_is_a_spec_not_a_path() -> None:
    """``Path.is_dir`` raises ENAMETOOLONG past 255 bytes; create must read it as a registry spec."""
    spec = (
        "latent1d-tiny:quantizer=[fsq:levels=8-5-5-5],"
        + ",".join(["nested=uniform"] * 1)
        + ",nested_prob="
        + "0."
        + "5" * 300
    )
    assert len(spec) > 300
    tok = vistok.create(spec)
    assert tok.registry_name == "latent1d-tiny"
    with pytest.raises(vistok.registry.SpecError, match="unknown tokenizer"):
        vistok.create("nosuchfamily:" + ",".join(f"k{i}=1" for i in range(80)))
