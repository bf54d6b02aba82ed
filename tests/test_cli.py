"""The CLI end to end, including the foundation issue's mixed-folder scenario."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistok.cli import main
from vistok.data.images import load_image_uint8


@pytest.fixture()
def mixed_folder(tmp_path: Path, photo: np.ndarray) -> Path:
    d = tmp_path / "in"
    d.mkdir()
    Image.fromarray(photo).save(d / "good.jpg", quality=90)
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG")
    (d / "truncated.jpg").write_bytes(buf.getvalue()[:2000])
    (d / "zero.png").write_bytes(b"")
    (d / "renamed.png").write_text("this is a text file\n")
    Image.fromarray(photo).convert("CMYK").save(d / "cmyk.jpg")
    Image.fromarray(photo[..., 1].astype(np.uint16) * 257).save(d / "deep16.png")
    rgba = np.dstack([photo, np.full(photo.shape[:2], 200, np.uint8)])
    Image.fromarray(rgba, "RGBA").save(d / "alpha.png")
    return d


def test_reconstruct_mixed_folder(
    mixed_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["reconstruct", str(mixed_folder), "-t", "jpeg:quality=30", "-o", str(out)]) == 0
    written = sorted(p.name for p in out.iterdir())
    assert written == ["alpha.png", "cmyk.png", "deep16.png", "good.png"]
    err = capsys.readouterr().err
    for name, reason in [
        ("truncated.jpg", "truncated"),
        ("zero.png", "empty file"),
        ("renamed.png", "not an image"),
    ]:
        line = next(ln for ln in err.splitlines() if name in ln)
        assert reason in line
    rec = load_image_uint8(out / "good.png")
    assert rec.shape == (300, 451, 3)


def test_all_failed_exits_one(tmp_path: Path) -> None:
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"")
    assert main(["reconstruct", str(bad), "-t", "png", "-o", str(tmp_path / "o.png")]) == 1


def test_usage_errors_exit_two(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["reconstruct", str(tmp_path / "nope.png"), "-t", "png", "-o", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8)).save(img)
    assert main(["reconstruct", str(img), "-t", "jpge", "-o", str(tmp_path / "x.png")]) == 2
    assert "Did you mean 'jpeg'" in capsys.readouterr().err


def test_encode_decode_png_is_exact(tmp_path: Path, photo: np.ndarray) -> None:
    src = tmp_path / "src"
    src.mkdir()
    Image.fromarray(photo).save(src / "cat.png")
    Image.fromarray(photo[:100, :77]).save(src / "small.png")
    assert main(["encode", str(src), "-t", "png", "-o", str(tmp_path / "tok")]) == 0
    assert sorted(p.name for p in (tmp_path / "tok").iterdir()) == ["cat.vtok", "small.vtok"]
    assert main(["decode", str(tmp_path / "tok"), "-o", str(tmp_path / "dec")]) == 0
    assert np.array_equal(load_image_uint8(tmp_path / "dec" / "cat.png"), photo)
    assert np.array_equal(load_image_uint8(tmp_path / "dec" / "small.png"), photo[:100, :77])


def test_reconstruct_at_evaluation_size_keeps_geometry(tmp_path: Path, photo: np.ndarray) -> None:
    p = tmp_path / "cat.png"
    Image.fromarray(photo).save(p)
    assert main(["reconstruct", str(p), "-t", "png", "--size", "256", "-o", str(tmp_path / "r.png")]) == 0
    rec = load_image_uint8(tmp_path / "r.png")
    assert rec.shape == photo.shape
    assert 1 < np.abs(rec.astype(float) - photo).mean() < 15  # lossless codec, but resized to 256 and back


def test_samples_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["samples", "text", "-o", str(tmp_path)]) == 0
    assert (tmp_path / "text" / "annotations.json").is_file()
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    assert "jpeg" in out and "webp" in out and "resize" in out


def test_reconstruct_samples_input(tmp_path: Path) -> None:
    assert main(["reconstruct", "samples:photos", "-t", "resize:factor=8", "-o", str(tmp_path)]) == 0
    assert len(list((tmp_path / "photos").glob("*.png"))) == 10
