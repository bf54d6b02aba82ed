"""The one interface every token-reduction method implements, its context and schedules.

A :class:`Reducer` says *when* to reduce (:meth:`Reducer.plan`: how many tokens to remove
in each block) and *how* (:meth:`Reducer.reduce`: a :class:`~vistok.reduce._state.Reduction`
for one block). The patching machinery (:mod:`vistok.reduce.patch`) calls ``reduce`` inside
the block, after the attention residual and before the MLP (ToMe's placement), so the MLP,
which costs twice the attention projections, already runs on fewer tokens.

``keep`` means the fraction of reducible tokens left after the last block. ``r`` (where a
method takes it) is the number removed per block, ToMe-style.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
from torch import Tensor

from vistok.configurable import Configurable
from vistok.reduce._state import Reduction
from vistok.registry import Registry

__all__ = [
    "REDUCERS",
    "LayerContext",
    "OneShotReducer",
    "Reducer",
    "compact",
    "one_shot_plan",
    "prune_to",
    "spread_plan",
    "stage_plan",
]

Need = Literal["keys", "cls_attn"]


@dataclass
class LayerContext:
    """What a reducer sees inside one block (middle tokens only).

    Attributes:
        x: float ``[B, n, D]`` tokens after the attention residual.
        size: float ``[B, n]`` input patches per token (0 = padding).
        remove: how many tokens the plan removes here (per image; threshold methods
            remove a variable number around it).
        layer: block index (0-based).
        keys: float ``[B, n, Dh]`` attention keys averaged over heads (if the reducer needs them).
        cls_attn: float ``[B, n]`` attention of the class (or reference) query to each
            token, averaged over heads (if needed); rows sum to <= 1 (protected tokens get the rest).
        grid: ``(h, w)`` of the middle tokens while they still are the patch grid, else None.
    """

    x: Tensor
    size: Tensor
    remove: int
    layer: int
    keys: Tensor | None = None
    cls_attn: Tensor | None = None
    grid: tuple[int, int] | None = None

    @property
    def padded(self) -> Tensor | None:
        """Bool ``[B, n]`` True on padding slots, or None when there are none."""
        pad = self.size == 0
        return pad if bool(pad.any()) else None


class Reducer(Configurable):
    """Base class: subclasses set ``needs`` and implement :meth:`plan` and :meth:`reduce`.

    Args:
        prop_attn: proportional attention (``log size`` added to the logits) after merges.
    """

    name: ClassVar[str] = ""
    needs: ClassVar[frozenset[Need]] = frozenset()

    def __init__(self, *, prop_attn: bool = True):
        self.prop_attn = prop_attn

    def plan(self, n: int, depth: int) -> list[int]:
        """Tokens to remove in each of ``depth`` blocks, for ``n`` reducible tokens."""
        raise NotImplementedError

    def reduce(self, ctx: LayerContext) -> Reduction:
        """One reduction step (see :class:`LayerContext`)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in getattr(self, "init_config", {}).items())
        return f"{type(self).__name__}({args})"


REDUCERS: Registry[Reducer] = Registry("reducer")


# ---- schedules ----------------------------------------------------------------------------
def _check_keep(keep: float) -> float:
    if not 0.0 < keep <= 1.0:
        raise ValueError(f"keep must be in (0, 1], got {keep}")
    return keep


def spread_plan(n: int, depth: int, *, keep: float | None, r: int | Sequence[int] | None) -> list[int]:
    """Per-block removal for methods that reduce in every block (ToMe, DyMU).

    ``r`` (an int for every block, or one per block) wins over ``keep``; ``keep`` removes
    ``round((1 - keep) n)`` tokens in total, spread evenly (earlier blocks take the remainder).
    """
    if r is not None:
        if isinstance(r, int):
            return [r] * depth
        rs = list(r)
        if len(rs) != depth:
            raise ValueError(f"r has {len(rs)} entries for {depth} blocks")
        return rs
    total = n - round(_check_keep(1.0 if keep is None else keep) * n)
    base, extra = divmod(total, depth)
    return [base + (1 if i < extra else 0) for i in range(depth)]


class OneShotReducer(Reducer):
    """A reducer that removes all its tokens once, in block ``at`` (pruning and pooling).

    Args:
        keep: fraction of tokens kept.
        at: block that reduces (0-based; negative counts from the end).
        prop_attn: proportional attention after the reduction.
    """

    def __init__(self, *, keep: float, at: int = 1, prop_attn: bool = True):
        super().__init__(prop_attn=prop_attn)
        self.keep, self.at = keep, at

    def plan(self, n: int, depth: int) -> list[int]:
        return one_shot_plan(n, depth, keep=self.keep, at=self.at)


def one_shot_plan(n: int, depth: int, *, keep: float, at: int) -> list[int]:
    """Remove ``n - round(keep n)`` tokens once, in block ``at`` (negative counts from the end)."""
    if not -depth <= at < depth:
        raise ValueError(f"at={at} is outside the {depth} blocks")
    plan = [0] * depth
    plan[at % depth] = n - max(1, round(_check_keep(keep) * n))
    return plan


def stage_plan(n: int, depth: int, *, keep: float, stages: Sequence[float]) -> list[int]:
    """EViT-style: reduce at the blocks at fractions ``stages`` of the depth, each keeping
    ``keep ** (1 / len(stages))`` of what is left, so ``keep`` is left at the end."""
    rate = _check_keep(keep) ** (1.0 / len(stages))
    plan, left = [0] * depth, n
    for f in stages:
        i = min(depth - 1, int(f * depth))
        target = max(1, round(left * rate))
        plan[i] += left - target
        left = target
    return plan


# ---- building reductions --------------------------------------------------------------------
def compact(kept: Tensor, target: Tensor) -> tuple[Tensor, int]:
    """Slots for a keep/merge decision.

    Args:
        kept: bool ``[B, n]``, tokens that get their own slot (in their original order).
        target: long ``[B, n]``, for tokens not kept, the index of the kept token they go to.

    Returns:
        ``(assign [B, n], m)`` with ``m`` the largest kept count in the batch.
    """
    slot = kept.long().cumsum(1) - 1  # slot of each kept token, order preserved
    assign = torch.where(kept, slot, slot.gather(1, target))
    return assign, int(kept.sum(1).max())


def prune_to(ctx: LayerContext, kept: Tensor) -> Reduction:
    """Pruning as a reduction: kept tokens keep their slot, the others are dropped (weight
    and mass 0). Dropped tokens are still *assigned* to their most similar kept token
    (cosine on the features), so hosts that restore the grid (``vit2d``) can fill them."""
    xn = torch.nn.functional.normalize(ctx.x.float(), dim=-1)
    sim = xn @ xn.transpose(1, 2)  # [B, n, n]
    sim = sim.masked_fill(~kept[:, None, :], float("-inf"))
    target = sim.argmax(-1)
    assign, m = compact(kept, target)
    zero = (~kept).float()
    return Reduction(assign, m, weight=ctx.size * (1 - zero), mass=ctx.size * (1 - zero))


def topk_mask(score: Tensor, k: int) -> Tensor:
    """Bool ``[B, n]``: True at the ``k`` largest entries of ``score [B, n]`` per row."""
    idx = score.topk(k, dim=1).indices
    return torch.zeros_like(score, dtype=torch.bool).scatter_(1, idx, True)


def square_grid(n: int) -> tuple[int, int] | None:
    """``(s, s)`` when ``n`` is a square number, else None."""
    s = math.isqrt(n)
    return (s, s) if s * s == n else None
