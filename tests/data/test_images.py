"""Robust decoding: every bad case built on the fly, every supported mode converted."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistok.data.images import (
    ImageLoadError,
    LoadReport,
    find_images,
    iter_images,
    load_image,
    load_image_uint8,
)


def _save(path: Path, im: Image.Image, **kw: object) -> Path:
    im.save(path, **kw)
    return path


def test_rgb_jpeg_and_tensor_contract(tmp_path: Path, photo: np.ndarray) -> None:
    p = _save(tmp_path / "a.png", Image.fromarray(photo))
    x = load_image(p)
    assert x.shape == (3, *photo.shape[:2]) and x.dtype.is_floating_point
    assert np.array_equal((x.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8), photo)


def test_alpha_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200  # red, fully transparent in the left half, half opaque on the right
    rgba[:, 2:, 3] = 128
    p = _save(tmp_path / "a.png", Image.fromarray(rgba, "RGBA"))
    out = load_image_uint8(p)
    assert (out[:, :2] == 255).all()  # transparent -> background, not the hidden red
    assert abs(int(out[0, 3, 0]) - round(200 * 128 / 255 + 255 * 127 / 255)) <= 1
    assert abs(int(out[0, 3, 1]) - round(255 * 127 / 255)) <= 1
    black = load_image_uint8(p, background=(0, 0, 0))
    assert (black[:, :2] == 0).all()


def test_la_and_palette_with_transparency(tmp_path: Path) -> None:
    la = Image.fromarray(np.dstack([np.full((3, 3), 10, np.uint8), np.zeros((3, 3), np.uint8)]), "LA")
    assert (load_image_uint8(_save(tmp_path / "la.png", la)) == 255).all()
    pal = Image.new("P", (3, 3), 0)
    pal.putpalette([255, 0, 0] * 256)
    pal.info["transparency"] = 0
    assert (load_image_uint8(_save(tmp_path / "p.png", pal, transparency=0)) == 255).all()


def test_sixteen_bit_and_float_are_scaled(tmp_path: Path) -> None:
    g16 = np.array([[0, 65535], [32896, 257 * 100]], np.uint16)
    out = load_image_uint8(_save(tmp_path / "g.png", Image.fromarray(g16)))
    assert out[..., 0].tolist() == [[0, 255], [128, 100]] and (out[..., 0] == out[..., 2]).all()
    f = np.array([[0.0, 1.0], [0.5, 2.0]], np.float32)
    outf = load_image_uint8(_save(tmp_path / "f.tif", Image.fromarray(f)))
    assert outf[..., 1].tolist() == [[0, 255], [128, 255]]


def test_cmyk_and_grayscale(tmp_path: Path, photo: np.ndarray) -> None:
    cmyk = load_image_uint8(_save(tmp_path / "c.jpg", Image.fromarray(photo).convert("CMYK"), quality=95))
    assert cmyk.shape == photo.shape
    assert np.abs(cmyk.astype(int) - photo).mean() < 6  # colours survive the CMYK round trip
    gray = load_image_uint8(_save(tmp_path / "g.png", Image.fromarray(photo[..., 0])))
    assert (gray[..., 0] == photo[..., 0]).all() and (gray[..., 1] == gray[..., 0]).all()


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    a = np.zeros((10, 20, 3), np.uint8)
    a[:, :10] = 255  # white left half of a landscape image
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise when displayed
    p = _save(tmp_path / "o.jpg", Image.fromarray(a), exif=exif, quality=95)
    out = load_image_uint8(p)
    assert out.shape == (20, 10, 3)
    assert out[:10].mean() > 200 and out[10:].mean() < 50  # white half is now on top


def test_animated_takes_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (8, 8), c) for c in [(255, 0, 0), (0, 0, 255)]]
    p = tmp_path / "anim.gif"
    frames[0].save(p, save_all=True, append_images=frames[1:])
    out = load_image_uint8(p)
    assert out[..., 0].mean() > 200 and out[..., 2].mean() < 50


def _bad_cases(tmp_path: Path, photo: np.ndarray) -> dict[str, tuple[Path, str]]:
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG")
    cases = {
        "empty": (tmp_path / "empty.png", b"", "empty file"),
        "truncated": (tmp_path / "trunc.jpg", buf.getvalue()[: len(buf.getvalue()) // 3], "truncated"),
        "text": (tmp_path / "notes.png", b"shopping list\nmilk\n", "not an image"),
    }
    out = {}
    for key, (path, data, reason) in cases.items():
        path.write_bytes(data)
        out[key] = (path, reason)
    return out


def test_each_bad_file_names_file_and_reason(tmp_path: Path, photo: np.ndarray) -> None:
    for path, reason in _bad_cases(tmp_path, photo).values():
        with pytest.raises(ImageLoadError, match=reason) as info:
            load_image(path)
        assert info.value.path == str(path) and str(path) in str(info.value)
    with pytest.raises(ImageLoadError, match="file not found"):
        load_image(tmp_path / "missing.png")


def test_pixel_limit_replaces_bomb_warning(tmp_path: Path) -> None:
    p = _save(tmp_path / "big.png", Image.new("RGB", (300, 200)))
    with pytest.raises(
        ImageLoadError, match=r"too large: 300x200 = 60,000 pixels exceeds the limit of 50,000"
    ):
        load_image(p, max_pixels=50_000)
    assert load_image(p, max_pixels=60_000).shape == (3, 200, 300)


def test_folder_loader_goes_on_and_reports(tmp_path: Path, photo: np.ndarray) -> None:
    bad = _bad_cases(tmp_path, photo)
    (tmp_path / "sub").mkdir()
    _save(tmp_path / "sub" / "good.png", Image.fromarray(photo[:32, :32]))
    (tmp_path / "readme.txt").write_text("not listed: no image extension")
    files = find_images(tmp_path)
    assert [f.name for f in files] == ["empty.png", "notes.png", "good.png", "trunc.jpg"]
    report = LoadReport()
    got = list(iter_images(files, report))
    assert [p.name for p, _ in got] == ["good.png"] and report.loaded == 1
    assert sorted(Path(p).name for p, _ in report.skipped) == sorted(p.name for p, _ in bad.values())
    assert "3 skipped" in report.summary()


def test_header_cut_short_is_an_image_load_error(tmp_path: Path) -> None:
    buf = io.BytesIO()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(buf, format="PNG")
    for n in (8, 20, 33):  # signature only, inside IHDR, just after IHDR
        p = tmp_path / f"cut{n}.png"
        p.write_bytes(buf.getvalue()[:n])
        with pytest.raises(ImageLoadError, match=r"cut\d+\.png: (truncated|not an image)"):
            load_image(p)
