"""Grid neighbours of implicit codebooks: bit flips (LFQ, Open-MAGVIT2, MaskBit) and FSQ (Cosmos-DI), against brute force."""

from __future__ import annotations

import itertools

import pytest
import torch

import vistok
from vistok.quantize._grid import bit_flip_neighbours


@pytest.mark.parametrize("bits", [3, 6, 10])
def test_bit_flip_neighbours_are_the_nearest_sign_vectors(bits: int) -> None:
    ids = torch.randint(0, 2**bits, (5, 7), generator=torch.Generator().manual_seed(bits))
    k = min(bits + 2, 2**bits - 1)
    nb = bit_flip_neighbours(ids, bits, k)
    assert nb.shape == (5, 7, k) and not bool((nb == ids.unsqueeze(-1)).any())
    basis = 2 ** torch.arange(bits)
    signs = lambda t: ((t.unsqueeze(-1) & basis) != 0).float() * 2 - 1  # noqa: E731
    d = (signs(nb) - signs(ids).unsqueeze(-2)).pow(2).sum(-1)  # [5, 7, k]
    assert bool((d[..., 1:] >= d[..., :-1]).all())  # nearest first
    # brute force: the k-th distance is the k-th smallest over all other codes
    every = torch.arange(2**bits)
    for i, j in itertools.product(range(5), range(7)):
        full = (signs(every) - signs(ids[i, j])).pow(2).sum(-1)
        full[ids[i, j]] = float("inf")
        assert torch.equal(d[i, j], full.sort().values[:k])


@pytest.mark.parametrize(
    "spec",
    [
        "open-magvit2:ch=32,ch_mult=1-1,num_res_blocks=1,z_channels=6,resolution=32",
        "maskbit:token_bits=6,hidden_channels=32,channel_mult=[1,1,2],num_res_blocks=1",
    ],
)
def test_published_lfq_families_offer_bit_flip_neighbours(spec: str) -> None:
    tok = vistok.create(spec)
    assert tok.has_neighbours
    ids = tok.encode(torch.rand(1, 3, 32, 32)).ids
    nb = tok.neighbours(ids, 3)
    assert nb.shape == (*ids.shape, 3)
    flipped = (nb ^ ids.unsqueeze(-1)).view(-1, 3)
    assert all(bin(int(v)).count("1") == 1 for v in flipped.flatten())  # one bit each, 6 bits > 3


def test_cosmos_di_neighbours_are_the_nearest_fsq_codes() -> None:
    """Cosmos-DI's implicit FSQ codebook: the k nearest other codes in code space (brute force)."""
    spec = (
        "cosmos-di8:channels=32,channels_mult=[1],num_res_blocks=0,patch_size=2,spatial_compression=4,"
        "z_channels=16,levels=[8,5,5,5],resolution=64,attn_resolutions=[32]"
    )
    torch.manual_seed(0)
    tok = vistok.create(spec)
    assert tok.has_neighbours
    ids = tok.encode(torch.rand(1, 3, 32, 32)).ids
    k = 6
    nb = tok.neighbours(ids, k)
    assert nb.shape == (*ids.shape, k) and not bool((nb == ids.unsqueeze(-1)).any())
    codes, every = tok.embed(ids).reshape(-1, 4), tok.embed(torch.arange(tok.vocab_size))
    d = (tok.embed(nb).reshape(-1, k, 4) - codes[:, None]).pow(2).sum(-1)
    full = (every[None] - codes[:, None]).pow(2).sum(-1)
    full[torch.arange(len(codes)), ids.reshape(-1)] = float("inf")
    torch.testing.assert_close(d, full.sort(-1).values[:, :k], atol=1e-6, rtol=0)
