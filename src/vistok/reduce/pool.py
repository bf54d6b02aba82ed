"""Spatial pooling: the other baseline. Averages the patch grid ``h x w`` into a coarser
``h' x w'`` grid with ``h' w' ~ keep h w`` (cell ``(i, j)`` goes to
``(i h' // h, j w' // w)``: a partition into near-equal rectangles), once, in block ``at``.
Needs the patch grid intact (no earlier reduction, a square token count)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vistok.reduce._state import Reduction
from vistok.reduce.base import REDUCERS, LayerContext, OneShotReducer, Reducer

__all__ = ["Pool", "grid_assign"]


def grid_assign(grid: tuple[int, int], out: tuple[int, int], device: torch.device) -> Tensor:
    """Long ``[h w]``: the cell of an ``out`` grid each cell of ``grid`` (row-major) falls in."""
    (h, w), (h2, w2) = grid, out
    rows = torch.arange(h, device=device) * h2 // h
    cols = torch.arange(w, device=device) * w2 // w
    return (rows[:, None] * w2 + cols[None, :]).reshape(-1)


def need_grid(ctx: LayerContext, who: str) -> tuple[int, int]:
    if ctx.grid is None:
        raise ValueError(
            f"{who} needs the patch grid: reduce before any other reduction, with a square token count"
        )
    return ctx.grid


class Pool(OneShotReducer):
    """Average-pool the patch grid to ``~keep`` of its tokens."""

    name = "pool"

    def __init__(self, *, keep: float = 0.5, at: int = 1, prop_attn: bool = True):
        super().__init__(keep=keep, at=at, prop_attn=prop_attn)

    def out_grid(self, grid: tuple[int, int]) -> tuple[int, int]:
        h, w = grid
        f = math.sqrt(self.keep)
        return max(1, round(h * f)), max(1, round(w * f))

    def reduce(self, ctx: LayerContext) -> Reduction:
        grid = need_grid(ctx, "pool")
        out = self.out_grid(grid)
        assign = grid_assign(grid, out, ctx.x.device).expand(ctx.x.shape[0], -1)
        return Reduction(assign, out[0] * out[1])


@REDUCERS.register("pool")
def pool(*, keep: float = 0.5, at: int = 1, prop_attn: bool = True) -> Reducer:
    """Baseline: average-pool the patch grid to ~keep of its tokens, once, in block `at`."""
    return Pool(keep=keep, at=at, prop_attn=prop_attn)
