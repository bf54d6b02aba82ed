"""Input embedding and output head over the digits of a position (:class:`~vistok.prior.space.TokenSpace`).

**Decision: digits are predicted autoregressively within a position.** The head turns the
backbone's state ``h`` of a position into digit 1's logits, then adds a learned embedding
of digit 1 to ``h`` and predicts digit 2, and so on::

    z_1 = h;  z_{j+1} = z_j + C_j[d_j];  p(d_j | h, d_<j) = softmax(W_j GELU(A_j LN(z_j)))

so ``log p(id) = Σ_j log p(d_j | h, d_<j)`` exactly, and the distribution is normalized over
the full vocabulary. Independent digit heads were rejected: FSQ/LFQ digits are coordinates
of one latent vector and strongly dependent, so a product of marginals cannot represent
even a two-colour image's code distribution. The cost is ``M`` small softmaxes per
position (vistok-f8's 64,000 codes: a 512-way and a 125-way) instead of one 64,000-way.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.prior.sampling import SamplingConfig, sample_logits

__all__ = ["DigitEmbedding", "DigitHead"]


class DigitEmbedding(nn.Module):
    """Digits ``[B, L, M]`` -> ``[B, L, dim]``: the sum of one embedding table per digit."""

    def __init__(self, digit_sizes: list[int], dim: int):
        super().__init__()
        self.tables = nn.ModuleList(nn.Embedding(s, dim) for s in digit_sizes)
        for t in self.tables:
            nn.init.normal_(t.weight, std=0.02)

    def forward(self, digits: Tensor) -> Tensor:
        out = self.tables[0](digits[..., 0])
        for j in range(1, len(self.tables)):
            out = out + self.tables[j](digits[..., j])
        return out


class DigitHead(nn.Module):
    """Within-position autoregressive head over digit sizes ``[s_1, ..., s_M]`` (see module doc)."""

    def __init__(self, digit_sizes: list[int], dim: int):
        super().__init__()
        self.sizes = list(digit_sizes)
        self.norms = nn.ModuleList(nn.LayerNorm(dim, eps=1e-6) for _ in self.sizes)
        self.hidden = nn.ModuleList(nn.Linear(dim, dim) for _ in self.sizes)
        self.out = nn.ModuleList(nn.Linear(dim, s) for s in self.sizes)
        # embeddings of digits 1..M-1 that condition the later digits
        self.cond = nn.ModuleList(nn.Embedding(s, dim) for s in self.sizes[:-1])
        for c in self.cond:
            nn.init.normal_(c.weight, std=0.02)

    def digit_logits(self, z: Tensor, j: int) -> Tensor:
        """Logits ``[..., s_j]`` of digit ``j`` from state ``z [..., dim]``."""
        return self.out[j](F.gelu(self.hidden[j](self.norms[j](z)), approximate="tanh"))

    def log_prob(self, h: Tensor, digits: Tensor) -> Tensor:
        """Log-likelihood (nats) of ``digits [..., M]`` given states ``h [..., dim]`` -> ``[...]``
        (teacher forcing: every digit sees the true previous ones)."""
        z = h
        dtype = torch.promote_types(h.dtype, torch.float32)  # float32 under autocast, float64 stays
        total = h.new_zeros(h.shape[:-1], dtype=dtype)
        for j in range(len(self.sizes)):
            logp = self.digit_logits(z, j).to(dtype).log_softmax(-1)
            total = total + logp.gather(-1, digits[..., j : j + 1].long()).squeeze(-1)
            if j + 1 < len(self.sizes):
                z = z + self.cond[j](digits[..., j])
        return total

    @torch.no_grad()
    def sample(
        self,
        h: Tensor,
        cfg: SamplingConfig,
        *,
        generator: torch.Generator | None = None,
        guide: Callable[[Tensor], Tensor] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Draw digits for states ``h [N, dim]`` (or ``[G*N, dim]`` with ``guide``).

        Args:
            cfg: temperature / top-k / top-p, applied to each digit's distribution.
            guide: maps the logits of all ``G*N`` rows to ``N`` guided rows
                (classifier-free guidance); the drawn digit is fed back to every copy.

        Returns:
            ``(digits [N, M], log_prob [N])``: the draw and its log-probability under the
            model (guided, untempered, unfiltered) -- MaskGIT's confidence.
        """
        z = h
        picks, logp_total = [], None
        for j in range(len(self.sizes)):
            logits = self.digit_logits(z, j)
            logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
            if guide is not None:
                logits = guide(logits)
            d = sample_logits(logits, cfg, generator)
            lp = logits.log_softmax(-1).gather(-1, d[:, None]).squeeze(-1)
            logp_total = lp if logp_total is None else logp_total + lp
            picks.append(d)
            if j + 1 < len(self.sizes):
                e = self.cond[j](d)
                z = z + (e.repeat(z.shape[0] // e.shape[0], 1) if guide is not None else e)
        assert logp_total is not None
        return torch.stack(picks, dim=-1), logp_total
