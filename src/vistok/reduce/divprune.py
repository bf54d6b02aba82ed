"""DivPrune: diversity-based token pruning (Alvar et al., CVPR 2025), from the paper.

Token pruning as a Max-Min Diversity Problem: keep the ``k`` tokens whose smallest
pairwise cosine distance ``1 - cos`` is as large as possible, solved greedily: start from
the token whose nearest neighbour is farthest, then repeatedly add the token farthest
(by min distance) from those kept. The greedy solution is within a factor 2 of the
optimum for metric distances (the ranking equals the one under the metric
``||a/|a| - b/|b|||``). Runs once, in block ``at`` (default 1), on the block's tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from vistok.reduce._greedy import farthest_first
from vistok.reduce._state import Reduction
from vistok.reduce.base import REDUCERS, LayerContext, OneShotReducer, Reducer, prune_to

__all__ = ["DivPrune"]


class DivPrune(OneShotReducer):
    """Max-min diversity pruning.

    Args:
        keep: fraction of tokens kept.
        at: block that prunes (0-based; negative counts from the end).
    """

    name = "divprune"

    def __init__(self, *, keep: float = 0.5, at: int = 1):
        super().__init__(keep=keep, at=at)

    def reduce(self, ctx: LayerContext) -> Reduction:
        xn = F.normalize(ctx.x.float(), dim=-1)
        dist = (1.0 - xn @ xn.transpose(1, 2)).clamp_min(0.0)  # cosine distance [B, n, n]
        allowed = ctx.size > 0
        # first pick: the token whose nearest other token is farthest
        eye = torch.eye(dist.shape[1], dtype=torch.bool, device=dist.device)
        nn_dist = dist.masked_fill(eye | ~allowed[:, None, :], float("inf")).amin(-1)
        first = nn_dist.masked_fill(~allowed, float("-inf")).argmax(1)
        kept = farthest_first(dist, ctx.x.shape[1] - ctx.remove, first, allowed)
        return prune_to(ctx, kept)


@REDUCERS.register("divprune")
def divprune(*, keep: float = 0.5, at: int = 1) -> Reducer:
    """DivPrune: keep a max-min diverse subset of tokens (greedy), once, in block `at`."""
    return DivPrune(keep=keep, at=at)
