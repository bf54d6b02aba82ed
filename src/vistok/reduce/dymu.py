"""DyMU-style dynamic merging (Wang et al., 2025), from the paper's merging step (DToMe).

Like ToMe's bipartite matching, but block ``l`` merges *every* edge whose similarity
exceeds a threshold ``tau_l`` instead of a fixed ``r``: simple images lose more tokens,
busy ones fewer, so the count varies per image. Thresholds are calibrated as in the paper:
``tau_l`` is the batch mean of the ``r_l``-th largest edge similarity, so that on average
``r_l`` tokens merge. Without fixed ``thresholds``, every batch calibrates its own (outputs
then depend on the batch); :meth:`DyMU.freeze` fixes the running means of the batches
seen so far. A batch with different counts is padded (size-0 slots, masked in attention).
"""

from __future__ import annotations

from collections.abc import Sequence

from vistok.reduce._bipartite import bipartite_scores, merge_decision
from vistok.reduce._state import Reduction
from vistok.reduce.base import REDUCERS, LayerContext, Reducer, compact, spread_plan

__all__ = ["DyMU"]


class DyMU(Reducer):
    """Threshold merging with a variable count per image.

    Args:
        keep: average fraction of tokens left after the last block (sets ``r_l``).
        r: average tokens merged per block (wins over ``keep``).
        thresholds: one similarity threshold per block (``None``: calibrate per batch).
    """

    name = "dymu"
    needs = frozenset({"keys"})

    def __init__(
        self,
        *,
        keep: float | None = None,
        r: int | Sequence[int] | None = None,
        thresholds: Sequence[float] | None = None,
        prop_attn: bool = True,
    ):
        super().__init__(prop_attn=prop_attn)
        self.keep, self.r = keep, r
        self.thresholds = None if thresholds is None else list(thresholds)
        self._seen: dict[int, tuple[float, int]] = {}  # block -> (sum of thresholds, batches)

    def plan(self, n: int, depth: int) -> list[int]:
        return spread_plan(n, depth, keep=self.keep, r=self.r)

    def freeze(self) -> list[float]:
        """Fix the thresholds to the mean of those calibrated so far (blocks never calibrated:
        ``+inf``, i.e. no merging); returns them."""
        depth = max(self._seen, default=-1) + 1
        self.thresholds = [
            self._seen[i][0] / self._seen[i][1] if i in self._seen else float("inf") for i in range(depth)
        ]
        return self.thresholds

    def reduce(self, ctx: LayerContext) -> Reduction:
        assert ctx.keys is not None
        n = ctx.x.shape[1]
        padded = ctx.padded
        best, match = bipartite_scores(ctx.keys, padded)
        if self.thresholds is not None and ctx.layer < len(self.thresholds):
            tau = self.thresholds[ctx.layer]
        else:
            real = best if padded is None else best.masked_fill(padded[:, ::2], float("-inf"))
            r = min(ctx.remove, best.shape[1])
            tau = float(real.sort(dim=1, descending=True).values[:, r - 1].mean())
            s, c = self._seen.get(ctx.layer, (0.0, 0))
            self._seen[ctx.layer] = (s + tau, c + 1)
        merged = best > tau
        assign, m = compact(*merge_decision(merged, match, n))
        return Reduction(assign, m)


@REDUCERS.register("dymu")
def dymu(*, keep: float | None = None, r: int | None = None, prop_attn: bool = True) -> Reducer:
    """DyMU-style threshold merging: a variable token count per image (batched with padding)."""
    return DyMU(keep=keep, r=r, prop_attn=prop_attn)
