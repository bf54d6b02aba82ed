"""Random pruning: the baseline every pruning paper should beat. Keeps a uniformly random
subset of tokens per image, once, in block ``at``; seeded and reproducible."""

from __future__ import annotations

import torch

from vistok.reduce._state import Reduction
from vistok.reduce.base import REDUCERS, LayerContext, OneShotReducer, Reducer, prune_to, topk_mask

__all__ = ["RandomPrune"]


class RandomPrune(OneShotReducer):
    """Keep a random ``keep`` fraction of the tokens in block ``at``.

    Args:
        seed: seed of the generator (drawn anew for every forward, from this seed).
    """

    name = "random"

    def __init__(self, *, keep: float = 0.5, at: int = 1, seed: int = 0):
        super().__init__(keep=keep, at=at)
        self.seed = seed

    def reduce(self, ctx: LayerContext) -> Reduction:
        g = torch.Generator().manual_seed(self.seed)
        score = torch.rand(ctx.size.shape, generator=g).to(ctx.size.device)
        score = score.masked_fill(ctx.size == 0, -1.0)
        return prune_to(ctx, topk_mask(score, ctx.x.shape[1] - ctx.remove))


@REDUCERS.register("random")
def random(*, keep: float = 0.5, at: int = 1, seed: int = 0) -> Reducer:
    """Baseline: keep a random subset of tokens (seeded), once, in block `at`."""
    return RandomPrune(keep=keep, at=at, seed=seed)
