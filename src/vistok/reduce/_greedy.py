"""Greedy farthest-first selection (Gonzalez 1985), batched over images.

Shared by DivPrune (max-min diversity, cosine distance) and greedy k-center (Euclidean).
The loop runs over the ``k`` picks (each pick depends on the previous ones), never over
tokens: every pick is one ``argmax`` and one ``minimum`` over ``[B, n]``.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["farthest_first"]


def farthest_first(dist: Tensor, k: int, first: Tensor, allowed: Tensor | None = None) -> Tensor:
    """Pick ``k`` points greedily, each the farthest from those already picked.

    Args:
        dist: float ``[B, n, n]`` pairwise distances (symmetric, zero diagonal).
        k: points to pick (``1..n``).
        first: long ``[B]``, the first pick of each image.
        allowed: bool ``[B, n]`` candidates (False for padding), or None for all.

    Returns:
        Bool ``[B, n]`` with ``k`` True entries per image (fewer when an image has fewer
        allowed points).
    """
    b, n, _ = dist.shape
    rows = torch.arange(b, device=dist.device)
    picked = torch.zeros(b, n, dtype=torch.bool, device=dist.device)
    picked[rows, first] = True
    mind = dist[rows, first].clone()  # distance of every point to the picked set
    if allowed is not None:
        mind = mind.masked_fill(~allowed, float("-inf"))
    for _ in range(k - 1):
        nxt = mind.masked_fill(picked, float("-inf")).argmax(1)
        picked[rows, nxt] = True
        mind = torch.minimum(mind, dist[rows, nxt])
    if allowed is not None:
        picked &= allowed
    return picked
