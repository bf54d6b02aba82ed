"""vistok.utils.torchscript: TorchScript archives read as data, equal to ``torch.jit.load(...).state_dict()``."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from vistok.utils.checkpoints import CheckpointError
from vistok.utils.torchscript import read_torchscript, read_torchscript_archive


class _Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(2, 4)
        self.conv = nn.Conv2d(4, 4, 3, padding=1, bias=False)  # an absent optional parameter
        self.register_buffer("fixed", torch.arange(3.0), persistent=False)
        self.register_buffer("count", torch.tensor([7], dtype=torch.int64))
        self.plain = torch.ones(2)  # a tensor attribute, neither parameter nor buffer
        self.skip = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip(self.conv(self.norm(x))) + self.fixed.sum() + self.plain.sum() + self.count.float()


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, 4, 1)
        self.blocks = nn.ModuleList([_Block(), _Block()])
        self.head = nn.Sequential(nn.Conv2d(4, 2, 1), nn.SiLU())
        self.scale = nn.Parameter(torch.tensor(0.5))
        self.shared = self.conv_in  # the same module twice: one copy of its tensors per name

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for b in self.blocks:
            h = b(h)
        return self.head(h) * self.scale


def _net(dtype: torch.dtype = torch.float32) -> _Net:
    torch.manual_seed(0)
    net = _Net().eval()
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    return net.to(dtype)


def _equal_to_jit_load(path: Path) -> None:
    ours = read_torchscript(path)
    theirs = torch.jit.load(str(path)).state_dict()
    assert list(ours) == list(theirs)  # names and order
    for k, v in theirs.items():
        assert ours[k].dtype == v.dtype and ours[k].shape == v.shape and ours[k].stride() == v.stride(), k
        assert torch.equal(ours[k], v), k


@pytest.mark.parametrize("how", ["trace", "script"])
def test_reads_what_jit_load_reads(tmp_path: Path, how: str) -> None:
    net = _net()
    x = torch.randn(1, 3, 5, 5)
    m = torch.jit.trace(net, x) if how == "trace" else torch.jit.script(net)
    path = tmp_path / f"{how}.jit"
    m.save(str(path))
    _equal_to_jit_load(path)
    state = read_torchscript(path)
    # parameters and buffers (TorchScript keeps no persistent flag: `fixed` is there, as in
    # jit.load's state_dict); plain tensor attributes and absent biases are not
    assert "blocks.0.fixed" in state and "blocks.1.count" in state
    assert not any(k.endswith(".plain") or k.endswith("conv.bias") for k in state)
    assert set(state) - {"blocks.0.fixed", "blocks.1.fixed"} == set(net.state_dict())


def test_bfloat16_storages_and_shared_tensors(tmp_path: Path) -> None:
    net = _net(torch.bfloat16)
    path = tmp_path / "bf16.jit"
    torch.jit.script(net).save(str(path))  # (tracing would need a forward that mixes no dtypes)
    _equal_to_jit_load(path)
    state = read_torchscript(path)
    assert state["conv_in.weight"].dtype == torch.bfloat16
    assert torch.equal(state["shared.weight"], state["conv_in.weight"])


def test_no_code_of_the_archive_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "net.jit"
    torch.jit.script(_net()).save(str(path))

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("torch.jit.load was called")

    monkeypatch.setattr(torch.jit, "load", refuse)
    monkeypatch.setattr(torch._C, "import_ir_module", refuse)
    archive = read_torchscript_archive(path)
    assert type(archive.root).qualname.startswith("__torch__.")
    assert archive.classes[type(archive.root).qualname] == (["scale"], [])
    assert "conv_in.weight" in archive.state_dict()


def _rewrite(
    src: Path, dst: Path, *, drop: str | None = None, replace: tuple[str, bytes] | None = None
) -> None:
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            if drop and info.filename.endswith(drop):
                continue
            data = zin.read(info.filename)
            if replace and info.filename.endswith(replace[0]):
                data = replace[1]
            zout.writestr(info, data)


@pytest.mark.parametrize(
    "damage", ["missing_storage", "short_storage", "no_code", "not_zip", "pickle", "plain_zip"]
)
def test_damaged_archives_raise_one_line_errors(tmp_path: Path, damage: str) -> None:
    good = tmp_path / "good.jit"
    torch.jit.trace(_net(), torch.randn(1, 3, 4, 4)).save(str(good))
    bad = tmp_path / f"{damage}.jit"
    if damage == "missing_storage":
        _rewrite(good, bad, drop="/data/0")
    elif damage == "short_storage":
        _rewrite(good, bad, replace=("/data/0", b"\0" * 3))
    elif damage == "no_code":
        with zipfile.ZipFile(good) as z:
            name = next(n for n in z.namelist() if "/code/" in n and n.endswith(".py") and "modules" not in n)
        _rewrite(good, bad, drop=name)
    elif damage == "not_zip":
        bad.write_bytes(good.read_bytes()[:200])
    elif damage == "pickle":
        _rewrite(good, bad, replace=("/data.pkl", b"\x80\x02garbage"))
    else:
        torch.save({"w": torch.ones(2)}, bad)  # a torch.save zip: no ARCHIVE/data.pkl module tree
    with pytest.raises(CheckpointError) as err:
        read_torchscript(bad)
    msg = str(err.value)
    assert "\n" not in msg and str(bad) in msg, msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no such file"):
        read_torchscript(tmp_path / "absent.jit")
