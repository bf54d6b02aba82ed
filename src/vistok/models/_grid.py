"""Declared protocol of 2D tokenizers whose tokens are a continuous latent grid.

Two-stage models (``latent1d-grid``: TiTok's and FlexTok's recipe) read a frozen 2D tokenizer's
latent grid and render their predictions through its decoder. vistok's own 2D families expose
that through :class:`~vistok.models._base.LearnedTokenizer`; a published continuous family
(``taesd``/``taef2``, ``mar-kl16``, ``cosmos-ci*``) declares it by implementing this protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from torch import Tensor

__all__ = ["ContinuousGrid"]


@runtime_checkable
class ContinuousGrid(Protocol):
    """A 2D tokenizer with a continuous latent grid ``[B, C, H/stride, W/stride]``.

    Attributes:
        stride: pixels per grid position along each side.
    """

    stride: int

    def encode_grid(self, images: Tensor) -> Tensor:
        """Float ``[B, 3, H, W]`` in ``[0, 1]`` -> float32 latents ``[B, C, H/stride, W/stride]``
        (a Gaussian posterior's mean; what ``encode`` stores, before its float16 rounding)."""
        ...

    def decode_grid(self, grid: Tensor) -> Tensor:
        """Float latents ``[B, C, h, w]`` -> images ``[B, 3, h stride, w stride]`` on the
        ``[0, 1]`` scale, **not clamped** and differentiable (a stage-2 fine-tune trains it)."""
        ...
