"""Robust image decoding into the contract's tensor.

Policy (also in docs/protocol.md):
- EXIF orientation is applied; animated images give their first frame.
- Palette, grayscale, CMYK, YCbCr, LAB and HSV images are converted to RGB by Pillow.
- 16-bit integer images (``I;16*`` and ``I`` with values above 255) are scaled by 1/65535,
  32-bit float images (``F``) are taken as values in [0, 1] and clipped; results are
  rounded to 8 bits, as every image in the protocol is 8-bit sRGB.
- Alpha (RGBA, LA, PA, RGBa, La) is composited over a background, white by default
  (``background=``), so transparent regions do not carry invisible colour into a tokenizer.
- Images with more than ``max_pixels`` pixels are refused (a clear error instead of
  Pillow's decompression-bomb warning).

Every failure raises :class:`ImageLoadError` naming the file and a reason a person understands.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "ImageLoadError",
    "LoadReport",
    "find_images",
    "iter_images",
    "load_image",
    "load_image_uint8",
    "to_tensor",
]

DEFAULT_MAX_PIXELS = 8192 * 8192
IMAGE_EXTENSIONS = frozenset(
    [
        ".jpg",
        ".jpeg",
        ".jpe",
        ".png",
        ".webp",
        ".bmp",
        ".gif",
        ".tif",
        ".tiff",
        ".ppm",
        ".pgm",
        ".pbm",
        ".pnm",
        ".avif",
        ".heic",
        ".jp2",
        ".tga",
        ".ico",
    ]
)


class ImageLoadError(Exception):
    """An image that could not be decoded; ``path`` and ``reason`` say which and why."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _open(path: Path, max_pixels: int) -> Image.Image:
    """Open and fully decode frame 0, mapping Pillow's failures to readable reasons."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageLoadError(path, "file not found") from None
    except OSError as e:
        raise ImageLoadError(path, f"cannot read file ({e.strerror or e})") from None
    if path.is_dir():
        raise ImageLoadError(path, "is a folder, not an image file")
    if size == 0:
        raise ImageLoadError(path, "empty file (0 bytes)")
    data = path.read_bytes()
    old = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit below replaces the bomb check
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            try:
                im = Image.open(io.BytesIO(data))
            except UnidentifiedImageError:
                raise ImageLoadError(path, "not an image (no format Pillow can read recognises it)") from None
            except (OSError, ValueError, SyntaxError, EOFError) as e:  # a header cut short or garbled
                raise ImageLoadError(path, f"truncated or corrupt header ({e})") from None
            w, h = im.size
            if w * h > max_pixels:
                raise ImageLoadError(
                    path, f"too large: {w}x{h} = {w * h:,} pixels exceeds the limit of {max_pixels:,}"
                )
            if w == 0 or h == 0:
                raise ImageLoadError(path, f"image has zero size ({w}x{h})")
            try:
                im.seek(0)
                im.load()
            except OSError as e:
                msg = str(e)
                if "truncated" in msg or "broken data stream" in msg or "unrecognized data stream" in msg:
                    raise ImageLoadError(path, f"truncated or corrupt {im.format} file ({msg})") from None
                raise ImageLoadError(path, f"cannot decode {im.format} data ({msg})") from None
            except (ValueError, SyntaxError, EOFError) as e:
                raise ImageLoadError(path, f"corrupt {im.format} file ({e})") from None
            return im
    finally:
        Image.MAX_IMAGE_PIXELS = old


def _composite(rgba: Image.Image, background: tuple[int, int, int]) -> Image.Image:
    bg = Image.new("RGBA", rgba.size, (*background, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def _to_rgb_array(im: Image.Image, path: Path, background: tuple[int, int, int]) -> np.ndarray:
    mode = im.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La") or (mode == "P" and "transparency" in im.info):
        return np.asarray(_composite(im.convert("RGBA"), background))
    if mode.startswith("I;16") or mode == "I":
        arr = np.asarray(im).astype(np.float64)
        scale = 65535.0 if (mode.startswith("I;16") or arr.max(initial=0) > 255) else 255.0
        gray = np.clip(np.round(arr / scale * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode == "F":
        arr = np.nan_to_num(np.asarray(im, dtype=np.float64), nan=0.0)
        gray = np.clip(np.round(np.clip(arr, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if mode in ("RGB", "L", "1", "P", "CMYK", "YCbCr", "LAB", "HSV"):
        return np.asarray(im.convert("RGB"))
    try:
        return np.asarray(im.convert("RGB"))
    except (ValueError, OSError) as e:
        raise ImageLoadError(path, f"unsupported image mode {mode!r} ({e})") from None


def load_image_uint8(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> np.ndarray:
    """Decode ``path`` to uint8 ``[H, W, 3]`` sRGB following the module's policy.

    Raises:
        ImageLoadError: with the file and a readable reason.
    """
    path = Path(path)
    im = _open(path, max_pixels)
    with contextlib.suppress(Exception):  # a broken EXIF block should not lose the image
        im = ImageOps.exif_transpose(im)
    arr = _to_rgb_array(im, path, background)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ImageLoadError(path, f"unsupported image mode {im.mode!r}")
    return np.array(arr, order="C")  # writable, contiguous copy


def to_tensor(array: np.ndarray) -> Tensor:
    """uint8 ``[H, W, 3]`` -> float ``[3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float().div_(255.0)


def load_image(
    path: str | Path,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Tensor:
    """Decode ``path`` to float ``[3, H, W]`` in [0, 1] (see the module's policy).

    Raises:
        ImageLoadError: with the file and a readable reason.
    """
    return to_tensor(load_image_uint8(path, max_pixels=max_pixels, background=background))


def find_images(root: str | Path, *, recursive: bool = True) -> list[Path]:
    """Files under ``root`` with an image extension (sorted); ``root`` may be a file."""
    root = Path(root)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such file or folder")
    pattern = "**/*" if recursive else "*"
    return sorted(
        p
        for p in root.glob(pattern)
        if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )


@dataclass
class LoadReport:
    """What a batch load decoded and what it skipped (``(path, reason)`` pairs)."""

    loaded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"{self.loaded} image(s) loaded, {len(self.skipped)} skipped"]
        lines += [f"  skipped {p}: {r}" for p, r in self.skipped]
        return "\n".join(lines)


def iter_images(
    paths: Iterable[str | Path],
    report: LoadReport | None = None,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = (255, 255, 255),
) -> Iterator[tuple[Path, np.ndarray]]:
    """Yield ``(path, uint8 [H, W, 3])`` for each decodable file; record the rest in ``report``."""
    report = report if report is not None else LoadReport()
    for p in paths:
        try:
            arr = load_image_uint8(p, max_pixels=max_pixels, background=background)
        except ImageLoadError as e:
            report.skipped.append((e.path, e.reason))
            continue
        report.loaded += 1
        yield Path(p), arr
