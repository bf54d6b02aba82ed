"""EViT: keep the attentive tokens, fuse the inattentive ones (Liang et al., ICLR 2022), from the paper.

At a few blocks (by default at 1/4, 1/2 and 3/4 of the depth, the paper's 4th/7th/10th
of 12), after attention: keep the ``k`` tokens the class token attends to most (its
attention row, averaged over heads) and fuse all the others into one token, their
average weighted by that attention. Each stage keeps ``keep^(1/3)`` of what is left.

Cost of the scores: one ``q_cls K^T`` row per reducing block (``O(N D)``), read from the
host's own q/k projections by hooks, so the full attention keeps its fused SDPA kernel.
Hosts without a class token use the mean query of their protected latent tokens, or of
all tokens (a documented surrogate).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from vistok.reduce._state import Reduction
from vistok.reduce.base import REDUCERS, LayerContext, Reducer, prune_to, stage_plan, topk_mask

__all__ = ["EViT"]


class EViT(Reducer):
    """Top-k by class-token attention, with the rest fused into one token.

    Args:
        keep: fraction of tokens left after the last stage.
        stages: reducing blocks as fractions of the depth.
        fuse: fuse the dropped tokens into one token (else drop them).
    """

    name = "evit"
    needs = frozenset({"cls_attn"})

    def __init__(
        self, *, keep: float = 0.5, stages: Sequence[float] = (0.25, 0.5, 0.75), fuse: bool = True,
        prop_attn: bool = True,
    ):  # fmt: skip
        super().__init__(prop_attn=prop_attn)
        self.keep, self.stages, self.fuse = keep, tuple(stages), fuse

    def plan(self, n: int, depth: int) -> list[int]:
        return stage_plan(n, depth, keep=self.keep, stages=self.stages)

    def reduce(self, ctx: LayerContext) -> Reduction:
        assert ctx.cls_attn is not None
        n = ctx.x.shape[1]
        fuse = self.fuse and ctx.remove >= 2  # fusing one token into one token saves nothing
        k = n - ctx.remove - (1 if fuse else 0)
        score = ctx.cls_attn.float().masked_fill(ctx.size == 0, float("-inf"))
        kept = topk_mask(score, k)
        slot = kept.long().cumsum(1) - 1
        if fuse:
            # inattentive tokens go to one extra slot k, averaged with weights attention x size
            assign = torch.where(kept, slot, torch.full_like(slot, k))
            w = torch.where(kept, ctx.size, ctx.cls_attn.float() * ctx.size)
            return Reduction(assign, k + 1, weight=w)
        return prune_to(ctx, kept)


@REDUCERS.register("evit")
def evit(*, keep: float = 0.5, fuse: bool = True, prop_attn: bool = True) -> Reducer:
    """EViT: keep the tokens the class token attends to most; fuse the rest into one."""
    return EViT(keep=keep, fuse=fuse, prop_attn=prop_attn)
