"""Residual, multi-scale residual and factorized VQ."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from vistok.quantize import FactorizedVQ, MultiScaleResidualVQ, ResidualVQ, VectorQuantizer


def test_rvq_error_falls_with_each_stage() -> None:
    torch.manual_seed(0)
    q = ResidualVQ(4, 64, 8)
    x = torch.randn(4096, 8)
    for _ in range(5):
        q(x)
    q.eval()
    out = q(x)
    errs = [float((q.codes(out.indices[..., :s]) - x).pow(2).mean()) for s in range(1, 5)]
    assert all(b < a for a, b in itertools.pairwise(errs)), errs
    assert errs[-1] == pytest.approx(float((out.quantized - x).pow(2).mean()), rel=1e-5)


def test_rvq_stage_s_quantizes_the_previous_residual() -> None:
    torch.manual_seed(0)
    q = ResidualVQ(3, 32, 4).eval()
    x = torch.randn(200, 4)
    out = q(x)
    residual = x
    for s, stage in enumerate(q.stages):
        ref = VectorQuantizer.search(stage, residual)[1]
        assert torch.equal(out.indices[:, s], ref)
        residual = residual - stage.embed(out.indices[:, s])


def test_rvq_gradient_is_straight_through_of_the_sum() -> None:
    q = ResidualVQ(3, 16, 4)
    x = torch.randn(10, 4, requires_grad=True)
    q(x).quantized.sum().backward()
    assert torch.allclose(x.grad, torch.ones_like(x))


def test_rvq_quantizer_dropout_truncates_samples_in_training_only() -> None:
    torch.manual_seed(0)
    q = ResidualVQ(4, 32, 4, quantizer_dropout=1.0)
    x = torch.randn(64, 10, 4)
    q(x)  # initialize
    q.eval()
    full = q(x)
    partial = [q.codes(full.indices[..., :n]) for n in range(1, 5)]  # before the EMA moves
    q.train()
    torch.manual_seed(1)
    dropped = q(x)
    q.eval()
    assert torch.equal(q(x).quantized, q(x).quantized)  # eval: no dropout, deterministic
    # every sample is the decode of its first n stages for some n, and some have n < 4
    kept = []
    for i in range(x.shape[0]):
        ns = [n for n in range(4) if torch.allclose(partial[n][i], dropped.quantized[i], atol=1e-6)]
        assert ns, i
        kept.append(ns[0] + 1)
    assert min(kept) < 4 and len(set(kept)) > 1


def test_msvq_sequence_layout_and_exact_decode() -> None:
    torch.manual_seed(0)
    q = MultiScaleResidualVQ([1, 2, 4, 8], 128, 6, code_dim=4)
    x = torch.randn(3, 8, 8, 6)
    q(x)
    q.eval()
    out = q(x)
    assert out.indices.shape == (3, 1 + 4 + 16 + 64) == (3, q.num_tokens(8, 8))
    assert torch.allclose(q.codes(out.indices), out.quantized, atol=1e-6)


def test_msvq_coarse_scales_capture_coarse_content() -> None:
    """A constant map is captured by the 1x1 scale; the finer scales pick a ~zero code.

    (The k-means init draws from the residual pyramid, so the codebook holds a zero code.)
    """
    torch.manual_seed(0)
    q = MultiScaleResidualVQ([1, 2, 4], 64, 4, phi_ratio=0.0)
    x = torch.randn(16, 1, 1, 4).expand(16, 4, 4, 4).contiguous()
    for _ in range(3):
        q(x)
    q.eval()
    out = q(x)
    coarse = q.vq.embed(out.indices[:, 0])[:, None, None, :].expand_as(x)
    assert (coarse - x).pow(2).mean() < 1e-3 * x.pow(2).mean()
    assert (out.quantized - x).pow(2).mean() < 1e-3 * x.pow(2).mean()
    fine = q.vq.embed(out.indices[:, 1:])
    assert fine.norm(dim=-1).max() < 1e-2


def test_msvq_non_square_map_and_gradients() -> None:
    q = MultiScaleResidualVQ([1, 2, 3, 6], 32, 4)
    x = torch.randn(2, 6, 3, 4, requires_grad=True)
    out = q(x)
    assert out.indices.shape == (2, 1 + 2 * 2 + 3 * 3 + 6 * 3)
    (out.quantized.sum() + out.loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert q.phi[0].weight.grad is not None
    with pytest.raises(ValueError, match="size"):
        q.codes(out.indices)  # default size is 6x6
    q.eval()
    assert q.codes(q(x.detach()).indices, size=(6, 3)).shape == x.shape


def test_msvq_rejects_non_map_input() -> None:
    with pytest.raises(ValueError, match=r"\[B, H, W, dim\]"):
        MultiScaleResidualVQ([1, 2], 16, 4)(torch.randn(5, 4))


def test_fvq_splits_channels_and_returns_k_indices() -> None:
    torch.manual_seed(0)
    q = FactorizedVQ(3, 32, 12, code_dim=4).eval()
    x = torch.randn(2, 7, 12)
    out = q(x)
    assert out.indices.shape == (2, 7, 3)
    for k, f in enumerate(q.factors):  # factor k only sees channels [4k, 4k + 4)
        assert torch.equal(out.indices[..., k], f(x[..., 4 * k : 4 * k + 4]).indices)
    assert torch.allclose(q.codes(out.indices), out.quantized, atol=1e-6)
    assert q.bits_per_token == pytest.approx(3 * 5)


def test_fvq_disentanglement_regularizer() -> None:
    torch.manual_seed(0)
    q = FactorizedVQ(2, 16, 8, code_dim=4, disentangle_weight=1.0)
    shared = torch.randn(100, 4)
    x = torch.cat([shared, shared], dim=-1)  # both factors see the same thing
    out = q(x)
    unit = [F.normalize(q.factors[k].embed(out.indices[:, k]), dim=-1) for k in range(2)]
    expected = (unit[0] * unit[1]).sum(-1).pow(2).mean().detach()
    assert float(out.stats["disentangle"]) == pytest.approx(float(expected), rel=1e-5)
    x = x.requires_grad_(True)
    q(x).loss.backward()
    assert x.grad.abs().sum() > 0


def test_fvq_dim_must_divide() -> None:
    with pytest.raises(ValueError, match="not divisible"):
        FactorizedVQ(3, 16, 8)
