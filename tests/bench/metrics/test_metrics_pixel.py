"""PSNR / SSIM / MS-SSIM against scikit-image, pytorch-msssim and a numpy/scipy reference."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import metrics as skm

from vistok.bench.metrics.pixel import MS_SSIM_WEIGHTS, PSNRMetric, ms_ssim, psnr, ssim
from vistok.registry import METRICS

DIST_NAMES = ("jpeg20", "blur2", "noise5")


def _pair(photos_uint8, im, name: str, dist: str, mult: int = 1):
    a = photos_uint8[name]
    h, w = a.shape[:2]
    a = a[: h // mult * mult, : w // mult * mult]
    return im.to_tensor(a), im.to_tensor(im.distortions[dist](a))


def _hwc64(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).double().numpy()


@pytest.mark.parametrize("dist", DIST_NAMES)
@pytest.mark.parametrize("name", ["astronaut", "chelsea", "coffee", "rocket"])
def test_psnr_and_ssim_match_skimage(photos_uint8, im, name: str, dist: str) -> None:
    x, y = _pair(photos_uint8, im, name, dist)
    xa, ya = _hwc64(x), _hwc64(y)
    ref_psnr = skm.peak_signal_noise_ratio(xa, ya, data_range=1.0)
    assert abs(psnr(x, y).item() - ref_psnr) < 1e-6
    # The documented setting: Wang et al. 2004, per channel, averaged.
    ref_ssim = skm.structural_similarity(
        xa, ya, channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert abs(ssim(x, y).item() - ref_ssim) < 1e-5


def test_ssim_odd_sizes_and_float32_inputs(photos_uint8, im) -> None:
    # Odd, non-square crop: border handling must still equal skimage's crop of the (win-1)/2 border.
    a = photos_uint8["coffee"][37:138, 201:278]
    x, y = im.to_tensor(a), im.to_tensor(im.jpeg(a, 10))
    ref = skm.structural_similarity(
        _hwc64(x),
        _hwc64(y),
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
    )
    assert abs(ssim(x, y).item() - ref) < 1e-5
    assert ssim(x, y).dtype == torch.float64
    assert ssim(x, x).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim(x[..., :10, :], y[..., :10, :])


def test_psnr_identical_is_inf_and_accumulator_caps(photos_uint8, im) -> None:
    x, y = _pair(photos_uint8, im, "chelsea", "jpeg20")
    assert math.isinf(psnr(x, x).item())
    m = PSNRMetric(max_db=100.0)
    m.update(torch.cat([x, x]), torch.cat([x, y]))
    out = m.compute()
    assert out["n_capped"] == 1 and out["count"] == 2
    assert out["psnr"] == pytest.approx((100.0 + psnr(x, y).item()) / 2, abs=1e-9)


# ---------------------------------------------------------------------------------------
# MS-SSIM: an independent numpy/scipy implementation of the documented algorithm.


def _ref_ms_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """x, y: float64 [H, W, C] in [0, 1]. Per channel MS-SSIM, averaged over channels."""
    c1, c2 = 0.01**2, 0.03**2
    pad = 5  # radius of the 11-tap Gaussian (sigma 1.5, truncate 3.5)

    def blur(a: np.ndarray) -> np.ndarray:
        full = ndimage.gaussian_filter(a, sigma=1.5, truncate=3.5, mode="reflect")
        return full[pad:-pad, pad:-pad]  # keep only where the window is inside the image

    def stats(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
        mu_a, mu_b = blur(a), blur(b)
        va = blur(a * a) - mu_a**2
        vb = blur(b * b) - mu_b**2
        cov = blur(a * b) - mu_a * mu_b
        cs = (2 * cov + c2) / (va + vb + c2)
        lum = (2 * mu_a * mu_b + c1) / (mu_a**2 + mu_b**2 + c1)
        return float((lum * cs).mean()), float(cs.mean())

    def halve(a: np.ndarray) -> np.ndarray:
        h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
        return a[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))

    values = []
    for ch in range(x.shape[2]):
        a, b = x[..., ch], y[..., ch]
        value = 1.0
        for level, wt in enumerate(MS_SSIM_WEIGHTS):
            s, cs = stats(a, b)
            if level < len(MS_SSIM_WEIGHTS) - 1:
                value *= max(cs, 0.0) ** wt
                a, b = halve(a), halve(b)
            else:
                value *= max(s, 0.0) ** wt
        values.append(value)
    return float(np.mean(values))


@pytest.mark.parametrize(
    ("name", "dist"), [("astronaut", "jpeg20"), ("rocket", "blur2"), ("chelsea", "noise5")]
)
def test_ms_ssim_matches_numpy_reference(photos_uint8, im, name: str, dist: str) -> None:
    x, y = _pair(photos_uint8, im, name, dist)  # full size, odd sizes included (chelsea 300x451)
    got = ms_ssim(x, y).item()
    assert abs(got - _ref_ms_ssim(_hwc64(x), _hwc64(y))) < 1e-6
    assert 0.5 < got < 1.0


@pytest.mark.parametrize("name", ["astronaut", "coffee"])
def test_ms_ssim_matches_pytorch_msssim(photos_uint8, im, name: str) -> None:
    import pytorch_msssim  # in [dev]: a parity test is never skipped

    # pytorch_msssim zero-pads odd sizes before pooling where we drop the odd row/column:
    # compare on sizes that stay even for 4 halvings (multiples of 16).
    x, y = _pair(photos_uint8, im, name, "jpeg20", mult=16)
    ref = pytorch_msssim.ms_ssim(x.double(), y.double(), data_range=1.0, size_average=False).item()
    assert abs(ms_ssim(x, y).item() - ref) < 1e-4


def test_ms_ssim_too_small_names_minimum() -> None:
    x = torch.rand(1, 3, 175, 300)
    with pytest.raises(ValueError, match="176x176"):
        ms_ssim(x, x)
    assert ms_ssim(torch.rand(1, 3, 176, 176), torch.rand(1, 3, 176, 176)).shape == (1,)


def test_ordering_with_distortion_strength(photos_uint8, im) -> None:
    a = photos_uint8["astronaut"][::2, ::2].copy()  # 256x256 keeps this fast
    x = im.to_tensor(a)
    ys = torch.cat([im.to_tensor(im.jpeg(a, q)) for q in (90, 30, 5)])
    xs = x.expand_as(ys)
    for fn in (psnr, ssim, ms_ssim):
        v = fn(xs, ys)
        assert v[0] > v[1] > v[2], fn.__name__


def test_batch_size_independence(photos_uint8, im) -> None:
    # Four real 256x256 crops and their JPEG versions, in one batch and one by one.
    crops = [photos_uint8[n][:256, :256] for n in ("astronaut", "chelsea", "coffee", "rocket")]
    x = torch.cat([im.to_tensor(c) for c in crops])
    y = torch.cat([im.to_tensor(im.jpeg(c, 25)) for c in crops])
    for fn in (psnr, ssim, ms_ssim):
        batched = fn(x, y)
        single = torch.cat([fn(x[i : i + 1], y[i : i + 1]) for i in range(4)])
        assert batched.shape == (4,)
        torch.testing.assert_close(batched, single, rtol=0, atol=1e-12)
    # Accumulators: any split of the data gives the same mean.
    for name in ("psnr", "ssim", "ms_ssim"):
        a, b = METRICS.create(name), METRICS.create(name)
        a.update(x, y)
        b.update(x[:1], y[:1])
        b.update(x[1:], y[1:])
        ra, rb = a.compute(), b.compute()
        assert ra[name] == pytest.approx(rb[name], abs=1e-12) and ra["count"] == rb["count"] == 4


def test_registry_entries_are_declared() -> None:
    import vistok.bench.metrics  # noqa: F401  (registers every family)

    expected = {"psnr", "ssim", "ms_ssim", "fd", "dfd", "text", "face"}
    assert expected <= set(METRICS.names())
    for name in expected:
        entry = METRICS.get(name)
        sig = inspect.signature(entry.factory)
        for p in sig.parameters.values():
            assert p.kind is inspect.Parameter.KEYWORD_ONLY, (name, p.name)
            assert p.annotation is not inspect.Parameter.empty, (name, p.name)
        if entry.available is None or entry.available() is None:
            m = METRICS.create(name)
            assert isinstance(m.higher_is_better, bool)
            assert callable(m.update) and callable(m.compute) and callable(m.reset)
    assert METRICS.create("psnr").higher_is_better and not METRICS.create("fd").higher_is_better
    assert METRICS.create("psnr:max_db=60").max_db == 60.0
