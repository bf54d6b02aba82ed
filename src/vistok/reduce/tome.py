"""ToMe: Token Merging (Bolya et al., ICLR 2023), from the paper.

In every block, between attention and MLP: split the tokens alternately into two sets
A and B, connect each A token to its most similar B token (cosine of the attention keys,
averaged over heads), and merge the ``r`` most similar edges by a size-weighted average.
Sizes are tracked and attention adds ``log(size)`` (proportional attention). The class
token is never merged (it is a protected prefix token). Cost per block: one
``[n/2 x n/2]`` similarity product and a top-``r``, all batched (no loop over tokens).
"""

from __future__ import annotations

from collections.abc import Sequence

from vistok.reduce._bipartite import bipartite_scores, merge_decision
from vistok.reduce._state import Reduction
from vistok.reduce.base import REDUCERS, LayerContext, Reducer, compact, spread_plan

__all__ = ["ToMe"]


class ToMe(Reducer):
    """Bipartite soft matching with proportional attention.

    Args:
        keep: fraction of tokens left after the last block (spread evenly over blocks).
        r: tokens merged per block (an int, or one per block); wins over ``keep``.
        prop_attn: proportional attention.
    """

    name = "tome"
    needs = frozenset({"keys"})

    def __init__(
        self, *, keep: float | None = None, r: int | Sequence[int] | None = None, prop_attn: bool = True
    ):
        super().__init__(prop_attn=prop_attn)
        self.keep, self.r = keep, r

    def plan(self, n: int, depth: int) -> list[int]:
        return spread_plan(n, depth, keep=self.keep, r=self.r)

    def reduce(self, ctx: LayerContext) -> Reduction:
        assert ctx.keys is not None
        n = ctx.x.shape[1]
        best, match = bipartite_scores(ctx.keys, ctx.padded)
        r = min(ctx.remove, best.shape[1])
        src = best.topk(r, dim=1).indices  # the r most similar A -> B edges
        merged = best.new_zeros(best.shape, dtype=bool).scatter_(1, src, True)
        assign, m = compact(*merge_decision(merged, match, n))
        return Reduction(assign, m)


@REDUCERS.register("tome")
def tome(*, keep: float | None = None, r: int | None = None, prop_attn: bool = True) -> Reducer:
    """ToMe: merge the r most similar token pairs in every block (bipartite soft matching)."""
    return ToMe(keep=keep, r=r, prop_attn=prop_attn)
