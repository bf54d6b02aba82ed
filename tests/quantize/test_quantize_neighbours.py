"""``q.neighbours(indices, k)``: the k nearest other codes, checked against enumeration."""

from __future__ import annotations

import pytest
import torch

from vistok.quantize import BSQ, FSQ, LFQ


def _check_against_enumeration(q, idx: torch.Tensor, k: int, nb: torch.Tensor) -> None:
    """Distances of the returned codes are the k smallest distances to other codes."""
    all_codes = q.embed(torch.arange(q.codebook_size)).double()
    src = q.embed(idx).double()
    d = torch.cdist(src, all_codes)
    d[torch.arange(len(idx)), idx] = float("inf")
    expected = d.sort(dim=1).values[:, :k]
    got = torch.gather(d, 1, nb)
    assert torch.allclose(got, expected, atol=1e-9)
    assert (nb != idx[:, None]).all()
    assert all(len(set(row.tolist())) == k for row in nb)


@pytest.mark.parametrize("levels", [[3, 4, 5], [8, 5, 5, 5], [2, 3, 7], [8, 8, 8, 5, 5, 5]])
@pytest.mark.parametrize("k", [1, 4, 11, 30])
def test_fsq_neighbours_match_enumeration(levels: list[int], k: int) -> None:
    q = FSQ(levels)
    g = torch.Generator().manual_seed(0)
    idx = torch.cat(
        [torch.tensor([0, q.codebook_size - 1]), torch.randint(q.codebook_size, (30,), generator=g)]
    )
    nb = q.neighbours(idx, k)
    assert nb.shape == (len(idx), k)
    _check_against_enumeration(q, idx, k, nb)


@pytest.mark.parametrize("cls", [LFQ, BSQ])
@pytest.mark.parametrize("k", [1, 7, 10, 40])
def test_binary_neighbours_match_enumeration(cls: type[LFQ], k: int) -> None:
    q = cls(10)
    idx = torch.randint(1 << 10, (25,), generator=torch.Generator().manual_seed(1))
    nb = q.neighbours(idx, k)
    _check_against_enumeration(q, idx, k, nb)
    flips = torch.tensor(
        [bin(int(a) ^ int(b)).count("1") for a, b in zip(idx.repeat_interleave(k), nb.reshape(-1))]
    )
    assert (flips.reshape(-1, k).diff(dim=1) >= 0).all()  # nearest first = fewest flipped bits


def test_neighbours_keep_shape_and_work_for_huge_codebooks() -> None:
    q = LFQ(18)
    idx = torch.randint(1 << 18, (2, 3, 4))
    nb = q.neighbours(idx, 5)
    assert nb.shape == (2, 3, 4, 5)
    flips = (idx.unsqueeze(-1) ^ nb).reshape(-1)
    assert all(bin(int(f)).count("1") == 1 for f in flips)  # k <= bits: single bit flips


def test_generator_breaks_ties_at_random_but_keeps_distances() -> None:
    q = FSQ([8, 8, 8, 8])
    idx = torch.full((200,), 1234)
    fixed = q.neighbours(idx, 1)
    assert (fixed == fixed[0]).all()  # fixed order: the same choice every time
    rand = q.neighbours(idx, 1, generator=torch.Generator().manual_seed(0))
    assert len(set(rand[:, 0].tolist())) > 1
    d = (q.embed(rand) - q.embed(idx)).norm(dim=-1)
    assert torch.allclose(d, d[0].expand_as(d))


def test_k_out_of_range_is_an_error() -> None:
    with pytest.raises(ValueError, match="k must be in"):
        FSQ([2, 2]).neighbours(torch.tensor([0]), 4)


def test_all_other_codes_as_neighbours() -> None:
    q = FSQ([2, 3, 4])
    idx = torch.arange(q.codebook_size)
    nb = q.neighbours(idx, q.codebook_size - 1)
    _check_against_enumeration(q, idx, q.codebook_size - 1, nb)
