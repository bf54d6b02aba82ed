"""Held-out evaluation during model development: the views, and PSNR per token budget.

This is the quick check used to compare designs and recipes (docs/training.md); the
numbers of a shipped model come from ``vistok bench`` on the same held-out images.

Views: every held-out image gives two ``size x size`` views, its largest centred square
resized to ``size`` (the whole scene) and the centre ``size`` crop after resizing its
short side to ``2 * size`` (detail at twice the scale).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vistok.data.images import load_image_uint8
from vistok.tokenizer import Tokenizer
from vistok.train.data import center_crop

__all__ = ["evaluation_views", "psnr_per_image", "reconstruct_at"]


def evaluation_views(paths: list[str], size: int = 256) -> Tensor:
    """Two views of each image (see the module docstring): float ``[2 N, 3, size, size]`` in [0, 1]."""
    views = []
    for p in paths:
        arr = load_image_uint8(p)
        views.append(center_crop(arr, size))
        h, w = arr.shape[:2]
        s = 2 * size / min(h, w)
        big = np.asarray(Image.fromarray(arr).resize((max(2 * size, round(w * s)), max(2 * size, round(h * s))),
                                                     Image.Resampling.BICUBIC))  # fmt: skip
        y0, x0 = (big.shape[0] - size) // 2, (big.shape[1] - size) // 2
        views.append(big[y0 : y0 + size, x0 : x0 + size])
    return torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).float() / 255.0


def psnr_per_image(a: Tensor, b: Tensor) -> Tensor:
    """PSNR (dB, peak 1) of each pair of float ``[B, 3, H, W]`` images after 8-bit rounding: ``[B]``."""
    a8 = (a.clamp(0, 1) * 255).round() / 255
    b8 = (b.clamp(0, 1) * 255).round() / 255
    mse = (a8 - b8).double().pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return -10 * torch.log10(mse)


@torch.no_grad()
def reconstruct_at(
    tok: Tokenizer, images: Tensor, *, num_tokens: int | None = None, batch: int = 8
) -> Tensor:
    """Reconstructions of ``images`` at the evaluation size, in batches.

    Fixed-size tokenizers (``input_size``) see the images resized to their input and
    their output resized back (bicubic, antialiased), as in the benchmark protocol.
    """
    out = []
    size = images.shape[-1]
    native = tok.input_size
    for i in range(0, len(images), batch):
        x = images[i : i + batch]
        if native and native != size:
            x = torch.nn.functional.interpolate(
                x, size=(native, native), mode="bicubic", antialias=True
            ).clamp(0, 1)
        y = tok.reconstruct(x, num_tokens=num_tokens).float()
        if y.shape[-1] != size:
            y = torch.nn.functional.interpolate(y, size=(size, size), mode="bicubic", antialias=True)
        out.append(y.clamp(0, 1))
    return torch.cat(out)
