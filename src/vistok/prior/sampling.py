"""Drawing one categorical value from logits: temperature, top-k, top-p (nucleus).

Every draw consumes exactly one uniform number per row from the caller's generator
(inverse-CDF sampling), so two code paths that compute the same logits (KV cache or full
recomputation) draw the same tokens from the same seed.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["SamplingConfig", "filter_logits", "sample_logits"]


@dataclass(frozen=True)
class SamplingConfig:
    """How to turn logits into a draw.

    Attributes:
        temperature: divides the logits; ``0`` means greedy (argmax).
        top_k: keep the ``k`` most likely values (``None``/``0``: all).
        top_p: keep the smallest set of values whose probability reaches ``p`` (``None``/``1``: all).
    """

    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and self.top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {self.top_k}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")


def filter_logits(logits: Tensor, cfg: SamplingConfig) -> Tensor:
    """Tempered logits ``[N, V]`` with values outside top-k / top-p set to ``-inf``."""
    x = logits.float() / max(cfg.temperature, 1e-8)
    if cfg.top_k and cfg.top_k < x.shape[-1]:
        kth = torch.topk(x, cfg.top_k, dim=-1).values[..., -1:]
        x = x.masked_fill(x < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1.0:
        sorted_x, order = torch.sort(x, dim=-1, descending=True)
        probs = sorted_x.softmax(-1)
        # drop a value when the mass strictly before it already reaches top_p (the first always stays)
        drop = (probs.cumsum(-1) - probs) >= cfg.top_p
        x = x.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return x


def sample_logits(logits: Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None) -> Tensor:
    """One draw per row of ``logits [N, V]`` -> long ``[N]``."""
    u = torch.rand(logits.shape[0], 1, generator=generator, device=logits.device, dtype=torch.float64)
    if cfg.temperature == 0:
        return logits.argmax(-1)
    probs = filter_logits(logits, cfg).double().softmax(-1)
    cdf = probs.cumsum(-1)
    idx = torch.searchsorted(cdf, u * cdf[:, -1:], right=True).squeeze(-1)
    return idx.clamp_max(logits.shape[-1] - 1)
