"""KID: the unbiased polynomial-kernel MMD² against a direct double loop."""

from __future__ import annotations

import itertools

import pytest
import torch

from vistok.bench.metrics.kid import kernel_distance, polynomial_mmd2


def _reference(x: torch.Tensor, y: torch.Tensor) -> float:
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1) ** 3  # noqa: E731
    m, n = len(x), len(y)
    sxx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    syy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    sxy = sum(k(x[i], y[j]) for i in range(m) for j in range(n)) / (m * n)
    return sxx + syy - 2 * sxy


def test_matches_the_definition() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(7, 5, generator=g, dtype=torch.float64)
    y = torch.randn(9, 5, generator=g, dtype=torch.float64) + 0.5
    assert polynomial_mmd2(x, y) == pytest.approx(_reference(x, y), rel=1e-12)


def test_unbiased_near_zero_for_one_distribution_and_positive_apart() -> None:
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(400, 16, generator=g), torch.randn(400, 16, generator=g)
    same = kernel_distance(a, b, subsets=20, subset_size=100)
    apart = kernel_distance(a, b + 1.0, subsets=20, subset_size=100)
    assert abs(same["kid"]) < 3 * same["kid_std"] + 1e-3
    assert apart["kid"] > 10 * (same["kid_std"] + 1e-3)
    full = kernel_distance(a[:50], b[:50], subset_size=1000)
    assert full["subsets"] == 1 and full["kid"] == pytest.approx(polynomial_mmd2(a[:50], b[:50]))
