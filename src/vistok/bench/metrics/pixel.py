"""Pixel-fidelity metrics: PSNR, SSIM and MS-SSIM.

All functions take float ``[B, C, H, W]`` images (vistok's images are ``[B, 3, H, W]``
in ``[0, 1]``), compute in float64 whatever the input dtype, and return one value per
image (``[B]``, float64, on the input's device). Results do not depend on the batch
size: every image is computed on its own.

Conventions (chosen to equal the established references; the tests check them):

- **PSNR** = ``10 log10(data_range² / MSE)`` with the MSE over all channels and pixels
  of one image; equal to ``skimage.metrics.peak_signal_noise_ratio``. Identical images
  give ``+inf``; :class:`PSNRMetric` caps each value at ``max_db`` (100 dB by default)
  before averaging and counts how many were capped.
- **SSIM** (Wang et al. 2004): Gaussian window sigma 1.5 truncated at 3.5 sigma
  (11×11), K1 = 0.01, K2 = 0.03, population (not sample) covariances, each channel on
  its own, then the mean over channels. The SSIM map is averaged over the *valid*
  region only (the 5-pixel border where the window leaves the image is dropped).
  This is exactly ``skimage.metrics.structural_similarity(x, y, channel_axis=-1,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1)``.
- **MS-SSIM** (Wang, Simoncelli & Bovik 2003): 5 scales with weights
  ``[0.0448, 0.2856, 0.3001, 0.2363, 0.1333]``; the same Gaussian window; the mean
  contrast-structure term ``cs`` at scales 1–4 and the mean SSIM (luminance × cs) at
  scale 5; each term is clamped at 0 (``relu``) before the fractional power so that a
  negative correlation cannot give ``nan``; per channel, then the mean over channels
  (as ``pytorch_msssim.ms_ssim``). Between scales: 2×2 average pooling, stride 2; an
  odd trailing row/column is dropped (``pytorch_msssim`` zero-pads it instead; both
  agree whenever H and W are multiples of 16). Needs ``min(H, W) >= 176`` so that the
  11×11 window fits at the fifth scale; smaller images raise ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vistok.bench.metrics.base import MeanAccumulator, Metric, check_pair
from vistok.registry import METRICS

__all__ = [
    "MS_SSIM_MIN_SIZE",
    "MS_SSIM_WEIGHTS",
    "MSSSIMMetric",
    "PSNRMetric",
    "SSIMMetric",
    "gaussian_window",
    "ms_ssim",
    "psnr",
    "ssim",
]

SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5  # scipy/skimage default: radius = int(3.5 * 1.5 + 0.5) = 5 -> 11 taps
SSIM_K1, SSIM_K2 = 0.01, 0.03
MS_SSIM_WEIGHTS: tuple[float, ...] = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def gaussian_window(sigma: float = SSIM_SIGMA, truncate: float = SSIM_TRUNCATE) -> Tensor:
    """The normalized 1-D Gaussian (float64) used by SSIM: ``2 * int(truncate*sigma + 0.5) + 1`` taps.

    The same taps as ``scipy.ndimage.gaussian_filter1d`` (what skimage uses).
    """
    radius = int(truncate * sigma + 0.5)
    k = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (k / sigma) ** 2)
    return g / g.sum()


_WIN_SIZE = gaussian_window().numel()  # 11
MS_SSIM_MIN_SIZE = _WIN_SIZE * 2 ** (len(MS_SSIM_WEIGHTS) - 1)  # 176


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio in dB of each image.

    Args:
        x, y: float ``[B, C, H, W]`` images, values in ``[0, data_range]``.
        data_range: the peak value (1.0 for vistok's images).

    Returns:
        float64 ``[B]``; ``+inf`` where the images are identical.
    """
    check_pair(x, y, who="psnr")
    diff = x.to(torch.float64) - y.to(torch.float64)
    mse = diff.pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)  # mse == 0 -> +inf


def _blur_valid(t: Tensor, win: Tensor) -> Tensor:
    """Separable Gaussian of ``[..., H, W]`` without padding: ``[..., H-k+1, W-k+1]``.

    Written as k shifted multiply-adds per axis: on CPU in float64 this is about twice as
    fast as ``conv2d`` and exact to rounding.
    """
    k = win.numel()
    taps = win.tolist()
    w_out = t.shape[-1] - k + 1
    rows = t[..., :, 0:w_out] * taps[0]
    for i in range(1, k):
        rows.add_(t[..., :, i : i + w_out], alpha=taps[i])
    h_out = t.shape[-2] - k + 1
    out = rows[..., 0:h_out, :] * taps[0]
    for i in range(1, k):
        out.add_(rows[..., i : i + h_out, :], alpha=taps[i])
    return out


def _ssim_cs(x: Tensor, y: Tensor, data_range: float, win: Tensor) -> tuple[Tensor, Tensor]:
    """Mean SSIM and mean contrast-structure of each channel: two float64 ``[B, C]``.

    ``x`` and ``y`` are float64 ``[B, C, H, W]``; means are over the valid region.
    """
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    # One blur for the five moments: [5, B, C, H, W] -> [5, B, C, H-10, W-10].
    mu_x, mu_y, e_xx, e_yy, e_xy = _blur_valid(torch.stack([x, y, x * x, y * y, x * y]), win).unbind(0)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov = e_xy - mu_x * mu_y
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    lum_map = (2 * mu_x * mu_y + c1) / (mu_x * mu_x + mu_y * mu_y + c1)
    return (lum_map * cs_map).flatten(2).mean(-1), cs_map.flatten(2).mean(-1)


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Structural similarity of each image (Wang et al. 2004; see the module notes).

    Args:
        x, y: float ``[B, C, H, W]`` images in ``[0, data_range]``, H and W >= 11.
        data_range: the peak value.

    Returns:
        float64 ``[B]`` in ``[-1, 1]``: per-channel SSIM averaged over channels.
    """
    check_pair(x, y, who="ssim")
    h, w = x.shape[-2:]
    if min(h, w) < _WIN_SIZE:
        raise ValueError(f"ssim: images must be at least {_WIN_SIZE}x{_WIN_SIZE} pixels, got {h}x{w}")
    win = gaussian_window().to(x.device)
    s, _ = _ssim_cs(x.to(torch.float64), y.to(torch.float64), data_range, win)
    return s.mean(1)


def ms_ssim(
    x: Tensor,
    y: Tensor,
    data_range: float = 1.0,
    weights: Sequence[float] = MS_SSIM_WEIGHTS,
) -> Tensor:
    """Multi-scale structural similarity of each image (Wang et al. 2003; see the module notes).

    Args:
        x, y: float ``[B, C, H, W]`` images in ``[0, data_range]``; ``min(H, W)`` must be
            at least ``11 * 2**(len(weights) - 1)`` (176 for the standard 5 scales).
        data_range: the peak value.
        weights: exponents of the scales, finest first.

    Returns:
        float64 ``[B]`` in ``[0, 1]``.

    Raises:
        ValueError: for images too small for the number of scales.
    """
    check_pair(x, y, who="ms_ssim")
    levels = len(weights)
    need = _WIN_SIZE * 2 ** (levels - 1)
    h, w = x.shape[-2:]
    if min(h, w) < need:
        raise ValueError(
            f"ms_ssim: {levels} scales with an {_WIN_SIZE}x{_WIN_SIZE} window need images of at least "
            f"{need}x{need} pixels (the window must fit after {levels - 1} halvings); got {h}x{w}"
        )
    win = gaussian_window().to(x.device)
    wts = torch.tensor(list(weights), dtype=torch.float64, device=x.device)
    xs, ys = x.to(torch.float64), y.to(torch.float64)
    terms = []
    for level in range(levels):
        s, cs = _ssim_cs(xs, ys, data_range, win)
        if level < levels - 1:
            terms.append(cs.clamp_min(0))
            xs = F.avg_pool2d(xs, kernel_size=2, stride=2)  # floor: odd trailing row/col dropped
            ys = F.avg_pool2d(ys, kernel_size=2, stride=2)
        else:
            terms.append(s.clamp_min(0))
    stacked = torch.stack(terms)  # [levels, B, C]
    per_channel = torch.prod(stacked ** wts.view(-1, 1, 1), dim=0)
    return per_channel.mean(1)


# ---------------------------------------------------------------------------------------
# Accumulators


class _MeanMetric(Metric):
    """Mean (and population std) of a per-image score over everything seen."""

    per_image = True

    def __init__(self) -> None:
        self.acc = MeanAccumulator()

    def reset(self) -> None:
        self.acc.reset()

    def _scores(self, originals: Tensor, reconstructions: Tensor) -> Tensor:
        raise NotImplementedError

    def update(
        self, originals: Tensor, reconstructions: Tensor, annotations: Sequence[Any] | None = None
    ) -> None:
        with torch.no_grad():
            self.acc.add(self._scores(originals, reconstructions))

    def compute(self) -> dict[str, float]:
        return {
            self.primary: self.acc.mean,
            f"{self.primary}_std": self.acc.std,
            "count": float(self.acc.count),
        }


class PSNRMetric(_MeanMetric):
    """Mean per-image PSNR (dB). Each value is capped at ``max_db`` before averaging so that
    identical images (PSNR = +inf) do not make the mean infinite; ``n_capped`` counts them."""

    name = primary = "psnr"
    label = "PSNR"
    higher_is_better = True

    def __init__(self, *, data_range: float = 1.0, max_db: float = 100.0) -> None:
        super().__init__()
        if data_range <= 0 or max_db <= 0:
            raise ValueError(f"data_range and max_db must be positive, got {data_range}, {max_db}")
        self.data_range = data_range
        self.max_db = max_db
        self.n_capped = 0

    def reset(self) -> None:
        super().reset()
        self.n_capped = 0

    def _scores(self, originals: Tensor, reconstructions: Tensor) -> Tensor:
        p = self.scores(originals, reconstructions)
        self.n_capped += int((p > self.max_db).sum())
        return p.clamp(max=self.max_db)

    def scores(self, originals: Tensor, reconstructions: Tensor) -> Tensor:
        """float64 ``[B]`` PSNR in dB, ``inf`` for identical images (not capped)."""
        return psnr(originals, reconstructions, self.data_range)

    def mean_of(self, values: Sequence[float]) -> float:
        """Mean with each value capped at ``max_db`` (identical images give ``inf``)."""
        return super().mean_of([min(v, self.max_db) for v in values])

    def compute(self) -> dict[str, float]:
        return {**super().compute(), "n_capped": float(self.n_capped), "max_db": self.max_db}


class SSIMMetric(_MeanMetric):
    """Mean per-image SSIM (see :func:`ssim`)."""

    name = primary = "ssim"
    label = "SSIM"
    higher_is_better = True

    def __init__(self, *, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = data_range

    def _scores(self, originals: Tensor, reconstructions: Tensor) -> Tensor:
        return ssim(originals, reconstructions, self.data_range)

    scores = _scores


class MSSSIMMetric(_MeanMetric):
    """Mean per-image MS-SSIM (see :func:`ms_ssim`)."""

    name = primary = "ms_ssim"
    label = "MS-SSIM"
    higher_is_better = True

    def __init__(self, *, data_range: float = 1.0) -> None:
        super().__init__()
        self.data_range = data_range

    def _scores(self, originals: Tensor, reconstructions: Tensor) -> Tensor:
        return ms_ssim(originals, reconstructions, self.data_range)

    scores = _scores


@METRICS.register("psnr")
def _psnr_metric(*, data_range: float = 1.0, max_db: float = 100.0) -> PSNRMetric:
    """PSNR in dB per image (skimage-equal), mean over images with each value capped at max_db."""
    return PSNRMetric(data_range=data_range, max_db=max_db)


@METRICS.register("ssim")
def _ssim_metric(*, data_range: float = 1.0) -> SSIMMetric:
    """SSIM per image (Gaussian 11x11 sigma 1.5, per channel, skimage-equal), mean over images."""
    return SSIMMetric(data_range=data_range)


@METRICS.register("ms_ssim")
def _ms_ssim_metric(*, data_range: float = 1.0) -> MSSSIMMetric:
    """MS-SSIM per image (5 scales, Wang 2003 weights; images >= 176 px), mean over images."""
    return MSSSIMMetric(data_range=data_range)
