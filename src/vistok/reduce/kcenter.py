"""Greedy k-center token selection (the visual-token part of ToDRE), from the paper's idea.

Keep ``k`` tokens that *cover* all the others: greedy k-center (Gonzalez) in Euclidean
feature space, the first center being the token farthest from the mean token, each next
one the token farthest from its nearest center. Differs from DivPrune in the distance
(Euclidean on raw features, which weighs token norm) and the seed. Runs once, in block ``at``.
"""

from __future__ import annotations

import torch

from vistok.reduce._greedy import farthest_first
from vistok.reduce._state import Reduction
from vistok.reduce.base import REDUCERS, LayerContext, OneShotReducer, Reducer, prune_to

__all__ = ["KCenter"]


class KCenter(OneShotReducer):
    """Greedy k-center pruning.

    Args:
        keep: fraction of tokens kept.
        at: block that prunes.
    """

    name = "kcenter"

    def __init__(self, *, keep: float = 0.5, at: int = 1):
        super().__init__(keep=keep, at=at)

    def reduce(self, ctx: LayerContext) -> Reduction:
        x = ctx.x.float()
        allowed = ctx.size > 0
        dist = torch.cdist(x, x)  # [B, n, n]
        w = allowed.float()[..., None]
        mean = (x * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1.0)
        far = (x - mean).norm(dim=-1).masked_fill(~allowed, float("-inf"))
        kept = farthest_first(dist, x.shape[1] - ctx.remove, far.argmax(1), allowed)
        return prune_to(ctx, kept)


@REDUCERS.register("kcenter")
def kcenter(*, keep: float = 0.5, at: int = 1) -> Reducer:
    """Greedy k-center: keep tokens that cover the rest (farthest-first), once, in block `at`."""
    return KCenter(keep=keep, at=at)
