"""Patchify / unpatchify between images and token sequences."""

from __future__ import annotations

from torch import Tensor

__all__ = ["patchify", "unpatchify"]


def patchify(x: Tensor, p: int) -> Tensor:
    """``[B, C, H, W] -> [B, (H/p)(W/p), C p p]`` (rows of patches; channels slowest in a patch)."""
    b, c, h, w = x.shape
    x = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // p) * (w // p), c * p * p)


def unpatchify(x: Tensor, p: int, grid: tuple[int, int], channels: int = 3) -> Tensor:
    """Inverse of :func:`patchify`: ``[B, h w, C p p] -> [B, C, h p, w p]``."""
    b = x.shape[0]
    h, w = grid
    x = x.reshape(b, h, w, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, h * p, w * p)
