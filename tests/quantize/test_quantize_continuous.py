"""Post-training per-channel quantization (TokenBridge) and the Gaussian (KL) bottleneck."""

from __future__ import annotations

import pytest
import torch

from vistok.quantize import GaussianBottleneck, PostTrainingQuantizer


def _latents(n: int = 20000, seed: int = 0) -> torch.Tensor:
    """Non-Gaussian channels: skewed (log-normal), bimodal, Laplace, wide uniform."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(n, generator=g).exp()
    b = torch.where(torch.rand(n, generator=g) < 0.3, -2.0, 1.5) + 0.2 * torch.randn(n, generator=g)
    c = -torch.rand(n, generator=g).log() * torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
    d = 100 * torch.rand(n, generator=g)
    return torch.stack([a, b, c, d], dim=1)


def test_ptq_reconstruction_error_falls_as_bits_grow() -> None:
    x = _latents()
    test = _latents(seed=1)
    errs = []
    for bits in range(1, 8):
        q = PostTrainingQuantizer(4, bits).fit(x).eval()
        out = q(test)
        errs.append(((out.quantized - test) ** 2).mean(0) / test.var(0))  # per channel, relative
    errs_t = torch.stack(errs)
    assert (errs_t.diff(dim=0) < 0).all(), errs_t
    assert errs_t[-1, [1, 2, 3]].max() < 1e-2  # < 1% of the variance at 7 bits
    assert errs_t[-1, 0] < 0.1  # log-normal: the outer equal-mass bin is wide


def test_ptq_lloyd_refinement_lowers_the_error() -> None:
    x = _latents()
    plain = PostTrainingQuantizer(4, 4).fit(x).eval()
    lloyd = PostTrainingQuantizer(4, 4, lloyd_iters=20).fit(x).eval()
    e_plain = ((plain(x).quantized - x) ** 2).mean(0)
    e_lloyd = ((lloyd(x).quantized - x) ** 2).mean(0)
    assert (e_lloyd <= e_plain * 1.0001).all() and (e_lloyd < 0.9 * e_plain).any()


def test_ptq_bins_are_equal_mass_and_centers_are_bin_means() -> None:
    x = _latents()
    q = PostTrainingQuantizer(4, 3).fit(x).eval()
    idx = q.encode(x)
    assert idx.shape == x.shape and idx.min() >= 0 and idx.max() < 8
    for ch in range(4):
        counts = torch.bincount(idx[:, ch], minlength=8).float()
        assert torch.allclose(counts, torch.full((8,), len(x) / 8), rtol=0.01)
        for b in range(8):
            assert q.centers[ch, b] == pytest.approx(float(x[idx[:, ch] == b, ch].mean()), rel=1e-4, abs=1e-4)
    assert (q.edges.diff(dim=1) >= 0).all()


def test_ptq_decode_of_encode_is_forward_and_gradient_is_straight_through() -> None:
    x = _latents(1000)
    q = PostTrainingQuantizer(4, 5).fit(x).eval()
    xr = x.clone().requires_grad_(True)
    out = q(xr)
    assert torch.equal(out.indices, q.encode(x))
    assert torch.allclose(q.decode(out.indices), out.quantized.detach(), atol=1e-5)
    out.quantized.sum().backward()
    assert torch.equal(xr.grad, torch.ones_like(x))
    assert float(out.loss) == 0.0
    assert 0 < float(out.stats["usage"]) <= 1


def test_ptq_must_be_fitted_before_eval_and_fits_itself_in_training() -> None:
    q = PostTrainingQuantizer(4, 4).eval()
    with pytest.raises(RuntimeError, match="fit"):
        q(torch.randn(3, 4))
    q.train()(_latents(500))
    assert bool(q.fitted)
    before = q.edges.clone()
    q(_latents(500, seed=3))  # fitted once; later batches do not refit
    assert torch.equal(before, q.edges)


def test_ptq_handles_constant_and_discrete_channels() -> None:
    x = torch.stack([torch.zeros(1000), torch.randint(0, 3, (1000,)).float()], dim=1)
    q = PostTrainingQuantizer(2, 4).fit(x).eval()
    out = q(x)
    assert torch.isfinite(q.centers).all()
    assert torch.allclose(out.quantized, x)


def test_gaussian_kl_matches_torch_distributions_and_eval_is_the_mean() -> None:
    torch.manual_seed(0)
    q = GaussianBottleneck(6, 3, kl_weight=0.5)
    torch.nn.init.normal_(q.project_in.weight, std=0.5)
    x = torch.randn(4, 10, 6)
    with torch.no_grad():
        mean, logvar = q.moments(x)
        post = torch.distributions.Normal(mean, (0.5 * logvar).exp())
        ref = torch.distributions.kl_divergence(post, torch.distributions.Normal(0.0, 1.0)).sum(-1).mean()
        out = q.eval()(x)
    assert float(out.stats["kl"]) == pytest.approx(float(ref), rel=1e-5)
    assert float(out.loss) == pytest.approx(0.5 * float(ref), rel=1e-5)
    assert out.indices is None
    assert torch.allclose(out.quantized, q.decode_latent(mean))
    assert torch.equal(q.latent(x), mean)


def test_gaussian_samples_in_training_and_gradients_reach_input() -> None:
    torch.manual_seed(0)
    q = GaussianBottleneck(4).train()
    with torch.no_grad():
        q.project_in.bias[4:] = 0.0  # unit variance
    x = torch.zeros(20000, 4, requires_grad=True)
    out = q(x)
    assert out.quantized.std().item() == pytest.approx(1.0, rel=0.05)
    (out.quantized.sum() + out.loss).backward()
    assert x.grad.abs().sum() > 0
    assert q.bits_per_token == 32 * 4 and not q.is_discrete and q.codebook_size == 0
