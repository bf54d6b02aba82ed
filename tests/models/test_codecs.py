"""Codec tokenizers: real file sizes, exact PNG, sensible rate/quality ordering."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, features

import vistok
from vistok.models.codecs import from_uint8, to_uint8
from vistok.registry import SpecError
from vistok.tokens import Tokens


@pytest.fixture(scope="module")
def images(photo: np.ndarray) -> torch.Tensor:
    crop = photo[:128, :160]
    return from_uint8([crop, np.ascontiguousarray(crop[:, ::-1])])


def test_png_round_trip_is_bit_exact(images: torch.Tensor) -> None:
    tok = vistok.create("png")
    t = tok.encode(images)
    assert tok.kind == "codec"
    assert np.array_equal(to_uint8(tok.decode(t)), to_uint8(images))


@pytest.mark.parametrize("spec", ["jpeg:quality=40", "webp:quality=40", "png", "resize:factor=4"])
def test_rate_is_the_real_file_size(spec: str, images: torch.Tensor) -> None:
    tok = vistok.create(spec)
    t = tok.encode(images)
    assert t.bits.tolist() == [8.0 * len(p) for p in t.meta["payloads"]]
    # the payload is a real file of the named format
    fmt = Image.open(io.BytesIO(t.meta["payloads"][0])).format
    assert fmt == {"jpeg": "JPEG", "webp": "WEBP", "png": "PNG", "resize": "PNG"}[tok.family]
    rec = tok.decode(t)
    assert rec.shape == images.shape and rec.dtype == torch.float32
    assert rec.min() >= 0.0 and rec.max() <= 1.0


def test_jpeg_matches_pillow_directly(photo: np.ndarray) -> None:
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG", quality=55, optimize=True, subsampling="4:2:0")
    t = vistok.create("jpeg:quality=55").encode(from_uint8([photo]))
    assert t.meta["payloads"][0] == buf.getvalue()


@pytest.mark.parametrize("family", ["jpeg", "webp"])
def test_quality_trades_rate_for_error(family: str, images: torch.Tensor) -> None:
    rates, errors = [], []
    for q in (10, 50, 90):
        tok = vistok.create(f"{family}:quality={q}")
        t = tok.encode(images)
        rates.append(float(t.bits.sum()))
        errors.append(float((tok.decode(t) - images).pow(2).mean()))
    assert rates[0] < rates[1] < rates[2]
    assert errors[0] > errors[1] > errors[2]


def test_resize_is_smaller_and_blurrier(images: torch.Tensor) -> None:
    t2, t8 = (vistok.create(f"resize:factor={f}").encode(images) for f in (2, 8))
    assert float(t8.bits.sum()) < float(t2.bits.sum())
    small = Image.open(io.BytesIO(t8.meta["payloads"][0]))
    assert small.size == (20, 16)


def test_avif_available_or_clear_error() -> None:
    if features.check("avif"):
        tok = vistok.create("avif:quality=40")
        x = torch.rand(1, 3, 32, 32)
        assert tok.decode(tok.encode(x)).shape == x.shape
    else:
        with pytest.raises(SpecError, match="not available"):
            vistok.create("avif")


@pytest.mark.parametrize(
    ("spec", "msg"),
    [
        ("jpeg:quality=0", r"quality must be in 1\.\.100"),
        ("webp:method=9", r"method must be in 0\.\.6"),
        ("resize:factor=0.5", "factor must be >= 1"),
    ],
)
def test_bad_settings_are_clear(spec: str, msg: str) -> None:
    with pytest.raises(SpecError, match=msg):
        vistok.create(spec)


def test_input_contract_is_checked() -> None:
    tok = vistok.create("jpeg")
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        tok.encode(torch.full((1, 3, 8, 8), 2.0))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        tok.encode(torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="fixed-length"):
        tok.encode(torch.rand(1, 3, 8, 8), num_tokens=4)


# ---- byte budgets ----------------------------------------------------------------------
def _skimage_photo(name: str) -> np.ndarray:
    import skimage.data

    return np.ascontiguousarray(getattr(skimage.data, name)())


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = float((to_uint8(a).astype(np.float64) - to_uint8(b).astype(np.float64)).__pow__(2).mean())
    return 10 * np.log10(255.0**2 / mse)


def _pillow_file(im: Image.Image, fmt: str, quality: int) -> bytes:
    """The file vistok's codecs write, made with Pillow directly (the independent reference)."""
    kw: dict[str, object] = {
        "WEBP": {"method": 4, "lossless": False},
        "JPEG": {"subsampling": "4:2:0", "optimize": True},
        "AVIF": {"speed": 6, "subsampling": "4:2:0"},
    }[fmt]
    buf = io.BytesIO()
    im.save(buf, format=fmt, quality=quality, **kw)
    return buf.getvalue()


PHOTOS = ["astronaut", "chelsea", "coffee", "rocket"]
THUMB_CASES = [(n, "webp", b) for n in PHOTOS for b in (60, 64, 100, 200, 600, 2000, 6000)]
THUMB_CASES += [(n, "jpeg", b) for n in PHOTOS for b in (300, 700, 2000)]
if features.check("avif"):  # slow encoder: two photos
    THUMB_CASES += [(n, "avif", b) for n in PHOTOS[:2] for b in (330, 1500)]


@pytest.mark.parametrize(("name", "fmt", "budget"), THUMB_CASES)
def test_thumbnail_never_exceeds_its_budget_and_is_the_largest_that_fits(
    name: str, fmt: str, budget: int
) -> None:
    a = _skimage_photo(name)
    h, w = a.shape[:2]
    tok = vistok.create(f"thumbnail:format={fmt},bytes={budget}")
    t = tok.encode(from_uint8([a]))
    payload = t.meta["payloads"][0]
    assert len(payload) <= budget and t.bits.tolist() == [8.0 * len(payload)]
    assert t.meta["over_budget"] == [False] and t.meta["budget_bytes"] == budget
    with Image.open(io.BytesIO(payload)) as small:
        assert small.format == fmt.upper() and [small.height, small.width] == t.meta["thumbnail_size"][0]
        side = max(small.size)
    assert abs(small.width / small.height - w / h) < 0.5 / min(small.size) + 0.02  # aspect kept
    if side < max(h, w):  # one pixel more on the long side does not fit (Pillow, independently)
        s = (side + 1) / max(h, w)
        bigger = Image.fromarray(a).resize(
            (max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC
        )
        assert len(_pillow_file(bigger, fmt.upper(), tok.quality)) > budget
    rec = tok.decode(t)
    assert rec.shape == (1, 3, h, w)  # back at the original size


def test_thumbnail_psnr_grows_with_the_budget(photo: np.ndarray) -> None:
    x = from_uint8([photo])
    psnrs = []
    for budget in (64, 256, 1024, 4096):
        tok = vistok.create(f"thumbnail:bytes={budget}")
        psnrs.append(_psnr(x, tok.decode(tok.encode(x))))
    assert psnrs == sorted(psnrs) and psnrs[-1] - psnrs[0] > 6.0, psnrs
    assert 15.0 < psnrs[0] < 22.0 and psnrs[-1] > 28.0  # chelsea: 18.7, 23.2, 27.3, 30.5 dB


def test_thumbnail_below_the_smallest_file_is_a_clear_error(photo: np.ndarray) -> None:
    from vistok.models.codecs import BudgetError

    tok = vistok.create("thumbnail:bytes=20")
    smallest = tok.min_bytes(photo)
    assert 20 < smallest < 80  # a 1x1 WebP: RIFF + VP8 headers
    with pytest.raises(BudgetError, match=rf"budget of 20 bytes .* smallest WEBP file .*: {smallest} bytes"):
        tok.encode(from_uint8([photo]))
    assert len(
        vistok.create(f"thumbnail:bytes={smallest}").encode(from_uint8([photo])).meta["payloads"][0]
    ) <= (smallest)


@pytest.mark.parametrize("family", ["webp", "jpeg"])
def test_bytes_mode_takes_the_highest_quality_that_fits(family: str, photo: np.ndarray) -> None:
    fmt = family.upper()
    im = Image.fromarray(photo)
    for budget in (6000, 15000):
        t = vistok.create(f"{family}:bytes={budget}").encode(from_uint8([photo]))
        q = t.meta["quality"][0]
        assert t.meta["over_budget"] == [False] and len(t.meta["payloads"][0]) <= budget
        assert t.meta["payloads"][0] == _pillow_file(im, fmt, q)  # a real file at that quality
        assert len(_pillow_file(im, fmt, q + 1)) > budget  # the next quality would not fit
    # quality is ignored in byte-budget mode
    a = vistok.create(f"{family}:bytes=9000,quality=90").encode(from_uint8([photo]))
    b = vistok.create(f"{family}:bytes=9000,quality=10").encode(from_uint8([photo]))
    assert a.meta["payloads"] == b.meta["payloads"]


@pytest.mark.parametrize(("family", "lowest"), [("webp", 0), ("jpeg", 1)])
def test_bytes_mode_over_budget_is_reported_with_the_true_size(
    family: str, lowest: int, photo: np.ndarray
) -> None:
    x = from_uint8([photo, np.ascontiguousarray(photo[::-1])])
    t = vistok.create(f"{family}:bytes=100").encode(x)
    assert t.meta["over_budget"] == [True, True] and t.meta["quality"] == [lowest, lowest]
    first = _pillow_file(Image.fromarray(photo), family.upper(), lowest)
    assert t.meta["payloads"][0] == first and t.bits[0] == 8 * len(first) > 8 * 100  # never pretends
    assert vistok.create(family).with_budget(100).min_bytes(photo) == len(first)


def test_with_budget_is_the_bytes_parameter(images: torch.Tensor, tmp_path: object) -> None:
    from pathlib import Path

    a = vistok.create("webp:quality=30").with_budget(3000)
    b = vistok.create("webp:bytes=3000")
    assert a.spec == "webp:bytes=3000,quality=30" and a.config["bytes"] == 3000
    ta, tb = a.encode(images), b.encode(images)
    assert ta.meta["payloads"] == tb.meta["payloads"] and ta.meta["over_budget"] == [False, False]
    # budget facts survive a .vtok file (JSON metadata) and decoding
    path = Path(str(tmp_path)) / "t.vtok"
    ta.save(path, tokenizer=a.spec)
    back, spec = Tokens.load(path)
    assert back.meta["quality"] == ta.meta["quality"] and back.meta["budget_bytes"] == 3000
    assert torch.equal(vistok.create(spec).decode(back), a.decode(ta))
    t2 = vistok.create("thumbnail").with_budget(300)
    assert t2.spec == "thumbnail:bytes=300" and len(t2.encode(images).meta["payloads"][1]) <= 300
    with pytest.raises(TypeError, match="no byte budget"):
        vistok.create("png").with_budget(100)


@pytest.mark.parametrize(
    ("spec", "msg"),
    [
        ("thumbnail:bytes=0", r"bytes must be >= 1"),
        ("webp:bytes=-5", r"bytes must be >= 1"),
        ("webp:bytes=500,lossless=true", "lossy"),
        ("thumbnail:format=png", "not a valid one of webp|jpeg|avif"),
        ("thumbnail:quality=101", r"quality must be in 0\.\.100"),
    ],
)
def test_bad_budget_settings_are_clear(spec: str, msg: str) -> None:
    with pytest.raises(SpecError, match=msg):
        vistok.create(spec)
