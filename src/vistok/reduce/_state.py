"""Per-forward token bookkeeping: sizes, padding and where each input token went.

A sequence is ``[prefix | middle | suffix]``: the prefix (class token) and the suffix
(latent tokens of 1D tokenizers) are protected; only the middle is reduced. Every
reduction is one :class:`Reduction`: an assignment of each current middle token to a new
slot, and the weights with which tokens are averaged into their slot. Merging, pruning,
fusing and pooling are all that one operation, so sizes, padding and source tracking are
handled once, here.

Sizes: ``size[b, i]`` is how many input patches token ``i`` stands for (float; 0 marks a
padding slot of an image that kept fewer tokens than others in its batch). Attention
adds ``log(size)`` to the logits (proportional attention), which is the same as attending
over ``size`` copies of the token, and ``log(0) = -inf`` masks padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Reduction", "TokenState", "merge_tokens"]


@dataclass
class Reduction:
    """One reduction step of the middle tokens ``[B, n, D]`` into ``m`` slots.

    Attributes:
        assign: long ``[B, n]``, the slot in ``0..m-1`` each token goes to.
        m: number of slots (the largest count in the batch; unused slots are padding).
        weight: float ``[B, n]`` averaging weight of each token in its slot (``None``: its
            size; 0 drops the token's features, as pruning does).
        mass: float ``[B, n]`` size a token adds to its slot (``None``: its size; 0 for
            pruned tokens, which are discarded rather than merged).
    """

    assign: Tensor
    m: int
    weight: Tensor | None = None
    mass: Tensor | None = None


def merge_tokens(x: Tensor, size: Tensor, red: Reduction) -> tuple[Tensor, Tensor]:
    """Apply ``red`` to middle tokens ``x [B, n, D]`` with sizes ``size [B, n]``.

    Returns ``(x [B, m, D], size [B, m])``: each slot is the weighted mean of the tokens
    assigned to it; a slot nobody contributes weight to is zero with size 0 (padding).
    """
    b, _, d = x.shape
    w = size if red.weight is None else red.weight
    mass = size if red.mass is None else red.mass
    idx = red.assign
    num = x.new_zeros(b, red.m, d).scatter_add_(
        1, idx[..., None].expand(-1, -1, d), x * w[..., None].to(x.dtype)
    )
    den = w.new_zeros(b, red.m).scatter_add_(1, idx, w)
    out = num / torch.where(den > 0, den, torch.ones_like(den))[..., None].to(x.dtype)
    new_size = size.new_zeros(b, red.m).scatter_add_(1, idx, mass)
    return out, new_size


class TokenState:
    """Bookkeeping for one forward pass through a patched encoder.

    Args:
        x: the full input sequence ``[B, N0, D]`` at the first block.
        prefix, suffix: protected token counts at the front and back.
        track_source: keep ``source [B, N0]`` (current index of every input token), needed
            by hosts that restore the full grid at the end (``vit2d``).
        prop_attn: add ``log(size)`` to attention logits (else only padding is masked).
    """

    def __init__(self, x: Tensor, *, prefix: int, suffix: int, track_source: bool, prop_attn: bool):
        b, n0, _ = x.shape
        self.prefix, self.suffix, self.prop_attn = prefix, suffix, prop_attn
        self.n0 = n0
        self.size: Tensor | None = None  # float [B, N]; None while every token has size 1
        self.source: Tensor | None = (
            torch.arange(n0, device=x.device).expand(b, n0).clone() if track_source else None
        )
        self.reductions = 0

    @property
    def grid_intact(self) -> bool:
        """True until the first reduction (the middle tokens still form the patch grid)."""
        return self.reductions == 0

    def middle(self, x: Tensor) -> Tensor:
        """The reducible tokens ``[B, n, D]`` of a full sequence ``x [B, N, D]``."""
        return x[:, self.prefix : x.shape[1] - self.suffix]

    def sizes(self, x: Tensor) -> Tensor:
        """Float ``[B, N]`` sizes of the current sequence (ones before any merge)."""
        if self.size is None:
            return torch.ones(x.shape[:2], device=x.device, dtype=torch.float32)
        return self.size

    def bias(self, dtype: torch.dtype) -> Tensor | None:
        """Additive attention bias ``[B, 1, 1, N]`` (``log size``, ``-inf`` on padding), or
        None when every token has size 1 (then the host's attention runs untouched)."""
        if self.size is None:
            return None
        if self.prop_attn:
            bias = self.size.log()
        else:
            bias = torch.zeros_like(self.size).masked_fill(self.size == 0, float("-inf"))
        return bias.to(dtype)[:, None, None, :]

    def valid(self) -> Tensor | None:
        """Bool ``[B, N]``: False on padding slots; None when there is no padding."""
        return None if self.size is None else self.size > 0

    def apply(self, x: Tensor, red: Reduction) -> Tensor:
        """Reduce the middle of ``x [B, N, D]`` by ``red``; returns ``[B, prefix + m + suffix, D]``.

        One ``scatter_add`` over the whole sequence (protected tokens map to their own
        slots), so no slicing and concatenating of the features.
        """
        b, n, _ = x.shape
        p, s = self.prefix, self.suffix
        size = self.sizes(x)
        mid = size[:, p : n - s]
        ar = torch.arange(n, device=x.device).expand(b, n)
        assign = torch.cat([ar[:, :p], p + red.assign, ar[:, n - s :] - (n - s) + p + red.m], dim=1)
        weight = torch.cat([size[:, :p], mid if red.weight is None else red.weight, size[:, n - s :]], dim=1)
        mass = torch.cat([size[:, :p], mid if red.mass is None else red.mass, size[:, n - s :]], dim=1)
        out, new_size = merge_tokens(x, size, Reduction(assign, p + red.m + s, weight, mass))
        self.size = None if bool((new_size == 1).all()) else new_size
        if self.source is not None:
            self.source = assign.gather(1, self.source)  # where each input token is now
        self.reductions += 1
        return out
