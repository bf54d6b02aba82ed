"""Exponential moving average of a model's weights (float32 shadow copies).

``decay_t = min(decay, (1 + t) / (10 + t))`` warms the average up, so early EMA weights
are not dominated by the random initialization. Buffers are copied, not averaged.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["EMA"]


class EMA:
    """Shadow copy ``self.module`` of ``model`` updated by :meth:`update` after each optimizer step."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Blend ``model``'s parameters in (``step`` = optimizer steps taken since EMA start)."""
        d = min(self.decay, (1 + step) / (10 + step))
        src = dict(model.named_parameters())
        for name, p in self.module.named_parameters():
            p.lerp_(src[name].detach().to(p.dtype), 1.0 - d)
        bufs = dict(model.named_buffers())
        for name, b in self.module.named_buffers():
            b.copy_(bufs[name])

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.module.load_state_dict(state)
