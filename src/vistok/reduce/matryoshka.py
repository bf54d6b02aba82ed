"""M3-style Matryoshka (nested) token sets (Cai et al., 2024), from the paper's pooling.

M3 represents an image by nested token sets: the ``h x w`` grid average-pooled by factors
1, 2, 4, ... (every coarser set is the pooling of the finer one), and lets the user pick a
scale at inference. :func:`nested_pool` returns all the sets; the reducer keeps the
largest nested scale with at most ``keep`` of the tokens. Scales are coarse: a 14 x 14
grid nests as 14, 7, 4, 2, 1 per side (196, 49, 16, 4, 1 tokens; odd sides split into
near-equal cells), so ``keep = 0.75`` gives 49 tokens; the benchmark reports the fraction
actually kept.
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor

from vistok.reduce._state import Reduction
from vistok.reduce.base import REDUCERS, LayerContext, OneShotReducer, Reducer
from vistok.reduce.pool import grid_assign, need_grid

__all__ = ["Matryoshka", "nested_pool", "nested_scales"]


def nested_scales(grid: tuple[int, int]) -> list[tuple[int, int]]:
    """The nested grids: ``grid``, then each side halved (rounded up) down to ``1 x 1``."""
    out = [grid]
    while out[-1] != (1, 1):
        h, w = out[-1]
        out.append(((h + 1) // 2, (w + 1) // 2))
    return out


def nested_pool(x: Tensor, grid: tuple[int, int]) -> list[Tensor]:
    """All Matryoshka sets of patch tokens ``x [B, h w, D]``: ``[B, h_j w_j, D]`` for each
    nested scale, each the (area-weighted) average of its 2 x 2 children in the finer set."""
    sets, sizes = [x], torch.ones(x.shape[:2], device=x.device, dtype=x.dtype)
    scales = nested_scales(grid)
    for fine, coarse in itertools.pairwise(scales):
        idx = grid_assign(fine, coarse, x.device).expand(x.shape[0], -1)
        prev = sets[-1]
        m = coarse[0] * coarse[1]
        num = prev.new_zeros(x.shape[0], m, x.shape[-1]).scatter_add_(
            1, idx[..., None].expand(-1, -1, x.shape[-1]), prev * sizes[..., None]
        )
        sizes = sizes.new_zeros(x.shape[0], m).scatter_add_(1, idx, sizes)
        sets.append(num / sizes[..., None])
    return sets


class Matryoshka(OneShotReducer):
    """Keep the largest nested scale with at most ``keep`` of the tokens."""

    name = "matryoshka"

    def __init__(self, *, keep: float = 0.25, at: int = 1, prop_attn: bool = True):
        super().__init__(keep=keep, at=at, prop_attn=prop_attn)

    def scale(self, grid: tuple[int, int]) -> tuple[int, int]:
        n = grid[0] * grid[1]
        fits = [s for s in nested_scales(grid) if s[0] * s[1] <= self.keep * n + 1e-9]
        return fits[0]

    def reduce(self, ctx: LayerContext) -> Reduction:
        grid = need_grid(ctx, "matryoshka")
        scales = nested_scales(grid)
        target = self.scale(grid)
        # compose the nested assignments so each patch lands in its ancestor at `target`
        assign = torch.arange(grid[0] * grid[1], device=ctx.x.device)
        for fine, coarse in itertools.pairwise(scales):
            if fine == target:
                break
            assign = grid_assign(fine, coarse, ctx.x.device)[assign]
        return Reduction(assign.expand(ctx.x.shape[0], -1), target[0] * target[1])


@REDUCERS.register("matryoshka")
def matryoshka(*, keep: float = 0.25, at: int = 1, prop_attn: bool = True) -> Reducer:
    """M3-style nested pooling: the largest Matryoshka scale (grid halved per level) within keep."""
    return Matryoshka(keep=keep, at=at, prop_attn=prop_attn)
