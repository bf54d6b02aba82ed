"""Image codecs as tokenizers: the baselines every rate curve needs.

Each image is encoded to a real file in memory; its rate is the file's size in bits
(headers included, as a file on disk would be). ``decode`` decodes the bytes.

Byte budgets. The lossy codecs (``jpeg``, ``webp``, ``avif``) take ``bytes=N``: each image
is then encoded at the highest quality whose file fits in ``N`` bytes (binary search over
quality, per image), or at the lowest quality when none fits — recorded per image in
``Tokens.meta["over_budget"]``, and the rate stays the real file size. ``thumbnail``
shrinks the image instead, at a fixed quality, to the largest size whose file fits: it
never exceeds its budget (:class:`BudgetError` when not even a 1x1 file fits). The bench
uses both to put codecs at each image's own tokenizer byte count (docs/protocol.md).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from PIL import Image, features
from torch import Tensor

from vistok.registry import TOKENIZERS, parse_spec
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens

__all__ = ["THUMBNAIL_QUALITY", "BudgetError", "ImageCodec", "from_uint8", "to_uint8"]


def to_uint8(images: Tensor) -> np.ndarray:
    """float ``[B, 3, H, W]`` in [0, 1] -> uint8 ``[B, H, W, 3]`` (rounded to nearest)."""
    x = (images.detach().float().cpu().clamp(0, 1) * 255.0).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def from_uint8(arrays: list[np.ndarray] | np.ndarray) -> Tensor:
    """uint8 ``[H, W, 3]`` arrays (same size) -> float ``[B, 3, H, W]`` in [0, 1]."""
    x = torch.from_numpy(np.stack(arrays) if isinstance(arrays, list) else np.array(arrays, copy=True))
    return x.permute(0, 3, 1, 2).float().div_(255.0)


class BudgetError(ValueError):
    """No file of this codec fits the byte budget (raised by codecs that never exceed it).

    Attributes:
        budget: the budget in bytes.
        min_bytes: the smallest file this codec can make for the image, in bytes.
    """

    def __init__(self, message: str, *, budget: int, min_bytes: int):
        super().__init__(message)
        self.budget, self.min_bytes = budget, min_bytes


def _largest_fitting(lo: int, hi: int, make: Callable[[int], bytes], budget: int) -> tuple[int, bytes] | None:
    """The largest ``x`` in ``lo..hi`` with ``len(make(x)) <= budget``, and its file.

    Binary search: assumes the file grows with ``x`` (quality, or thumbnail size); where it
    does not, the answer may be a smaller ``x`` than the true largest, but the returned file
    is always one that was measured to fit. ``None`` when not even ``make(lo)`` fits.
    About ``log2(hi - lo) + 2`` calls of ``make``.
    """
    top = make(hi)
    if len(top) <= budget:
        return hi, top
    best = (lo, make(lo))
    if len(best[1]) > budget:
        return None
    lo_ok, hi_bad = lo, hi  # invariant: make(lo_ok) fits, make(hi_bad) does not
    while hi_bad - lo_ok > 1:
        mid = (lo_ok + hi_bad) // 2
        payload = make(mid)
        if len(payload) <= budget:
            lo_ok, best = mid, (mid, payload)
        else:
            hi_bad = mid
    return best


def _check_range(name: str, value: int, lo: int, hi: int) -> None:
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in {lo}..{hi}, got {value}")


def _check_budget(name: str, budget: int | None) -> None:
    if budget is not None and budget < 1:
        raise ValueError(f"{name} bytes must be >= 1, got {budget}")


def _spec_with(spec: str, key: str, value: object) -> str:
    """``spec`` with ``key=value`` set (replacing any previous value of ``key``)."""
    family, raw = parse_spec(spec)
    raw[key] = str(value)
    return family + ":" + ",".join(f"{k}={v}" for k, v in sorted(raw.items()))


class ImageCodec(Tokenizer):
    """A Pillow codec. Subclasses set ``format`` and implement :meth:`save_kwargs`.

    Codecs with ``supports_budget = True`` have a byte-budget mode (``byte_budget``, set by
    the ``bytes=`` parameter or :meth:`with_budget`): they report per image, in
    ``Tokens.meta``, ``"over_budget"`` (list of bool) and ``"budget_bytes"`` (int).
    """

    kind: ClassVar[Literal["codec"]] = "codec"  # type: ignore[misc]
    format: ClassVar[str] = ""
    supports_budget: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__()
        self.byte_budget: int | None = None

    @property
    def file_format(self) -> str:
        """Pillow's name of the payloads' file format (``"JPEG"``, ``"WEBP"``, ...)."""
        return self.format

    def save_kwargs(self) -> dict[str, Any]:
        raise NotImplementedError

    def encode_one(self, array: np.ndarray) -> bytes:
        """uint8 ``[H, W, 3]`` -> the file's bytes."""
        buf = io.BytesIO()
        Image.fromarray(array, "RGB").save(buf, format=self.format, **self.save_kwargs())
        return buf.getvalue()

    def encode_one_info(self, array: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        """uint8 ``[H, W, 3]`` -> the file's bytes and per-image facts for ``Tokens.meta``."""
        return self.encode_one(array), {}

    def decode_one(self, payload: bytes, size: tuple[int, int]) -> np.ndarray:
        """File bytes -> uint8 ``[H, W, 3]`` of the original ``size`` = ``(H, W)``."""
        with Image.open(io.BytesIO(payload)) as im:
            return np.asarray(im.convert("RGB"))

    def min_bytes(self, array: np.ndarray) -> int:
        """Size in bytes of the smallest file this codec makes for uint8 ``[H, W, 3]``.

        A budget below it cannot be met (fixed codecs: their one file's size).
        """
        return len(self.encode_one(array))

    def with_budget(self, nbytes: int) -> ImageCodec:
        """A copy of this codec in byte-budget mode: at most ``nbytes`` per image file.

        Equivalent to creating it with ``bytes=nbytes`` (its ``spec`` says so).

        Raises:
            TypeError: when the codec has no byte-budget mode (``png``, ``resize``).
        """
        if not self.supports_budget:
            raise TypeError(f"{self.spec}: this codec has no byte budget (jpeg, webp, avif, thumbnail have)")
        _check_budget(self.spec, nbytes)
        new = copy.copy(self)
        new.byte_budget = int(nbytes)
        new.config = {**self.config, "bytes": int(nbytes)}
        new.spec = _spec_with(self.spec, "bytes", int(nbytes))
        return new

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Encode each image of float ``[B, 3, H, W]`` in [0, 1] to file bytes.

        Returns:
            Tokens with ``bits`` = 8 x file size (float64 ``[B]``) and ``meta``:
            ``payloads`` (list of ``bytes``), ``size`` ``[H, W]``, ``format``; in byte-budget
            mode also ``budget_bytes`` and per-image lists (``over_budget``, ...).
        """
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        encoded = [self.encode_one_info(a) for a in to_uint8(images)]
        payloads = [p for p, _ in encoded]
        h, w = images.shape[-2:]
        bits = torch.tensor([8.0 * len(p) for p in payloads], dtype=torch.float64)
        meta: dict[str, Any] = {"payloads": payloads, "size": [int(h), int(w)], "format": self.file_format}
        if self.byte_budget is not None:
            meta["budget_bytes"] = self.byte_budget
        for key in encoded[0][1] if encoded else ():
            meta[key] = [info[key] for _, info in encoded]  # per image: sliced with the batch
        return Tokens(bits=bits, meta=meta)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Decode payloads back to float ``[B, 3, H, W]`` in [0, 1]."""
        size = tuple(tokens.meta["size"])
        return from_uint8([self.decode_one(p, size) for p in tokens.meta["payloads"]])


class QualityCodec(ImageCodec):
    """A lossy codec with a ``quality`` knob in ``quality_range`` and a byte-budget mode.

    With ``byte_budget`` set, ``quality`` is ignored: each image gets the highest quality
    whose file fits (binary search), or the lowest quality, flagged ``over_budget``.
    """

    supports_budget = True
    quality_range: ClassVar[tuple[int, int]] = (0, 100)

    def __init__(self, quality: int, byte_budget: int | None):
        super().__init__()
        _check_range(f"{self.format.lower()} quality", quality, *self.quality_range)
        _check_budget(self.format.lower(), byte_budget)
        self.quality, self.byte_budget = quality, byte_budget

    def options(self) -> dict[str, Any]:
        """Pillow save options other than the quality."""
        return {}

    def save_kwargs(self) -> dict[str, Any]:
        return {"quality": self.quality, **self.options()}

    def file(self, im: Image.Image, quality: int) -> bytes:
        """The file of RGB image ``im`` at ``quality``."""
        buf = io.BytesIO()
        im.save(buf, format=self.format, quality=quality, **self.options())
        return buf.getvalue()

    def encode_one_info(self, array: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        im = Image.fromarray(array, "RGB")
        if self.byte_budget is None:
            return self.file(im, self.quality), {}
        lo, hi = self.quality_range
        found = _largest_fitting(lo, hi, lambda q: self.file(im, q), self.byte_budget)
        if found is None:  # even the lowest quality is too big: say so, never pretend
            return self.file(im, lo), {"quality": lo, "over_budget": True}
        return found[1], {"quality": found[0], "over_budget": False}

    def encode_one(self, array: np.ndarray) -> bytes:
        return self.encode_one_info(array)[0]

    def min_bytes(self, array: np.ndarray) -> int:
        """Size of the file at the lowest quality (budget mode's smallest file)."""
        return len(self.file(Image.fromarray(array, "RGB"), self.quality_range[0]))


@TOKENIZERS.register("jpeg")
class JPEG(QualityCodec):
    """JPEG (libjpeg via Pillow), optimized Huffman tables; rate = file bytes.

    ``bytes=N``: per image, the highest quality (1..100) whose file is <= N bytes (``quality``
    is then ignored); quality 1 flagged ``over_budget`` when none fits.
    """

    format = "JPEG"
    quality_range = (1, 100)

    def __init__(
        self,
        *,
        quality: int = 75,
        subsampling: Literal["4:2:0", "4:2:2", "4:4:4"] = "4:2:0",
        optimize: bool = True,
        bytes: int | None = None,
    ):
        super().__init__(quality, bytes)
        self.subsampling, self.optimize = subsampling, optimize

    def options(self) -> dict[str, Any]:
        return {"subsampling": self.subsampling, "optimize": self.optimize}


@TOKENIZERS.register("webp")
class WebP(QualityCodec):
    """WebP (libwebp via Pillow); rate = file bytes.

    ``bytes=N``: per image, the highest quality (0..100) whose file is <= N bytes (``quality``
    is then ignored); quality 0 flagged ``over_budget`` when none fits. Lossy only.
    """

    format = "WEBP"

    def __init__(
        self, *, quality: int = 75, method: int = 4, lossless: bool = False, bytes: int | None = None
    ):
        _check_range("webp method", method, 0, 6)
        if lossless and bytes is not None:
            raise ValueError("webp: bytes= needs lossy WebP (lossless=false)")
        super().__init__(quality, bytes)
        self.method, self.lossless = method, lossless

    def options(self) -> dict[str, Any]:
        return {"method": self.method, "lossless": self.lossless}


def _avif_available() -> str | None:
    if features.check("avif"):
        return None
    return "this Pillow has no AVIF support (install Pillow >= 11.2 wheels, or pillow-avif-plugin)"


@TOKENIZERS.register("avif", available=_avif_available)
class AVIF(QualityCodec):
    """AVIF (libavif via Pillow, 4:2:0); rate = file bytes.

    ``bytes=N``: per image, the highest quality (0..100) whose file is <= N bytes (``quality``
    is then ignored); quality 0 flagged ``over_budget`` when none fits.
    """

    format = "AVIF"

    def __init__(self, *, quality: int = 50, speed: int = 6, bytes: int | None = None):
        _check_range("avif speed", speed, 0, 10)
        super().__init__(quality, bytes)
        self.speed = speed

    def options(self) -> dict[str, Any]:
        return {"speed": self.speed, "subsampling": "4:2:0"}


@TOKENIZERS.register("png")
class PNG(ImageCodec):
    """PNG, lossless: reconstruction is bit-exact; rate = file bytes."""

    format = "PNG"

    def __init__(self, *, compress_level: int = 9):
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


@TOKENIZERS.register("resize")
class Resize(ImageCodec):
    """Down by ``factor`` then back up (TokBench's upper bound); rate = PNG of the small image.

    The small image is stored losslessly, so the loss is the resampling alone: an upper
    bound for a tokenizer of the same spatial compression.
    """

    format = "PNG"

    def __init__(self, *, factor: float = 4.0, down: Filter = "bicubic", up: Filter = "bicubic"):
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


ThumbnailFormat = Literal["webp", "jpeg", "avif"]

# The thumbnail's fixed quality per format: the best mean PSNR over budgets of 64 B..4 KB on
# the built-in photos at 256x256 (docs/models.md has the sweep). Low qualities win: at these
# budgets more pixels at a coarse quality beat fewer pixels at a fine one.
THUMBNAIL_QUALITY: dict[str, int] = {"webp": 20, "jpeg": 20, "avif": 30}


@TOKENIZERS.register("thumbnail")
class Thumbnail(ImageCodec):
    """Equal-bytes thumbnail: the largest downscaled image whose file fits ``bytes``; upscaled back.

    The image is shrunk (aspect ratio kept; long side searched by bisection, never
    enlarged) with ``down`` and stored as ``format`` at the fixed ``quality`` (default per
    format: webp 20, jpeg 20, avif 30); ``decode`` upsamples back to the original size with
    ``up``. The file never exceeds ``bytes``: :class:`BudgetError` when not even a 1x1 file
    fits (on photos about 50-60 bytes for webp, 285 for jpeg, 310 for avif). Rate = file bytes.
    """

    supports_budget = True

    def __init__(
        self,
        *,
        format: ThumbnailFormat = "webp",
        bytes: int = 2048,
        quality: int | None = None,
        down: Filter = "bicubic",
        up: Filter = "lanczos",
    ):
        super().__init__()
        if format == "avif" and _avif_available():
            raise ValueError(f"thumbnail format=avif: {_avif_available()}")
        _check_budget("thumbnail", bytes)
        q = THUMBNAIL_QUALITY[format] if quality is None else quality
        self.inner: QualityCodec = {
            "webp": lambda: WebP(quality=q, method=4, lossless=False),
            "jpeg": lambda: JPEG(quality=q, subsampling="4:2:0", optimize=True),
            "avif": lambda: AVIF(quality=q, speed=6),
        }[format]()
        self.byte_budget = bytes  # always set: a thumbnail is defined by its budget
        self.quality, self.down, self.up = q, down, up

    @property
    def file_format(self) -> str:
        return self.inner.format

    def _file_at(self, im: Image.Image, long_side: int) -> bytes:
        """The file of ``im`` shrunk so that its longer side is ``long_side`` pixels."""
        w, h = im.size
        scale = long_side / max(w, h)
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        small = im if size == (w, h) else im.resize(size, _FILTERS[self.down])
        return self.inner.file(small, self.quality)

    def encode_one_info(self, array: np.ndarray) -> tuple[bytes, dict[str, Any]]:
        im = Image.fromarray(array, "RGB")
        budget = self.byte_budget
        found = _largest_fitting(1, max(im.size), lambda n: self._file_at(im, n), budget)
        if found is None:
            smallest = len(self._file_at(im, 1))
            raise BudgetError(
                f"thumbnail: a budget of {budget} bytes is below the smallest {self.inner.format} file "
                f"(a 1x1 image at quality {self.quality}: {smallest} bytes)",
                budget=budget,
                min_bytes=smallest,
            )
        payload = found[1]
        with Image.open(io.BytesIO(payload)) as small:
            w, h = small.size
        return payload, {"over_budget": False, "thumbnail_size": [h, w]}

    def encode_one(self, array: np.ndarray) -> bytes:
        return self.encode_one_info(array)[0]

    def decode_one(self, payload: bytes, size: tuple[int, int]) -> np.ndarray:
        with Image.open(io.BytesIO(payload)) as im:
            return np.asarray(im.convert("RGB").resize((size[1], size[0]), _FILTERS[self.up]))

    def min_bytes(self, array: np.ndarray) -> int:
        """Size of the 1x1 thumbnail's file: budgets below it raise :class:`BudgetError`."""
        return len(self._file_at(Image.fromarray(array, "RGB"), 1))
