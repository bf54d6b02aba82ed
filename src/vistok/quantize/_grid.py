"""Nearest neighbours on a box lattice without enumerating it (FSQ, LFQ, BSQ codebooks).

The codes of FSQ/LFQ/BSQ are the points of a grid ``prod_i [0, L_i)`` (digits) with a
per-dimension spacing. The ``k`` nearest grid points of a point are found among a fixed
table of offsets: every signed offset whose length is at most ``R``, where ``R`` is the
smallest radius at which a *corner* point (the worst case: it has the fewest points
within any radius) already has ``k`` others. Any point then has at least ``k`` valid
offsets within ``R`` and every offset outside the table is farther than ``R``, so taking
the ``k`` nearest valid offsets of the table is exact. The table has a few hundred
entries for small ``k`` even when the codebook has 2^18 or more codes.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor

__all__ = ["digits_to_index", "grid_neighbours", "index_to_digits", "mixed_radix_basis"]


def mixed_radix_basis(levels: list[int]) -> list[int]:
    """Place values of each digit: ``[1, L0, L0*L1, ...]`` (first dimension least significant)."""
    basis, acc = [], 1
    for n in levels:
        basis.append(acc)
        acc *= n
    return basis


def index_to_digits(indices: Tensor, levels: Tensor, basis: Tensor) -> Tensor:
    """long ``[...]`` -> long digits ``[..., d]`` with digit i in ``[0, levels[i])``."""
    return torch.div(indices.unsqueeze(-1), basis, rounding_mode="floor") % levels


def digits_to_index(digits: Tensor, basis: Tensor) -> Tensor:
    """long digits ``[..., d]`` -> long ``[...]``."""
    return (digits * basis).sum(-1)


def _ball(levels: tuple[int, ...], weights: tuple[int, ...], r2: int, nonneg: bool) -> list[tuple[int, ...]]:
    """Integer offsets ``j`` with ``|j_i| <= L_i - 1`` and ``sum (j_i w_i)^2 <= r2``."""
    out: list[tuple[int, ...]] = []
    d = len(levels)

    def rec(i: int, acc: int, prefix: tuple[int, ...]) -> None:
        if i == d:
            out.append(prefix)
            return
        w2 = weights[i] ** 2
        jmax = min(levels[i] - 1, math.isqrt((r2 - acc) // w2))
        for j in range(0 if nonneg else -jmax, jmax + 1):
            rec(i + 1, acc + j * j * w2, (*prefix, j))

    rec(0, 0, ())
    return out


@lru_cache(maxsize=64)
def _offset_table(levels: tuple[int, ...], weights: tuple[int, ...], k: int) -> tuple[Tensor, Tensor]:
    """Offsets ``[M, d]`` (long, without zero) and their squared lengths ``[M]`` (int units)."""
    total = math.prod(levels)
    if not 1 <= k < total:
        raise ValueError(f"k must be in [1, {total - 1}] for a codebook of {total} codes, got {k}")
    r2 = min(w * w for w, n in zip(weights, levels) if n > 1)
    while len(_ball(levels, weights, r2, nonneg=True)) - 1 < k:
        r2 = max(r2 + 1, (r2 * 3) // 2)
    offs = [o for o in _ball(levels, weights, r2, nonneg=False) if any(o)]
    w = torch.tensor(weights, dtype=torch.long)
    table = torch.tensor(offs, dtype=torch.long)
    sq = ((table * w) ** 2).sum(-1)
    order = torch.argsort(sq, stable=True)
    return table[order], sq[order]


def grid_neighbours(
    digits: Tensor,
    levels: list[int],
    weights: list[int],
    k: int,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """The ``k`` nearest other lattice points of each point, nearest first.

    Args:
        digits: long ``[N, d]``, digit i in ``[0, levels[i])``.
        levels: grid size per dimension.
        weights: positive integers proportional to the spacing of each dimension (the
            distance is ``sqrt(sum((delta_i * weights_i)^2))``).
        k: neighbours per point, ``1 <= k < prod(levels)``.
        generator: random tie-breaking among equidistant points; ``None`` = fixed order.

    Returns:
        long digits ``[N, k, d]``.
    """
    table, sq = _offset_table(tuple(levels), tuple(weights), k)
    table, sq = table.to(digits.device), sq.to(digits.device, torch.float64)
    lv = torch.tensor(levels, device=digits.device)
    m, d = table.shape
    out = torch.empty((digits.shape[0], k, d), dtype=torch.long, device=digits.device)
    step = max(1, (1 << 22) // (m * d))
    fixed = torch.arange(m, device=digits.device, dtype=torch.float64) / (2 * m)
    for s in range(0, digits.shape[0], step):
        cand = digits[s : s + step, None, :] + table  # [n, M, d]
        valid = ((cand >= 0) & (cand < lv)).all(-1)
        if generator is None:
            tie = fixed.expand(cand.shape[0], m)
        else:
            tie = torch.rand((cand.shape[0], m), generator=generator, dtype=torch.float64).to(digits.device)
            tie = tie * 0.5  # integer squared lengths differ by >= 1: ties only reorder equals
        key = torch.where(valid, sq + tie, torch.full_like(tie, math.inf))
        sel = key.topk(k, dim=1, largest=False).indices
        out[s : s + step] = cand.gather(1, sel.unsqueeze(-1).expand(-1, -1, d))
    return out


def fsq_neighbours(
    indices: Tensor, levels: list[int], k: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """The ``k`` nearest other codes of FSQ-style mixed-radix ids, nearest first: long ``[...] -> [..., k]``.

    Digit ``i`` (place value :func:`mixed_radix_basis`, first least significant) is a level
    ``0 .. L_i - 1`` of a grid spaced ``1 / (L_i // 2)`` (FSQ's codes in ``[-1, 1]``); the distance
    is L2 in that code space, found on the grid without enumerating the codebook.
    """
    half = [n // 2 for n in levels]
    lcm = math.lcm(*half)
    basis = torch.tensor(mixed_radix_basis(levels), device=indices.device)
    lv = torch.tensor(levels, device=indices.device)
    digits = index_to_digits(indices.reshape(-1).long(), lv, basis)
    nb = grid_neighbours(digits, list(levels), [lcm // h for h in half], k, generator=generator)
    return digits_to_index(nb, basis).reshape(*indices.shape, k)


def bit_flip_neighbours(
    indices: Tensor, bits: int, k: int, *, generator: torch.Generator | None = None
) -> Tensor:
    """The ``k`` nearest other codes of binary (LFQ/BSQ-style ``{-1, +1}^bits``) ids, fewest flipped
    bits first (the euclidean order of the sign vectors): long ``[...] -> [..., k]``.

    Bit ``i`` of an id is the sign of channel ``i`` (least significant first); ``1 <= k < 2**bits``.
    Two-level FSQ digits: :func:`fsq_neighbours` with every level 2.
    """
    return fsq_neighbours(indices, [2] * bits, k, generator=generator)
