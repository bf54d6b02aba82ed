"""Optional capabilities are declared on the contract: every tokenizer answers, none is probed."""

from __future__ import annotations

import pytest
import torch

import vistok
from vistok.quantize import QUANTIZERS


@pytest.mark.parametrize(
    ("spec", "neighbours", "codebooks"),
    [
        ("jpeg", False, 1),
        ("pca:tokens=4,basis_size=8", False, 1),
        ("conv2d-tiny", True, 1),
        ("conv2d-tiny:quantizer=[rvq:num_stages=3,codebook_size=16]", True, 3),
        ("conv2d-tiny:quantizer=gaussian", False, 4),
    ],
)
def test_capabilities_are_declared(spec: str, neighbours: bool, codebooks: int) -> None:
    tok = vistok.create(spec).eval()
    assert tok.has_neighbours is neighbours and tok.num_codebooks == codebooks
    if neighbours:
        ids = tok.encode(torch.rand(1, 3, 32, 32)).ids
        nb = tok.neighbours(ids, 2)
        assert nb.shape == (*ids.shape, 2) and not (nb == ids.unsqueeze(-1)).any()


def test_quantizer_latent_defaults_round_trip() -> None:
    """``latent``/``decode_latent`` exist on every quantizer: the quantized value and the identity."""
    q = QUANTIZERS.create("lfq:bits=4", dim=4).eval()
    x = torch.randn(5, 4)
    assert torch.equal(q.latent(x), q(x).quantized) and torch.equal(q.decode_latent(x), x)
    g = QUANTIZERS.create("gaussian", dim=4).eval()  # overrides both: the posterior mean, then project_out
    assert g.latent(x).shape == (5, 4) and g.decode_latent(g.latent(x)).shape == (5, 4)
    assert not QUANTIZERS.create("vq:codebook_size=8", dim=4).requires_spatial_input
    assert QUANTIZERS.create("msvq:scales=1-2,codebook_size=8", dim=4).requires_spatial_input
