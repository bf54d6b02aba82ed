"""Expected errors reach the user as one line ``vistok: error: ...``; tracebacks only with --debug."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import vistok
from vistok.cli import main
from vistok.hub import CheckpointError


@pytest.fixture()
def image(tmp_path: Path) -> Path:
    p = tmp_path / "a.png"
    Image.new("RGB", (40, 40), (120, 60, 30)).save(p)
    return p


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("ckpt")
    vistok.create("conv2d-tiny").save_pretrained(d)
    return d


def _broken(tmp_path: Path, good: Path, how: str) -> tuple[Path, str]:
    """A copy of ``good`` broken in one way, and the file + reason the message must name."""
    d = tmp_path / f"ckpt-{how}"
    d.mkdir()
    cfg, weights = (good / "config.json").read_text(), (good / "model.safetensors").read_bytes()
    if how == "corrupt-config":
        cfg = cfg[: len(cfg) // 2]
        expect = "config.json: not a vistok config"
    elif how == "unknown-family":
        cfg = json.dumps({**json.loads(cfg), "name": "conv2d-tinny"})
        expect = "config.json: unknown tokenizer 'conv2d-tinny'. Did you mean"
    else:
        weights = weights[: len(weights) // 2]
        expect = "model.safetensors: unreadable safetensors file"
    (d / "config.json").write_text(cfg)
    (d / "model.safetensors").write_bytes(weights)
    return d, expect


@pytest.mark.parametrize("how", ["corrupt-config", "unknown-family", "truncated-weights"])
def test_broken_checkpoint_is_one_line(
    tmp_path: Path, image: Path, good_ckpt: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, expect = _broken(tmp_path, good_ckpt, how)
    for command in ("reconstruct", "encode"):
        assert main([command, str(image), "-t", str(ckpt), "-o", str(tmp_path / "out")]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("vistok: error: ") and expect in err[0], err
        assert str(ckpt) in err[0]  # names the file
    with pytest.raises(CheckpointError):  # --debug: the exception (and its traceback) comes through
        main(["--debug", "reconstruct", str(image), "-t", str(ckpt), "-o", str(tmp_path / "out")])
    with pytest.raises(CheckpointError):  # --debug after the command works too
        main(["reconstruct", str(image), "-t", str(ckpt), "-o", str(tmp_path / "out"), "--debug"])


def test_bad_spec_and_missing_file_exit_two(
    tmp_path: Path, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reconstruct", str(image), "-t", "jpeg:qualty=3", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Did you mean 'quality'" in err[0]
    assert main(["encode", str(tmp_path / "missing.png"), "-t", "png", "-o", str(tmp_path)]) == 2
    assert (
        capsys.readouterr().err.strip()
        == f"vistok: error: {tmp_path / 'missing.png'}: no such file or folder"
    )
    assert main(["reconstruct", str(image), "-t", "vistok-1d@x", "-o", str(tmp_path / "x.png")]) == 2
    assert "NAME@k" in capsys.readouterr().err


@pytest.mark.slow  # ~25 s: two fresh interpreters importing torch
def test_no_traceback_from_the_real_command(tmp_path: Path, image: Path, good_ckpt: Path) -> None:
    """The installed entry point: exit code and stderr as a user sees them."""
    ckpt, _ = _broken(tmp_path, good_ckpt, "truncated-weights")
    cmd = [
        sys.executable,
        "-m",
        "vistok",
        "reconstruct",
        str(image),
        "-t",
        str(ckpt),
        "-o",
        str(tmp_path / "o.png"),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "Traceback" not in run.stderr
    assert run.stderr.startswith("vistok: error: ") and len(run.stderr.strip().splitlines()) == 1
    run = subprocess.run([*cmd[:3], "--debug", *cmd[3:]], capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and "Traceback" in run.stderr and "CheckpointError" in run.stderr
