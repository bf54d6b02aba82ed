"""Distribution and per-image distances in a deep feature space.

**Fréchet distance** (Dowson & Landau 1982; as FID, Heusel et al. 2017) between two
feature sets modelled as Gaussians ``N(mu1, S1)`` and ``N(mu2, S2)``::

    FD = |mu1 - mu2|² + tr(S1) + tr(S2) - 2 tr( (S1 S2)^(1/2) )

Everything is float64. ``S1 S2`` is not symmetric, so instead of a general matrix
square root (``scipy.linalg.sqrtm``, which goes complex or inaccurate on the singular
covariances of small sets) we use the identity

    tr( (S1 S2)^(1/2) ) = tr( (A S2 A)^(1/2) ) = Σ sqrt(eig(A S2 A)),   A = S1^(1/2)

(``S1 S2`` is similar to ``A S2 A``, which is symmetric positive semi-definite), with
``A`` from a symmetric eigendecomposition of ``S1``. Eigenvalues that rounding makes
slightly negative are clipped at 0 in both decompositions, and the final value is
clipped at 0. Covariances are unbiased (divide by ``N - 1``), as ``numpy.cov``. The
decompositions run on one CPU thread (reproducible; ``vistok.utils.threads.torch_threads``).

When both sets have no more samples than dimensions (a benchmark's few dozen images in
1280 dimensions), the features themselves are kept and the trace comes from the sets'
own ``N1 × N2`` cross product instead (:func:`trace_sqrt_product_low_rank`): with
centred features ``X1`` ``[N1, D]`` and ``X2``, ``S1 S2`` has the nonzero eigenvalues of
``M Mᵀ / ((N1-1)(N2-1))``, ``M = X1 X2ᵀ``, so

    tr( (S1 S2)^(1/2) ) = ||X1 X2ᵀ||_* / sqrt((N1 - 1)(N2 - 1))

(the nuclear norm: the sum of singular values). It is the same quantity, exactly, and
is computed without the ``D - N`` eigenvalues that are zero only up to rounding — whose
square roots the ``D × D`` route sums as noise (about 1e-6 of the value at ``D = 1280``,
``N = 32``) — in microseconds instead of seconds.

**Feature extractors** (:class:`FeatureExtractor`) turn images ``[B, 3, H, W]`` in
``[0, 1]`` into ``[B, dim]`` features. The default is ImageNet MobileNetV2's pooled
1280-d features: images are resized to 224×224 (bilinear, antialiased, aspect ratio
not kept — as FID resizes to 299×299), then ImageNet mean/std normalized. Its Fréchet
distance is labelled **FD-MobileNetV2**; it is *not* FID and must not be reported as
rFID. ``inception`` is the FID Inception-v3; its weights (pt_inception-2015-12-05) are
not shipped with vistok and never downloaded — the user provides the file (see
:class:`InceptionExtractor`).

**DFD-MobileNetV2** (:func:`deep_feature_distance`) is a per-image distance in the
same network, LPIPS-like but *untrained* (no learned channel weights): at the end of
each of the five resolution stages of MobileNetV2 (strides 2, 4, 8, 16, 32), features
are unit-normalized along channels at every position, the squared L2 difference is
averaged over positions, and the five layer values are averaged. Images are used at
their own resolution (at least 32×32), ImageNet-normalized. 0 for identical images,
at most 4.
"""

from __future__ import annotations

import copy
import functools
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vistok.bench.metrics.base import MeanAccumulator, Metric, check_pair
from vistok.bench.metrics.cache import ORIGINALS
from vistok.bench.metrics.inception import FID_WEIGHTS_NAME, FIDInceptionV3, load_fid_inception
from vistok.nn.mobilenet import STAGE_ENDS, MobileNetV2, imagenet_normalize, mobilenet_v2_imagenet
from vistok.registry import METRICS, Registry
from vistok.utils.threads import torch_threads

__all__ = [
    "DFD_LAYERS",
    "EXTRACTORS",
    "DFDMetric",
    "FeatureExtractor",
    "FrechetAccumulator",
    "InceptionExtractor",
    "MobileNetV2Extractor",
    "create_extractor",
    "deep_feature_distance",
    "feature_statistics",
    "frechet_distance",
    "frechet_distance_from_features",
    "frechet_distance_low_rank",
    "trace_sqrt_product",
    "trace_sqrt_product_low_rank",
]

INCEPTION_ENV = "VISTOK_INCEPTION_WEIGHTS"
DFD_LAYERS: tuple[int, ...] = STAGE_ENDS[:5]  # 16, 24, 32, 96, 320 channels at strides 2..32


# ---------------------------------------------------------------------------------------
# Maths


def _as_f64(a: Any) -> Tensor:
    return torch.as_tensor(a).detach().to("cpu", torch.float64)


def _psd_sqrt(s: Tensor) -> Tensor:
    """Symmetric square root of a symmetric PSD matrix (negative eigenvalues clipped)."""
    vals, vecs = torch.linalg.eigh((s + s.T) / 2)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def trace_sqrt_product(sigma1: Tensor, sigma2: Tensor) -> float:
    """``tr((S1 S2)^(1/2))`` for symmetric PSD ``S1, S2`` ``[D, D]`` (float64, stable; see module notes)."""
    # one thread: multi-threaded eigh is slower on shared CPUs and its rounding depends on
    # the thread count (3.4 s vs 0.4 s at D = 1280 here)
    with torch_threads(1):
        a = _psd_sqrt(_as_f64(sigma1))
        m = a @ _as_f64(sigma2) @ a
        vals = torch.linalg.eigvalsh((m + m.T) / 2)
    return float(vals.clamp_min(0).sqrt().sum())


def trace_sqrt_product_low_rank(x1: Tensor, x2: Tensor) -> float:
    """``tr((S1 S2)^(1/2))`` of the unbiased covariances of features ``x1`` ``[N1, D]`` and
    ``x2`` ``[N2, D]`` (N >= 2 each): the nuclear norm of the centred cross product over
    ``sqrt((N1 - 1)(N2 - 1))`` (see module notes). Exact; costs ``O(N1 N2 D)``."""
    a, b = _as_f64(x1), _as_f64(x2)
    return _nuclear_trace(a - a.mean(0), b - b.mean(0))


def _nuclear_trace(c1: Tensor, c2: Tensor) -> float:
    """:func:`trace_sqrt_product_low_rank` of already centred float64 features."""
    with torch_threads(1):
        sv = torch.linalg.svdvals(c1 @ c2.T)
    return float(sv.sum()) / math.sqrt((c1.shape[0] - 1) * (c2.shape[0] - 1))


def _low_rank(n1: int, n2: int, dim: int) -> bool:
    """Whether two sets of ``n1`` and ``n2`` features in ``dim`` dimensions take the
    low-rank route: no more samples than dimensions in either set."""
    return max(n1, n2) <= dim


def frechet_distance_low_rank(x1: Tensor, x2: Tensor) -> float:
    """Fréchet distance between feature sets ``[N1, D]`` and ``[N2, D]`` through
    :func:`trace_sqrt_product_low_rank` (float64; >= 0)."""
    a, b = _as_f64(x1), _as_f64(x2)
    mu1, mu2 = a.mean(0), b.mean(0)
    c1, c2 = a - mu1, b - mu2
    diff = mu1 - mu2
    tr1 = float(c1.pow(2).sum()) / (a.shape[0] - 1)
    tr2 = float(c2.pow(2).sum()) / (b.shape[0] - 1)
    fd = float(diff @ diff) + tr1 + tr2 - 2.0 * _nuclear_trace(c1, c2)
    return max(fd, 0.0)


def feature_statistics(features: Tensor) -> tuple[Tensor, Tensor]:
    """Mean ``[D]`` and unbiased covariance ``[D, D]`` (float64) of ``features`` ``[N, D]``, N >= 2."""
    f = _as_f64(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be [N, D] with N >= 2, got shape {tuple(f.shape)}")
    mu = f.mean(0)
    c = f - mu
    return mu, (c.T @ c) / (f.shape[0] - 1)


def frechet_distance(mu1: Tensor, sigma1: Tensor, mu2: Tensor, sigma2: Tensor) -> float:
    """Fréchet distance between ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    Args:
        mu1, mu2: means ``[D]``.
        sigma1, sigma2: covariances ``[D, D]`` (symmetric PSD; singular is fine).

    Returns:
        The distance (>= 0) as a Python float, computed in float64.
    """
    mu1, mu2, s1, s2 = (_as_f64(t) for t in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(
            f"shapes do not match: mu {tuple(mu1.shape)}, {tuple(mu2.shape)}; "
            f"sigma {tuple(s1.shape)}, {tuple(s2.shape)}"
        )
    diff = mu1 - mu2
    fd = float(diff @ diff) + float(s1.trace() + s2.trace()) - 2.0 * trace_sqrt_product(s1, s2)
    return max(fd, 0.0)


def frechet_distance_from_features(features1: Tensor, features2: Tensor) -> float:
    """Fréchet distance between two feature sets ``[N1, D]`` and ``[N2, D]`` (N >= 2 each).

    Sets with no more samples than dimensions take the exact low-rank route
    (:func:`frechet_distance_low_rank`); larger ones the ``D × D`` one."""
    f1, f2 = _as_f64(features1), _as_f64(features2)
    shaped = f1.ndim == f2.ndim == 2 and f1.shape[1:] == f2.shape[1:]
    if shaped and min(f1.shape[0], f2.shape[0]) >= 2 and _low_rank(f1.shape[0], f2.shape[0], f1.shape[1]):
        return frechet_distance_low_rank(f1, f2)
    return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))


# ---------------------------------------------------------------------------------------
# Feature extractors


@functools.lru_cache(maxsize=4)
def _shared_mobilenet(device: str) -> MobileNetV2:
    """One frozen ImageNet MobileNetV2 per device, shared by FD and DFD: its inference copy
    (BatchNorm folded, channels-last; :meth:`MobileNetV2.for_inference`)."""
    return mobilenet_v2_imagenet(pretrained=True).for_inference().to(device)


class FeatureExtractor:
    """Images ``[B, 3, H, W]`` float in ``[0, 1]`` -> features ``[B, dim]`` (float32, no grad).

    Attributes:
        name: the registry key (``"mobilenet_v2"``).
        label: how results name the Fréchet distance in this space (``"FD-MobileNetV2"``).
        dim: the feature size.
        preprocessing: a one-line description recorded with results.
        cache_key: what the features depend on besides the image (network, weights,
            preprocessing), for :data:`vistok.bench.metrics.cache.ORIGINALS`; ``None``: not
            cached.
    """

    name: str = ""
    label: str = ""
    dim: int = 0
    preprocessing: str = ""
    cache_key: str | None = None

    def __call__(self, images: Tensor) -> Tensor:
        raise NotImplementedError


class MobileNetV2Extractor(FeatureExtractor):
    """Pooled 1280-d features of ImageNet MobileNetV2 (torchvision weights).

    Preprocessing: resize to ``size``×``size`` (``interpolation``, antialiased when
    downsampling, aspect ratio not kept), ImageNet mean/std normalization.
    """

    name = "mobilenet_v2"
    label = "FD-MobileNetV2"
    dim = 1280

    def __init__(
        self, *, size: int = 224, interpolation: str = "bilinear", device: str | None = None
    ) -> None:
        if interpolation not in ("bilinear", "bicubic"):
            raise ValueError(f"interpolation must be 'bilinear' or 'bicubic', got {interpolation!r}")
        self.size = size
        self.interpolation = interpolation
        self.device = device
        self.preprocessing = (
            f"resize to {size}x{size} ({interpolation}, antialias), ImageNet mean/std normalization"
        )
        self.cache_key = f"{self.name}:{size}:{interpolation}"

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        device = self.device or str(images.device)
        net = _shared_mobilenet(device)
        x = images.to(device, torch.float32)
        if x.shape[-2:] != (self.size, self.size):
            x = F.interpolate(
                x, size=(self.size, self.size), mode=self.interpolation, align_corners=False, antialias=True
            )
        if self.interpolation == "bicubic":
            x = x.clamp(0, 1)  # bicubic overshoots
        x = imagenet_normalize(x).contiguous(memory_format=torch.channels_last)
        return net.pooled(x).float()


class InceptionExtractor(FeatureExtractor):
    """The FID Inception-v3 (2048-d pool features) from a user-provided weights file.

    vistok does not ship these weights and never downloads anything. The file needed is
    the FID network converted to PyTorch, ``pt_inception-2015-12-05-6726825d.pth``
    (the PyTorch conversion of TensorFlow's 2015-12-05 Inception graph that pytorch-fid
    uses), as a safetensors file or a plain tensor state dict (read with
    ``torch.load(weights_only=True)``). Give its path as ``weights=``
    (``fd:extractor=inception,weights=/path``) or in ``$VISTOK_INCEPTION_WEIGHTS``.

    Preprocessing: resize to 299×299 (bilinear, no antialias), scale to [-1, 1] — the
    FID protocol of the PyTorch conversion. The network is
    :class:`vistok.bench.metrics.inception.FIDInceptionV3`; see its module for what has
    and has not been verified.

    Raises:
        FileNotFoundError: saying which file is needed and where to put it.
        ValueError: when the file is not that state dict.
    """

    name = "inception"
    label = "FID-InceptionV3"
    dim = 2048
    preprocessing = "resize to 299x299 (bilinear, align_corners=False, no antialias), scale to [-1, 1]"

    def __init__(self, *, weights: str | None = None, device: str | None = None) -> None:
        path = weights or os.environ.get(INCEPTION_ENV)
        if not path or not Path(path).is_file():
            where = f" (looked at {path!r})" if path else ""
            raise FileNotFoundError(
                "the 'inception' feature extractor needs the FID Inception-v3 weights "
                f"{FID_WEIGHTS_NAME} (or its safetensors conversion), which vistok does not ship "
                f"or download{where}. Put the file anywhere and pass its path with "
                f"weights=/path/to/file or set ${INCEPTION_ENV}=/path/to/file; or use the default "
                "'mobilenet_v2' extractor (FD-MobileNetV2, not comparable to FID)."
            )
        self.weights = Path(path)
        self.device = device
        stat = self.weights.stat()
        self.cache_key = f"{self.name}:{self.weights.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
        self._nets: dict[str, FIDInceptionV3] = {}
        self._cpu = load_fid_inception(self.weights)  # fails early on a wrong file

    def _net(self, device: str) -> FIDInceptionV3:
        if device not in self._nets:
            self._nets[device] = self._cpu if device == "cpu" else copy.deepcopy(self._cpu).to(device)
        return self._nets[device]

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        device = self.device or str(images.device)
        return self._net(device)(images.to(device, torch.float32)).float()


# The feature networks by name (``--features``); an unknown name gets "did you mean".
EXTRACTORS: Registry[FeatureExtractor] = Registry("feature extractor")
EXTRACTORS.register("mobilenet_v2")(MobileNetV2Extractor)
EXTRACTORS.register("inception")(InceptionExtractor)


def create_extractor(name: str = "mobilenet_v2", **kwargs: Any) -> FeatureExtractor:
    """Build a feature extractor by name (``mobilenet_v2`` or ``inception``).

    Raises:
        SpecError: an unknown name, with close matches and the valid names.
    """
    return EXTRACTORS.get(name).factory(**kwargs)


# ---------------------------------------------------------------------------------------
# Accumulators


class _Moments:
    """Running float64 first and second moments of ``[N, D]`` features.

    Sums are of ``f - shift`` with ``shift`` the first batch's mean, which keeps the
    covariance ``(Σ c cᵀ - n m mᵀ) / (n - 1)`` free of cancellation when features have a
    large mean relative to their spread.
    """

    def __init__(self) -> None:
        self.n = 0
        self.shift: Tensor | None = None
        self.s1: Tensor | None = None
        self.s2: Tensor | None = None
        # the features themselves while there are no more of them than dimensions (the
        # low-rank route of the distance); dropped once the set outgrows them
        self.rows: list[Tensor] | None = []

    def add(self, features: Tensor) -> None:
        f = _as_f64(features)
        if self.shift is None:
            self.shift = f.mean(0)
            self.s1 = torch.zeros_like(self.shift)
            self.s2 = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64)
        c = f - self.shift
        self.s1 += c.sum(0)
        self.s2 += c.T @ c
        self.n += f.shape[0]
        if self.rows is not None:
            self.rows.append(f)
            if self.n > f.shape[1]:
                self.rows = None

    def features(self) -> Tensor | None:
        """All features added ``[N, D]`` float64, or ``None`` once ``N`` exceeded ``D``."""
        return torch.cat(self.rows) if self.rows else None

    def statistics(self) -> tuple[Tensor, Tensor]:
        if self.n < 2 or self.shift is None or self.s1 is None or self.s2 is None:
            raise ValueError(f"need at least 2 images per set for a covariance, got {self.n}")
        m = self.s1 / self.n
        cov = (self.s2 - self.n * torch.outer(m, m)) / (self.n - 1)
        return self.shift + m, cov


class FrechetAccumulator(Metric):
    """Fréchet distance between the features of all originals and all reconstructions.

    ``compute()`` returns ``{"fd": ..., "count": N}`` (``nan`` before two images of each
    set); :attr:`label` (``"FD-MobileNetV2"`` by default) is how to name the value in
    reports — never "rFID" unless the extractor is the FID Inception network.
    """

    name = primary = "fd"
    higher_is_better = False

    def __init__(self, extractor: FeatureExtractor | None = None) -> None:
        self.extractor = extractor if extractor is not None else MobileNetV2Extractor()
        self.label = self.extractor.label
        self.reset()

    def reset(self) -> None:
        self.real = _Moments()
        self.fake = _Moments()

    def update_features(self, real: Tensor, fake: Tensor) -> None:
        """Add precomputed features ``[N, dim]`` of originals and of reconstructions."""
        self.real.add(real)
        self.fake.add(fake)

    def update(
        self, originals: Tensor, reconstructions: Tensor, annotations: Sequence[Any] | None = None
    ) -> None:
        """Add a batch of originals and reconstructions (float ``[B, 3, H, W]`` in [0, 1])."""
        check_pair(originals, reconstructions, who="fd")
        key = self.extractor.cache_key
        if key is None:
            real = self.extractor(originals)
        else:  # the originals are the same at every point of a run: computed once
            namespace = ("fd", key, getattr(self.extractor, "device", None) or str(originals.device))
            (real,) = ORIGINALS.rows(namespace, originals, lambda x: [self.extractor(x)])
        self.update_features(real, self.extractor(reconstructions))

    def compute(self) -> dict[str, float]:
        if min(self.real.n, self.fake.n) < 2:
            return {"fd": math.nan, "count": float(self.real.n)}
        real, fake = self.real.features(), self.fake.features()
        if real is not None and fake is not None:
            fd = frechet_distance_low_rank(real, fake)
        else:
            fd = frechet_distance(*self.real.statistics(), *self.fake.statistics())
        return {"fd": fd, "count": float(self.real.n)}


def deep_feature_distance(
    x: Tensor, y: Tensor, *, net: MobileNetV2 | None = None, layers: Sequence[int] = DFD_LAYERS
) -> Tensor:
    """DFD-MobileNetV2: untrained LPIPS-like distance of each image pair (see module notes).

    Args:
        x, y: float ``[B, 3, H, W]`` in ``[0, 1]``, H and W >= 32.
        net: the network (default: the shared ImageNet MobileNetV2 on ``x``'s device).
        layers: indices into ``net.features`` to compare.

    Returns:
        float64 ``[B]`` in ``[0, 4]``; 0 for identical images.
    """
    check_pair(x, y, who="dfd")
    net = net if net is not None else _shared_mobilenet(str(x.device))
    return _dfd_from_maps(_dfd_maps(net, x, layers), _dfd_maps(net, y, layers))


def _dfd_maps(net: MobileNetV2, images: Tensor, layers: Sequence[int]) -> list[Tensor]:
    """The feature maps DFD compares: one float32 ``[B, C_i, H_i, W_i]`` per layer."""
    if min(images.shape[-2:]) < 32:
        raise ValueError(f"dfd: images must be at least 32x32 pixels, got {tuple(images.shape[-2:])}")
    with torch.no_grad():
        x = imagenet_normalize(images.float()).contiguous(memory_format=torch.channels_last)
        return [f.float() for f in net.feature_maps(x, layers)]


def _dfd_from_maps(maps_x: Sequence[Tensor], maps_y: Sequence[Tensor]) -> Tensor:
    """float64 ``[B]``: the mean over layers of the position-averaged squared distance
    between channel-unit-normalized maps."""
    total = torch.zeros(maps_x[0].shape[0], dtype=torch.float64, device=maps_x[0].device)
    for fx, fy in zip(maps_x, maps_y, strict=True):
        fx, fy = fx.double(), fy.double()
        fx = fx / fx.norm(dim=1, keepdim=True).clamp_min(1e-10)
        fy = fy / fy.norm(dim=1, keepdim=True).clamp_min(1e-10)
        total += (fx - fy).pow(2).sum(1).flatten(1).mean(1)
    return total / len(maps_x)


class DFDMetric(Metric):
    """Mean DFD-MobileNetV2 over images (lower is better)."""

    name = primary = "dfd"
    higher_is_better = False
    label = "DFD-MobileNetV2"

    def __init__(self, *, device: str | None = None) -> None:
        self.device = device
        self.acc = MeanAccumulator()

    def reset(self) -> None:
        self.acc.reset()

    def update(
        self, originals: Tensor, reconstructions: Tensor, annotations: Sequence[Any] | None = None
    ) -> None:
        if self.device is not None:
            originals, reconstructions = originals.to(self.device), reconstructions.to(self.device)
        check_pair(originals, reconstructions, who="dfd")
        net = _shared_mobilenet(str(originals.device))
        # the originals' maps are the same at every point of a run: computed once
        namespace = ("dfd", DFD_LAYERS, str(originals.device))
        real = ORIGINALS.rows(namespace, originals, lambda x: _dfd_maps(net, x, DFD_LAYERS))
        self.acc.add(_dfd_from_maps(real, _dfd_maps(net, reconstructions, DFD_LAYERS)))

    def compute(self) -> dict[str, float]:
        return {"dfd": self.acc.mean, "dfd_std": self.acc.std, "count": float(self.acc.count)}


@METRICS.register("fd")
def _fd_metric(
    *,
    extractor: str = "mobilenet_v2",
    weights: str | None = None,
    device: str | None = None,
) -> FrechetAccumulator:
    """Fréchet distance of deep features (default FD-MobileNetV2; 'inception' needs user weights).

    ``extractor`` names an entry of :data:`EXTRACTORS`; ``weights`` goes to extractors that
    take it (``inception``)."""
    entry = EXTRACTORS.get(extractor)  # unknown: "did you mean" and the valid names
    kwargs: dict[str, Any] = {"device": device}
    if "weights" in entry.params:
        kwargs["weights"] = weights
    elif weights is not None:
        raise ValueError(f"weights= is only for extractors with weights (inception), not {extractor!r}")
    return FrechetAccumulator(entry.factory(**kwargs))


@METRICS.register("dfd")
def _dfd_metric(*, device: str | None = None) -> DFDMetric:
    """DFD-MobileNetV2: per-image untrained LPIPS-like distance over 5 MobileNetV2 stages."""
    return DFDMetric(device=device)
