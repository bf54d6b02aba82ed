"""Safe reading of checkpoints released by other projects: tensors come back, code never runs."""

from __future__ import annotations

import argparse
import collections
import os
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from vistok.utils.checkpoints import (
    CheckpointError,
    Opaque,
    read_pickle,
    read_state_dict,
    state_dict_from,
)


class _Evil:
    """Unpickling this with plain pickle would run a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _Config:
    def __init__(self) -> None:
        self.lr = 1e-4
        self.layers = [1, 2]


def _sd() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"enc.weight": torch.randn(4, 3, generator=g), "enc.bias": torch.zeros(4)}


def test_llamagen_style_pt_with_namespace_args(tmp_path: Path) -> None:
    sd = _sd()
    torch.save(
        {"model": sd, "optimizer": {"state": {}}, "steps": 7, "args": argparse.Namespace(lr=1)},
        tmp_path / "a.pt",
    )
    obj, skipped = read_pickle(tmp_path / "a.pt")
    assert skipped == {"argparse.Namespace"}
    assert isinstance(obj["args"], Opaque) and obj["args"].qualname == "argparse.Namespace"
    assert obj["steps"] == 7
    out = read_state_dict(tmp_path / "a.pt", keys=("model",))
    assert out.keys() == sd.keys() and all(torch.equal(out[k], sd[k]) for k in sd)


def test_lightning_ckpt_with_objects_and_code_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    sd = collections.OrderedDict(_sd())
    ckpt = {
        "epoch": 3,
        "global_step": 100,
        "pytorch-lightning_version": "1.9.0",
        "state_dict": sd,
        "hyper_parameters": {"cfg": _Config()},
        "callbacks": {"cb": _Evil(marker)},
        "optimizer_states": [{"state": {0: {"exp_avg": torch.ones(2)}}}],
    }
    torch.save(ckpt, tmp_path / "last.ckpt")
    out = read_state_dict(tmp_path / "last.ckpt")
    assert not marker.exists(), "the checkpoint's code ran"
    assert set(out) == set(sd) and torch.equal(out["enc.weight"], sd["enc.weight"])
    _, skipped = read_pickle(tmp_path / "last.ckpt")
    assert "posix.system" in skipped or "nt.system" in skipped
    assert any(s.endswith("_Config") for s in skipped)


def test_bare_state_dict_safetensors_and_folders(tmp_path: Path) -> None:
    sd = _sd()
    torch.save(sd, tmp_path / "w.pth")
    assert read_state_dict(tmp_path / "w.pth").keys() == sd.keys()
    save_file(sd, str(tmp_path / "w.safetensors"))
    assert read_state_dict(tmp_path / "w.safetensors").keys() == sd.keys()
    (tmp_path / "mixin").mkdir()
    save_file(sd, str(tmp_path / "mixin" / "model.safetensors"))
    assert read_state_dict(tmp_path / "mixin").keys() == sd.keys()
    (tmp_path / "bin").mkdir()
    torch.save(sd, tmp_path / "bin" / "pytorch_model.bin")
    assert read_state_dict(tmp_path / "bin").keys() == sd.keys()


def test_errors_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"nope\.pt: no such file"):
        read_state_dict(tmp_path / "nope.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match=r"junk\.pt: not a readable torch checkpoint"):
        read_state_dict(tmp_path / "junk.pt")
    full = tmp_path / "w.pt"
    torch.save({"model": _sd()}, full)
    (tmp_path / "cut.pt").write_bytes(full.read_bytes()[: len(full.read_bytes()) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pt"):
        read_state_dict(tmp_path / "cut.pt")
    torch.save({"weights": _sd(), "step": 1}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match=r"other\.pt: no state dict under 'model'.*'weights'"):
        read_state_dict(tmp_path / "other.pt", keys=("model",))
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="empty: folder holds no"):
        read_state_dict(tmp_path / "empty")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CheckpointError, match=r"bad\.safetensors: unreadable safetensors"):
        read_state_dict(tmp_path / "bad.safetensors")


def test_state_dict_from_refuses_non_tensor_entries() -> None:
    with pytest.raises(CheckpointError, match="non-tensor entries"):
        state_dict_from({"model": {"a": torch.ones(1), "b": 3}}, path="x.pt", keys=("model",))
    with pytest.raises(CheckpointError, match="holds a list"):
        state_dict_from([1, 2], path="x.pt")
