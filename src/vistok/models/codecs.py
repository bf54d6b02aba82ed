"""Image codecs as tokenizers: the baselines every rate curve needs.

Each image is encoded to a real file in memory; its rate is the file's size in bits
(headers included, as a file on disk would be). ``decode`` decodes the bytes.
"""

from __future__ import annotations

import io
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image, features
from torch import Tensor

from vistok.registry import TOKENIZERS
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens

__all__ = ["ImageCodec", "from_uint8", "to_uint8"]


def to_uint8(images: Tensor) -> np.ndarray:
    """float ``[B, 3, H, W]`` in [0, 1] -> uint8 ``[B, H, W, 3]`` (rounded to nearest)."""
    x = (images.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(arrays: list[np.ndarray] | np.ndarray) -> Tensor:
    """uint8 ``[H, W, 3]`` arrays (same size) -> float ``[B, 3, H, W]`` in [0, 1]."""
    x = torch.from_numpy(np.stack(arrays) if isinstance(arrays, list) else np.array(arrays, copy=True))
    return x.permute(0, 3, 1, 2).float().div_(255.0)


class ImageCodec(Tokenizer):
    """A Pillow codec. Subclasses set ``format`` and implement :meth:`save_kwargs`."""

    kind: ClassVar[Literal["codec"]] = "codec"  # type: ignore[misc]
    format: ClassVar[str] = ""

    def save_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def encode_one(self, array: np.ndarray) -> bytes:
        buf = io.BytesIO()
        Image.fromarray(array, "RGB").save(buf, format=self.format, **self.save_kwargs())
        return buf.getvalue()

    def decode_one(self, payload: bytes, size: tuple[int, int]) -> np.ndarray:
        with Image.open(io.BytesIO(payload)) as im:
            return np.asarray(im.convert("RGB"))

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Encode each image of float ``[B, 3, H, W]`` in [0, 1] to file bytes."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        payloads = [self.encode_one(a) for a in to_uint8(images)]
        h, w = images.shape[-2:]
        bits = torch.tensor([8.0 * len(p) for p in payloads], dtype=torch.float64)
        return Tokens(bits=bits, meta={"payloads": payloads, "size": [int(h), int(w)], "format": self.format})

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Decode payloads back to float ``[B, 3, H, W]`` in [0, 1]."""
        size = tuple(tokens.meta["size"])
        return from_uint8([self.decode_one(p, size) for p in tokens.meta["payloads"]])


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")


class JPEG(ImageCodec):
    format = "JPEG"

    def __init__(self, quality: int, subsampling: str, optimize: bool):
        super().__init__()
        _check_range("jpeg quality", quality, 1, 100)
        self.quality, self.subsampling, self.optimize = quality, subsampling, optimize

    def save_kwargs(self) -> dict[str, Any]:
        return {"quality": self.quality, "subsampling": self.subsampling, "optimize": self.optimize}


class WebP(ImageCodec):
    format = "WEBP"

    def __init__(self, quality: int, method: int, lossless: bool):
        super().__init__()
        _check_range("webp quality", quality, 0, 100)
        _check_range("webp method", method, 0, 6)
        self.quality, self.method, self.lossless = quality, method, lossless

    def save_kwargs(self) -> dict[str, Any]:
        return {"quality": self.quality, "method": self.method, "lossless": self.lossless}


class AVIF(ImageCodec):
    format = "AVIF"

    def __init__(self, quality: int, speed: int):
        super().__init__()
        _check_range("avif quality", quality, 0, 100)
        _check_range("avif speed", speed, 0, 10)
        self.quality, self.speed = quality, speed

    def save_kwargs(self) -> dict[str, Any]:
        return {"quality": self.quality, "speed": self.speed, "subsampling": "4:2:0"}


class PNG(ImageCodec):
    format = "PNG"

    def __init__(self, compress_level: int):
        super().__init__()
        _check_range("png compress_level", compress_level, 0, 9)
        self.compress_level = compress_level

    def save_kwargs(self) -> dict[str, Any]:
        return {"compress_level": self.compress_level}


_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}
Filter = Literal["nearest", "box", "bilinear", "bicubic", "lanczos"]


class Resize(ImageCodec):
    """Downsample by ``factor``, store losslessly as PNG, upsample back on decode.

    TokBench's upper bound for a tokenizer of the same spatial compression.
    """

    format = "PNG"

    def __init__(self, factor: float, down: Filter, up: Filter):
        super().__init__()
        if not factor >= 1.0:
            raise ValueError(f"resize factor must be >= 1, got {factor}")
        self.factor, self.down, self.up = factor, down, up

    def save_kwargs(self) -> dict[str, Any]:
        return {"compress_level": 9}

    def encode_one(self, array: np.ndarray) -> bytes:
        h, w = array.shape[:2]
        small = (max(1, round(w / self.factor)), max(1, round(h / self.factor)))
        im = Image.fromarray(array, "RGB").resize(small, _FILTERS[self.down])
        buf = io.BytesIO()
        im.save(buf, format="PNG", compress_level=9)
        return buf.getvalue()

    def decode_one(self, payload: bytes, size: tuple[int, int]) -> np.ndarray:
        with Image.open(io.BytesIO(payload)) as im:
            return np.asarray(im.convert("RGB").resize((size[1], size[0]), _FILTERS[self.up]))


def _avif_available() -> str | None:
    if features.check("avif"):
        return None
    return "this Pillow has no AVIF support (install Pillow >= 11.2 wheels, or pillow-avif-plugin)"


# ---- registry entries (defaults are data; the classes above are the architecture) ----
@TOKENIZERS.register("jpeg")
def jpeg(
    *, quality: int = 75, subsampling: Literal["4:2:0", "4:2:2", "4:4:4"] = "4:2:0", optimize: bool = True
) -> Tokenizer:
    """JPEG (libjpeg via Pillow), optimized Huffman tables; rate = file bytes."""
    return JPEG(quality, subsampling, optimize)


@TOKENIZERS.register("webp")
def webp(*, quality: int = 75, method: int = 4, lossless: bool = False) -> Tokenizer:
    """WebP (libwebp via Pillow); rate = file bytes."""
    return WebP(quality, method, lossless)


@TOKENIZERS.register("avif", available=_avif_available)
def avif(*, quality: int = 50, speed: int = 6) -> Tokenizer:
    """AVIF (libavif via Pillow, 4:2:0); rate = file bytes."""
    return AVIF(quality, speed)


@TOKENIZERS.register("png")
def png(*, compress_level: int = 9) -> Tokenizer:
    """PNG, lossless: reconstruction is bit-exact; rate = file bytes."""
    return PNG(compress_level)


@TOKENIZERS.register("resize")
def resize(*, factor: float = 4.0, down: Filter = "bicubic", up: Filter = "bicubic") -> Tokenizer:
    """Down by ``factor`` then back up (TokBench's upper bound); rate = PNG of the small image."""
    return Resize(factor, down, up)
