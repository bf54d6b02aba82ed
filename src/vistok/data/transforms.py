"""Fitting images to what a tokenizer accepts, and undoing it (the protocol's geometry).

The one obvious call for any image and any tokenizer::

    x, fit = fit_to(tok, images)               # float [B, 3, H, W] -> what tok accepts
    recon = unfit(tok.decode(tok.encode(x)), fit)  # back to [B, 3, H, W]

:func:`fit_for` is the single answer to "which size does this tokenizer take?", shared
by :func:`fit_to`, the CLI (:mod:`vistok.pipeline`) and the benchmark. The geometry works
on uint8 ``[H, W, 3]`` arrays, as the protocol keeps images 8-bit between steps. Resizing
uses Pillow's bicubic filter (antialiased when shrinking).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np
from PIL import Image

if TYPE_CHECKING:
    from torch import Tensor

__all__ = [
    "Fit",
    "PadMode",
    "apply_fit",
    "fit_for",
    "fit_to",
    "plan_fit",
    "resize_uint8",
    "undo_fit",
    "unfit",
]

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


class _Geometry(Protocol):
    """What a tokenizer states about the sizes it accepts (see :class:`vistok.Tokenizer`)."""

    input_size: int | None
    stride: int


def fit_for(
    tokenizer: _Geometry, h: int, w: int, *, size: int | None = None, pad_mode: PadMode = "reflect"
) -> Fit:
    """The fit of an ``h`` x ``w`` image for ``tokenizer``.

    A tokenizer with a fixed ``input_size`` always gets pad-to-square + resize to it;
    otherwise ``size`` (the protocol's evaluation size) when given, else padding
    (bottom/right) to a multiple of the tokenizer's ``stride`` at the native resolution.
    """
    target = tokenizer.input_size or size
    return plan_fit(h, w, size=target, stride=tokenizer.stride, pad_mode=pad_mode)


def _is_identity(fit: Fit) -> bool:
    return not any(fit.pad) and (fit.size_h, fit.size_w) == (fit.orig_h, fit.orig_w)


def fit_to(
    tokenizer: _Geometry, images: Tensor, *, size: int | None = None, pad_mode: PadMode = "reflect"
) -> tuple[Tensor, Fit]:
    """Fit float images of any size to what ``tokenizer`` accepts (the protocol's geometry).

    Args:
        tokenizer: any :class:`vistok.Tokenizer` (reads ``input_size`` and ``stride``).
        images: float ``[B, 3, H, W]`` in ``[0, 1]`` (one size per batch).
        size: pad to square and resize to ``size`` x ``size`` (the evaluation size);
            ``None`` keeps the native resolution when the tokenizer allows it.
        pad_mode: how padding is filled (``reflect``, ``constant`` or ``edge``).

    Returns:
        ``(fitted, fit)``: float ``[B, 3, h, w]`` in ``[0, 1]`` that ``tokenizer.encode``
        accepts, and the :class:`Fit` that :func:`unfit` undoes. Images that already fit
        are returned unchanged; otherwise the fitted images are 8-bit values (exact for
        images read from 8-bit files), as in the CLI and the benchmark.
    """
    from vistok.models.codecs import from_uint8, to_uint8

    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"fit_to: images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    fit = fit_for(tokenizer, int(images.shape[-2]), int(images.shape[-1]), size=size, pad_mode=pad_mode)
    if _is_identity(fit):
        return images, fit
    fitted = [apply_fit(a, fit) for a in to_uint8(images)]
    return from_uint8(fitted).to(images.device), fit


def unfit(images: Tensor, fit: Fit) -> Tensor:
    """Undo :func:`fit_to` on reconstructions: float ``[B, 3, h, w]`` -> ``[B, 3, H, W]`` in ``[0, 1]``.

    Resizes back to the padded size and crops the padding. The result is rounded to 8 bits,
    as a saved image (and the protocol) would be, unless the fit was the identity.
    """
    from vistok.models.codecs import from_uint8, to_uint8

    if _is_identity(fit):
        return images
    if tuple(images.shape[-2:]) != (fit.size_h, fit.size_w):
        raise ValueError(
            f"unfit: images are {images.shape[-2]}x{images.shape[-1]}, the fit produced "
            f"{fit.size_h}x{fit.size_w}"
        )
    back = [undo_fit(a, fit) for a in to_uint8(images)]
    return from_uint8(back).to(images.device)
