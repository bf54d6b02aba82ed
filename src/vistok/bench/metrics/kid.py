"""Kernel distance between two feature sets (KID; Bińkowski et al. 2018, "Demystifying MMD GANs").

The squared maximum mean discrepancy under the cubic polynomial kernel
``k(x, y) = (x . y / d + 1)^3``, unbiased estimate (the diagonal terms left out), averaged
over ``subsets`` random subsets of ``subset_size`` items from each set, in float64. Unlike
the Fréchet distance it is unbiased for small sets, so it is the number to trust with a few
hundred images; as FD here it is computed in a named feature space (KID-MobileNetV2 with the
default extractor), not Inception's.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["kernel_distance", "polynomial_mmd2"]


def polynomial_mmd2(x: Tensor, y: Tensor) -> float:
    """Unbiased MMD² of ``x [m, d]`` and ``y [n, d]`` under ``(x . y / d + 1)^3`` (``m, n >= 2``)."""
    x, y = x.double(), y.double()
    m, n, d = x.shape[0], y.shape[0], x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
    syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    return float(sxx + syy - 2 * kxy.mean())


def kernel_distance(
    features1: Tensor, features2: Tensor, *, subsets: int = 50, subset_size: int = 1000, seed: int = 0
) -> dict[str, float]:
    """KID of two feature sets ``[m, d]``, ``[n, d]``: mean and standard deviation over subsets.

    ``subset_size`` is capped at the smaller set; with both sets no larger than it, every
    subset is the full sets and the result is the single unbiased estimate (std 0).
    """
    m, n = features1.shape[0], features2.shape[0]
    if min(m, n) < 2:
        raise ValueError(f"KID needs at least 2 items per set, got {m} and {n}")
    size = min(subset_size, m, n)
    if size == m and size == n:
        v = polynomial_mmd2(features1, features2)
        return {"kid": v, "kid_std": 0.0, "subsets": 1, "subset_size": size}
    g = torch.Generator().manual_seed(seed)
    vals = torch.tensor(
        [
            polynomial_mmd2(
                features1[torch.randperm(m, generator=g)[:size]],
                features2[torch.randperm(n, generator=g)[:size]],
            )
            for _ in range(subsets)
        ],
        dtype=torch.float64,
    )
    return {"kid": float(vals.mean()), "kid_std": float(vals.std()), "subsets": subsets, "subset_size": size}
