"""Fitting images to what a tokenizer accepts, and undoing it (the protocol's geometry).

Everything here works on uint8 ``[H, W, 3]`` arrays, as the protocol keeps images 8-bit
between steps. Resizing uses Pillow's bicubic filter (antialiased when shrinking).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

import numpy as np
from PIL import Image

__all__ = ["Fit", "PadMode", "apply_fit", "plan_fit", "resize_uint8", "undo_fit"]

PadMode = Literal["reflect", "constant", "edge"]


@dataclass(frozen=True)
class Fit:
    """How an ``orig_h`` x ``orig_w`` image was fitted: pad (top, bottom, left, right), then
    resize the padded image to ``size_h`` x ``size_w``."""

    orig_h: int
    orig_w: int
    pad: tuple[int, int, int, int]
    size_h: int
    size_w: int
    pad_mode: PadMode = "reflect"

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["pad"] = list(self.pad)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> Fit:
        return cls(**{**d, "pad": tuple(d["pad"])})  # type: ignore[arg-type]

    @property
    def padded_hw(self) -> tuple[int, int]:
        t, b, l, r = self.pad
        return self.orig_h + t + b, self.orig_w + l + r


def plan_fit(
    h: int,
    w: int,
    *,
    size: int | None = None,
    stride: int = 1,
    square: bool = False,
    pad_mode: PadMode = "reflect",
) -> Fit:
    """Plan padding/resizing for an ``h`` x ``w`` image.

    Args:
        size: if given, pad to square (centred) and resize to ``size`` x ``size``
            (TokBench protocol); ``size`` must be a multiple of ``stride``.
        stride: otherwise pad bottom/right up to a multiple of ``stride``.
        square: pad to square even without resizing.
    """
    if size is not None:
        if size % stride:
            raise ValueError(f"evaluation size {size} is not a multiple of the tokenizer's stride {stride}")
        square = True
    if square:
        side = max(h, w)
        dh, dw = side - h, side - w
        pad = (dh // 2, dh - dh // 2, dw // 2, dw - dw // 2)
        ph, pw = side, side
    else:
        ph, pw = -(-h // stride) * stride, -(-w // stride) * stride
        pad = (0, ph - h, 0, pw - w)
    if size is not None:
        out_h = out_w = size
    else:
        out_h, out_w = -(-ph // stride) * stride, -(-pw // stride) * stride
        if (out_h, out_w) != (ph, pw):  # square padding not a multiple: pad further
            t, b, l, r = pad
            pad = (t, b + out_h - ph, l, r + out_w - pw)
    return Fit(h, w, pad, out_h, out_w, pad_mode)


def resize_uint8(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> ``[h, w, 3]`` with Pillow's bicubic filter (no-op when equal)."""
    if a.shape[:2] == (h, w):
        return a
    return np.asarray(Image.fromarray(a).resize((w, h), Image.Resampling.BICUBIC))


def apply_fit(a: np.ndarray, fit: Fit) -> np.ndarray:
    """uint8 ``[H, W, 3]`` -> uint8 ``[size_h, size_w, 3]`` following ``fit``."""
    t, b, l, r = fit.pad
    if any(fit.pad):
        mode = fit.pad_mode
        if mode == "reflect" and (t >= a.shape[0] or b >= a.shape[0] or l >= a.shape[1] or r >= a.shape[1]):
            mode = "symmetric"  # reflect cannot pad more than the image; mirror with repetition
        a = np.pad(a, ((t, b), (l, r), (0, 0)), mode=mode)  # type: ignore[call-overload]
    return resize_uint8(a, fit.size_h, fit.size_w)


def undo_fit(a: np.ndarray, fit: Fit) -> np.ndarray:
    """Inverse geometry of :func:`apply_fit`: resize back to the padded size, crop the padding."""
    ph, pw = fit.padded_hw
    a = resize_uint8(a, ph, pw)
    t, _, l, _ = fit.pad
    return np.ascontiguousarray(a[t : t + fit.orig_h, l : l + fit.orig_w])
