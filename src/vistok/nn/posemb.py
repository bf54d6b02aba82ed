"""Position embeddings: fixed sin-cos (1D/2D) and learned tables, both resizable.

A 2D embedding made for an ``h x w`` grid is used at another grid size by resampling:
learned tables are interpolated bicubically; sin-cos tables are evaluated at the new
positions scaled into the native range. Both are what lets a ViT run at resolutions it
was not trained at.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PosEmb1d", "PosEmb2d", "interpolate_grid", "sincos_1d", "sincos_2d"]


def sincos_1d(positions: Tensor, dim: int, *, base: float = 10000.0) -> Tensor:
    """Transformer sin-cos features: float ``positions [L]`` -> ``[L, dim]`` (``dim`` even)."""
    if dim % 2:
        raise ValueError(f"sin-cos embedding width must be even, got {dim}")
    omega = torch.arange(dim // 2, dtype=torch.float64, device=positions.device) / (dim / 2)
    omega = 1.0 / base**omega
    angles = positions.double()[:, None] * omega[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_2d(height: int, width: int, dim: int, *, native: tuple[int, int] | None = None) -> Tensor:
    """2D sin-cos table ``[height * width, dim]`` (rows first; half the channels per axis).

    Args:
        native: the grid the model was trained on; positions of another grid are scaled
            into it (interpolation, not extrapolation). ``None``: the grid itself.
    """
    if dim % 4:
        raise ValueError(f"2D sin-cos embedding width must be a multiple of 4, got {dim}")
    nh, nw = native or (height, width)
    ys = torch.arange(height, dtype=torch.float64) * (nh / height)
    xs = torch.arange(width, dtype=torch.float64) * (nw / width)
    ey = sincos_1d(ys, dim // 2)[:, None, :].expand(height, width, dim // 2)
    ex = sincos_1d(xs, dim // 2)[None, :, :].expand(height, width, dim // 2)
    return torch.cat([ey, ex], dim=-1).reshape(height * width, dim)


def interpolate_grid(table: Tensor, old: tuple[int, int], new: tuple[int, int]) -> Tensor:
    """Resample a ``[old_h * old_w, D]`` table to ``[new_h * new_w, D]`` (bicubic)."""
    if tuple(old) == tuple(new):
        return table
    d = table.shape[-1]
    grid = table.reshape(1, old[0], old[1], d).permute(0, 3, 1, 2)
    out = F.interpolate(grid.float(), size=new, mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(new[0] * new[1], d).to(table.dtype)


class PosEmb2d(nn.Module):
    """Position embedding for an ``h x w`` token grid; ``forward(h, w) -> [h * w, dim]``.

    Args:
        grid: the native grid ``(h, w)`` (training resolution / patch size).
        dim: embedding width.
        kind: ``"learned"`` (table, bicubic-interpolated off the native grid) or
            ``"sincos"`` (fixed; no parameters).
    """

    def __init__(self, grid: tuple[int, int], dim: int, kind: Literal["learned", "sincos"] = "learned"):
        super().__init__()
        self.grid, self.dim, self.kind = (int(grid[0]), int(grid[1])), dim, kind
        if kind == "learned":
            self.table = nn.Parameter(torch.empty(self.grid[0] * self.grid[1], dim))
            with torch.no_grad():
                # start from sin-cos at the scale of trunc-normal(0.02): smooth, so it interpolates
                init = sincos_2d(*self.grid, dim) if dim % 4 == 0 else torch.randn(self.table.shape)
                self.table.copy_(init * 0.02)
        elif kind == "sincos":
            self.register_buffer("table", sincos_2d(*self.grid, dim), persistent=False)
        else:
            raise ValueError(f"position embedding kind must be 'learned' or 'sincos', got {kind!r}")

    def forward(self, height: int, width: int) -> Tensor:
        """Float ``[height * width, dim]`` for a ``height x width`` grid."""
        if (height, width) == self.grid:
            return self.table
        if self.kind == "sincos":
            return sincos_2d(height, width, self.dim, native=self.grid).to(self.table)
        return interpolate_grid(self.table, self.grid, (height, width))


class PosEmb1d(nn.Module):
    """Learned (or sin-cos) embedding for ``length`` sequence positions: ``forward(n) -> [n, dim]``
    (the first ``n`` rows; ``n <= length``)."""

    def __init__(self, length: int, dim: int, kind: Literal["learned", "sincos"] = "learned"):
        super().__init__()
        self.length, self.kind = length, kind
        init = sincos_1d(torch.arange(length), dim) if dim % 2 == 0 else torch.randn(length, dim)
        if kind == "learned":
            self.table = nn.Parameter(init * 0.02)
        elif kind == "sincos":
            self.register_buffer("table", init, persistent=False)
        else:
            raise ValueError(f"position embedding kind must be 'learned' or 'sincos', got {kind!r}")

    def forward(self, n: int | None = None) -> Tensor:
        n = self.length if n is None else n
        if n > self.length:
            raise ValueError(f"asked for {n} positions, this embedding has {self.length}")
        return self.table[:n]
