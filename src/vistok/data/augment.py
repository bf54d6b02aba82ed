"""Views of one image for pre-tokenization: none, horizontal flip, ten-crop (as LlamaGen).

Each augmentation turns a decoded uint8 ``[H, W, 3]`` image into a fixed number of
``size`` x ``size`` uint8 views, using the protocol's geometry (pad to square, centred,
then Pillow bicubic resize; :mod:`vistok.data.transforms`):

- ``none``: 1 view, the protocol's fit of the image.
- ``flip``: 2 views, the fit and its mirror (LlamaGen's default extraction stores both).
- ``ten-crop``: 10 views: the image is fitted to ``round(size * crop_range)`` (LlamaGen's
  ``crop_range`` 1.1), then cropped at the four corners and the centre, then the same five
  crops of the mirrored image (torchvision ``TenCrop`` order).

View 0 of ``none`` and ``flip`` is exactly what ``vistok reconstruct --size`` encodes, so
decoding it and undoing the fit gives the image ``reconstruct`` writes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from vistok.data.transforms import Fit, PadMode, apply_fit, plan_fit

__all__ = ["AUGMENTATIONS", "Augmentation", "Views"]


@dataclass(frozen=True)
class Views:
    """The views of one image and the fit they were cut from (``fit.size_h`` may exceed ``size``)."""

    fit: Fit
    images: list[np.ndarray]  # uint8 [size, size, 3] each, in view order


@dataclass(frozen=True)
class Augmentation:
    """A named way to make ``num_views`` views; ``undoable`` when view 0 is the plain fit."""

    name: str
    num_views: int
    undoable: bool
    make: Callable[[np.ndarray, int, PadMode, float], Views]


def _fit(image: np.ndarray, size: int, pad_mode: PadMode) -> tuple[Fit, np.ndarray]:
    fit = plan_fit(*image.shape[:2], size=size, pad_mode=pad_mode)
    return fit, apply_fit(image, fit)


def _none(image: np.ndarray, size: int, pad_mode: PadMode, crop_range: float) -> Views:
    fit, view = _fit(image, size, pad_mode)
    return Views(fit, [view])


def _flip(image: np.ndarray, size: int, pad_mode: PadMode, crop_range: float) -> Views:
    fit, view = _fit(image, size, pad_mode)
    return Views(fit, [view, np.ascontiguousarray(view[:, ::-1])])


def _five_crops(big: np.ndarray, size: int) -> list[np.ndarray]:
    """Top-left, top-right, bottom-left, bottom-right, centre (torchvision ``FiveCrop`` order)."""
    h, w = big.shape[:2]
    top, left = round((h - size) / 2), round((w - size) / 2)
    corners = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), (top, left)]
    return [np.ascontiguousarray(big[y : y + size, x : x + size]) for y, x in corners]


def _ten_crop(image: np.ndarray, size: int, pad_mode: PadMode, crop_range: float) -> Views:
    if crop_range < 1.0:
        raise ValueError(f"crop_range must be >= 1, got {crop_range}")
    fit, big = _fit(image, round(size * crop_range), pad_mode)
    return Views(fit, _five_crops(big, size) + _five_crops(np.ascontiguousarray(big[:, ::-1]), size))


AUGMENTATIONS: dict[str, Augmentation] = {
    a.name: a
    for a in (
        Augmentation("none", 1, True, _none),
        Augmentation("flip", 2, True, _flip),
        Augmentation("ten-crop", 10, False, _ten_crop),
    )
}
