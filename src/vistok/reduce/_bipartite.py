"""Bipartite soft matching scores, shared by ToMe (fixed ``r``) and DyMU (threshold)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bipartite_scores", "merge_decision"]


def bipartite_scores(keys: Tensor, padded: Tensor | None) -> tuple[Tensor, Tensor]:
    """Split tokens ``[B, n, C]`` alternately into sets A (even) and B (odd); for every A
    token its most similar B token by cosine of ``keys``.

    Returns:
        ``(best [B, nA], match [B, nA])``: the best similarity (``+inf`` for padding in A,
        so padding is merged away first) and the index into B of the match.
    """
    k = F.normalize(keys.float(), dim=-1)
    scores = k[:, ::2] @ k[:, 1::2].transpose(1, 2)  # [B, nA, nB]
    if padded is not None:
        scores = scores.masked_fill(padded[:, None, 1::2], float("-inf"))
    best, match = scores.max(-1)
    if padded is not None:
        best = best.masked_fill(padded[:, ::2], float("inf"))
    return best, match


def merge_decision(merged_a: Tensor, match: Tensor, n: int) -> tuple[Tensor, Tensor]:
    """``(kept [B, n], target [B, n])`` for :func:`vistok.reduce.base.compact`, from a bool
    ``[B, nA]`` of A tokens that merge into their B match ``[B, nA]``."""
    b = merged_a.shape[0]
    kept = torch.ones(b, n, dtype=torch.bool, device=merged_a.device)
    kept[:, ::2] = ~merged_a
    target = torch.arange(n, device=merged_a.device).expand(b, n).clone()
    target[:, ::2] = 2 * match + 1  # index of the B token in the full middle sequence
    return kept, target
