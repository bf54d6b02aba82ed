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
