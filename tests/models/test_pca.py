"""The ``pca`` baseline: equal to a reference PCA, ordered, exact rate, save/load."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import vistok
from vistok.models.pca import PCATokenizer


def test_fit_matches_reference_pca(crops_of) -> None:
    from sklearn.decomposition import PCA

    x = crops_of(120, 16)
    tok = vistok.create("pca:basis_size=16,tokens=8,coeffs_per_token=2,bits=8")
    assert isinstance(tok, PCATokenizer)
    tok.fit(x)  # M = 120 < d = 768: the Gram-matrix path
    ref = PCA(n_components=16, svd_solver="full").fit(x.reshape(120, -1).double().numpy())
    np.testing.assert_allclose(tok.mean.numpy(), ref.mean_, atol=1e-5)
    cos = np.abs(np.sum(tok.components.double().numpy() * ref.components_, axis=1))
    np.testing.assert_allclose(cos, 1.0, atol=1e-3)  # the same directions, in the same order
    np.testing.assert_allclose(tok.scales.numpy() ** 2, ref.explained_variance_, rtol=1e-3)


def test_quality_rises_with_tokens_and_rate_is_exact(crops_of) -> None:
    train, test = crops_of(300, 32, seed=1), crops_of(24, 32, seed=2)
    tok = vistok.create("pca:basis_size=32,tokens=16,coeffs_per_token=2,bits=6").fit(train)
    prev = -1.0
    for k in (1, 2, 4, 8, 16):
        t = tok.encode(test, num_tokens=k)
        assert t.ids.shape == (24, k) and int(t.ids.max()) < tok.vocab_size
        assert torch.all(t.bits == k * 2 * 6)
        y = tok.decode(t)
        psnr = float(-10 * torch.log10((y - test).pow(2).mean()))
        assert psnr > prev + 0.2, f"PSNR at {k} tokens ({psnr:.2f}) does not beat fewer tokens ({prev:.2f})"
        prev = psnr
    # quantization costs little at 6 bits per coefficient: within 0.5 dB of the unquantized projection
    flat = tok._flat(test) - tok.mean
    comps = tok.components.float()
    proj = tok.mean + (flat @ comps.T) @ comps
    exact = float(-10 * torch.log10((proj.reshape(test.shape).clamp(0, 1) - test).pow(2).mean()))
    assert exact - prev < 0.5


def test_lengths_drop_the_tail_and_other_sizes_decode(tmp_path: Path, crops_of) -> None:
    tok = vistok.create("pca:basis_size=16,tokens=4,coeffs_per_token=1,bits=4").fit(crops_of(64, 16))
    x = crops_of(2, 48, seed=3)
    full = tok.encode(x)
    short = tok.encode(x, num_tokens=2)
    cut = vistok.Tokens(bits=full.bits, ids=full.ids, lengths=torch.tensor([2, 2]), meta=full.meta)
    torch.testing.assert_close(tok.decode(cut), tok.decode(short))
    assert tok.decode(full).shape == x.shape
    tok.save_pretrained(tmp_path / "pca")
    again = vistok.load(tmp_path / "pca")
    torch.testing.assert_close(again.reconstruct(x, num_tokens=3), tok.reconstruct(x, num_tokens=3))


def test_unfitted_and_bad_specs_are_refused() -> None:
    tok = vistok.create("pca:basis_size=8,tokens=2")
    with pytest.raises(RuntimeError, match="not fitted"):
        tok.encode(torch.rand(1, 3, 8, 8))
    with pytest.raises(Exception, match="exceed"):
        vistok.create("pca:basis_size=4,tokens=40,coeffs_per_token=2")
    with pytest.raises(Exception, match="at least"):
        vistok.create("pca:basis_size=8,tokens=8,coeffs_per_token=2").fit(torch.rand(4, 3, 8, 8))
