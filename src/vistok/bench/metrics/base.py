"""The accumulator interface every registered metric follows, and shared helpers.

Metrics are split in two, as in torchmetrics: *pure functions* that do the maths on
one batch (``psnr(x, y) -> [B]``), and small *stateful accumulators* that collect a
dataset's worth of results in float64 and report them once::

    m = METRICS.create("psnr")
    for originals, reconstructions in batches:
        m.update(originals, reconstructions)
    m.compute()   # {"psnr": 31.2, "psnr_std": 2.1, "count": 500.0, ...}

Every accumulator has:

- ``update(originals, reconstructions, annotations=None)``: originals and
  reconstructions are float ``[B, 3, H, W]`` in ``[0, 1]`` of the same shape;
  ``annotations`` is one entry per image for metrics that need them (words for
  ``text``, face boxes for ``face``) and ignored by the others;
- ``compute() -> dict[str, float]``: plain floats (``nan`` where nothing was seen);
  the headline value is under the key ``primary``;
- ``reset()``;
- ``higher_is_better``: the direction of the ``primary`` value;
- ``label``: how reports name the ``primary`` value (``"FD-MobileNetV2"``);
- ``suite``: the ``vistok bench`` suite that runs it (``recon``, ``text``, ``face``), and
  ``annotations``: the per-image annotations its ``update`` needs (``"words"``,
  ``"faces"``; empty: none).

*Per-image* metrics (``per_image = True``: PSNR, SSIM, MS-SSIM) also give one value per
image, ``scores(originals, reconstructions) -> [B]``, which the bench writes into each
image's row, and summarize a list of them with ``mean_of``. Adding a metric to the bench is
one file: a class with these attributes, registered in :data:`vistok.registry.METRICS`
(and imported by this package); the bench finds it by its ``suite``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import Tensor

__all__ = ["Buckets", "MeanAccumulator", "Metric", "check_pair", "to_uint8_hwc"]


def check_pair(x: Tensor, y: Tensor, *, who: str) -> None:
    """Raise a clear error unless ``x`` and ``y`` are float ``[B, C, H, W]`` of one shape."""
    for name, t in (("x", x), ("y", y)):
        if not isinstance(t, Tensor):
            raise TypeError(f"{who}: {name} must be a torch.Tensor, got {type(t).__name__}")
        if t.ndim != 4:
            raise ValueError(f"{who}: {name} must be [B, C, H, W], got shape {tuple(t.shape)}")
        if not t.is_floating_point():
            raise ValueError(f"{who}: {name} must be a float tensor in [0, 1], got dtype {t.dtype}")
    if x.shape != y.shape:
        raise ValueError(f"{who}: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")


def to_uint8_hwc(image: np.ndarray | Tensor) -> np.ndarray:
    """One image as uint8 ``[H, W, 3]`` RGB (what OCR and dlib take).

    Accepts a uint8 array ``[H, W, 3]``, a float array ``[H, W, 3]`` in [0, 1], or a tensor
    ``[3, H, W]`` (float in [0, 1] or uint8). Floats are rounded to the nearest 8-bit level.
    """
    if isinstance(image, Tensor):
        t = image.detach().cpu()
        if t.ndim != 3 or t.shape[0] != 3:
            raise ValueError(f"image tensors must be [3, H, W], got shape {tuple(t.shape)}")
        image = t.permute(1, 2, 0).numpy()
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3:
        raise ValueError(f"image arrays must be [H, W, 3], got shape {a.shape}")
    if np.issubdtype(a.dtype, np.floating):
        a = (np.clip(a, 0, 1) * 255).round().astype(np.uint8)
    elif a.dtype != np.uint8:
        raise ValueError(f"images must be uint8 or float in [0, 1], got dtype {a.dtype}")
    return np.ascontiguousarray(a)


class Metric:
    """Base class of the accumulators (see the module docstring for the contract)."""

    name: ClassVar[str] = "metric"
    primary: ClassVar[str] = "metric"
    higher_is_better: ClassVar[bool] = True
    suite: ClassVar[str] = "recon"
    annotations: ClassVar[str] = ""
    per_image: ClassVar[bool] = False
    label: str = ""  # how reports name the primary value ("" : the registry name)

    def scores(self, originals: Tensor, reconstructions: Tensor) -> Tensor:
        """Per-image metrics: float ``[B]``, one value per image pair (not accumulated)."""
        raise NotImplementedError(f"{type(self).__name__} is not a per-image metric")

    def mean_of(self, values: Sequence[float]) -> float:
        """Per-image metrics: the summary of per-image values (mean over the finite-or-inf
        values, ``nan`` ignored; ``nan`` when none)."""
        kept = [v for v in values if not math.isnan(v)]
        return float(np.mean(kept)) if kept else math.nan

    def update(
        self, originals: Tensor, reconstructions: Tensor, annotations: Sequence[Any] | None = None
    ) -> None:
        raise NotImplementedError

    def compute(self) -> dict[str, float]:
        raise NotImplementedError

    def reset(self) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({getattr(self, 'spec', self.name)})"


class MeanAccumulator:
    """Running float64 sum, sum of squares and count of per-image values."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.total = 0.0
        self.total_sq = 0.0
        self.count = 0

    def add(self, values: Tensor | Sequence[float]) -> None:
        v = torch.as_tensor(values).detach().to("cpu", torch.float64).reshape(-1)
        self.total += float(v.sum())
        self.total_sq += float((v * v).sum())
        self.count += int(v.numel())

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    @property
    def std(self) -> float:
        """Population standard deviation of the values seen (``nan`` when none)."""
        if not self.count:
            return math.nan
        m = self.mean
        return math.sqrt(max(self.total_sq / self.count - m * m, 0.0))


@dataclass(frozen=True)
class Buckets:
    """Contiguous size buckets given by increasing ``edges``.

    ``edges = (0.02, 0.03, 0.04, 1.0)`` gives ``[0.02, 0.03)``, ``[0.03, 0.04)`` and
    ``[0.04, 1.0]``: every bucket is half-open except the last, which includes its
    upper edge. Values outside ``[edges[0], edges[-1]]`` fall in no bucket.
    """

    edges: tuple[float, ...]

    def __post_init__(self) -> None:
        e = tuple(float(v) for v in self.edges)
        if len(e) < 2 or any(b <= a for a, b in itertools.pairwise(e)):
            raise ValueError(f"bucket edges must be at least two increasing numbers, got {list(e)}")
        object.__setattr__(self, "edges", e)

    def __len__(self) -> int:
        return len(self.edges) - 1

    def index(self, value: float) -> int | None:
        """The bucket holding ``value``, or ``None`` when it is outside every bucket."""
        e = self.edges
        if not (e[0] <= value <= e[-1]) or math.isnan(value):
            return None
        for i in range(len(self)):
            if value < e[i + 1]:
                return i
        return len(self) - 1  # value == last edge: the last bucket is closed

    def labels(self) -> list[str]:
        """``["[0.02,0.03)", "[0.03,0.04)", "[0.04,1]"]`` for the edges above."""
        e = self.edges
        out = [f"[{e[i]:g},{e[i + 1]:g})" for i in range(len(self) - 1)]
        out.append(f"[{e[-2]:g},{e[-1]:g}]")
        return out
