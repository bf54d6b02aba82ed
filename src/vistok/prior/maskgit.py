"""MaskGIT prior (Chang et al. 2022): a bidirectional transformer that fills masked positions.

Training: each item draws ``u ~ U(0, 1)``, masks ``ceil(cos(pi u / 2) * k)`` of its ``k``
positions (at least one) and is scored on the masked ones. Variable-length 1D tokens are
trained on nested prefixes: ``k`` is drawn uniformly from ``1..length`` and positions past
``k`` are hidden from attention, so the model can generate any prefix length.

Sampling (``steps`` iterations): predict every masked position, draw a token for each
(digit by digit, :class:`~vistok.prior.heads.DigitHead`), and keep the
``floor(n0 * cos(pi (t + 1) / (2 T)))`` least confident ones masked for the next step, where
confidence is the draw's log-probability plus Gumbel noise scaled by
``choice_temperature * (1 - (t + 1) / T)``. Given positions are never changed.

Reuses :class:`vistok.nn.Transformer` (pre-norm ViT blocks) and :class:`vistok.nn.PosEmb1d`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from vistok.nn import PosEmb1d, Transformer, init_weights
from vistok.prior.base import Prior, register_prior
from vistok.prior.heads import DigitEmbedding, DigitHead
from vistok.prior.sampling import SamplingConfig
from vistok.prior.space import TokenSpace

__all__ = ["MaskGITPrior"]


@register_prior("maskgit")
class MaskGITPrior(Prior):
    """Masked-token prior (see the module docstring).

    Args:
        space: what is generated.
        dim, depth, heads, mlp_ratio: transformer width, blocks, attention heads, MLP ratio.
        num_classes, class_dropout: class conditioning (see :class:`~vistok.prior.base.Prior`).
        steps: sampling iterations.
        choice_temperature: scale of the Gumbel noise on confidences (annealed to 0).
    """

    exact_likelihood = False

    def __init__(
        self,
        space: TokenSpace,
        *,
        dim: int = 256,
        depth: int = 6,
        heads: int = 4,
        mlp_ratio: float = 4.0,
        num_classes: int = 0,
        class_dropout: float = 0.1,
        steps: int = 12,
        choice_temperature: float = 4.5,
    ):
        super().__init__(space, dim, num_classes, class_dropout)
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps, self.choice_temperature = steps, choice_temperature
        self.embed = DigitEmbedding(space.digit_sizes, dim)
        self.mask_token = nn.Parameter(torch.zeros(dim))
        nn.init.normal_(self.mask_token, std=0.02)
        self.pos = PosEmb1d(space.positions, dim)
        self.transformer = Transformer(dim, depth, heads, mlp_ratio=mlp_ratio)
        self.head = DigitHead(space.digit_sizes, dim)
        self.transformer.apply(init_weights)
        self.head.apply(init_weights)

    def states(self, digits: Tensor, masked: Tensor, cond: Tensor, valid: Tensor | None = None) -> Tensor:
        """Backbone states ``[B, n, dim]`` for digits ``[B, n, M]`` with ``masked [B, n]``
        replaced by the mask token; ``valid [B, n]`` False hides a position from attention."""
        x = torch.where(
            masked[..., None], self.mask_token.to(self.embed.tables[0].weight.dtype), self.embed(digits)
        )
        x = x + self.pos(x.shape[1]).to(x.dtype)
        x = torch.cat([self.cond(cond)[:, None], x], dim=1)
        attn = None
        if valid is not None and not bool(valid.all()):
            keys = torch.cat([torch.ones_like(valid[:, :1]), valid], dim=1)
            attn = keys[:, None, None, :]
        return self.transformer(x, attn)[:, 1:]

    def loss(self, ids: Tensor, lengths: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood (nats) of the masked positions (cosine mask ratio)."""
        digits = self.space.to_digits(ids)
        b, n = digits.shape[:2]
        device = digits.device
        lengths = torch.full((b,), n, device=device) if lengths is None else lengths.to(device).clamp(1, n)
        if self.space.variable_length:  # nested prefixes: a uniform k in 1..length
            k = (torch.rand(b, device=device) * lengths).floor().long() + 1
        else:
            k = lengths
        ratio = torch.cos(math.pi / 2 * torch.rand(b, device=device))
        n_mask = (ratio * k).ceil().long().clamp(min=torch.ones_like(k), max=k)
        valid = torch.arange(n, device=device)[None] < k[:, None]
        scores = torch.rand(b, n, device=device).masked_fill(~valid, 2.0)
        rank = scores.argsort(1).argsort(1)
        masked = rank < n_mask[:, None]
        cond = self.condition_index(b, labels, device, train=True)
        h = self.states(digits, masked, cond, valid)
        lp = self.head.log_prob(h, digits)
        m = masked.to(lp.dtype)
        return -(lp * m).sum() / m.sum()

    @torch.no_grad()
    def sample(
        self,
        n: int,
        *,
        num_tokens: int | None = None,
        labels: Tensor | None = None,
        cfg_scale: float = 1.0,
        sampling: SamplingConfig = SamplingConfig(),
        generator: torch.Generator | None = None,
        given: Tensor | None = None,
        known: Tensor | None = None,
    ) -> Tensor:
        """Draw ``n`` items: long ids ``[n, *token_shape]`` (``[n, num_tokens, ...]`` for a cut 1D sequence).

        Args:
            num_tokens: 1D sequences only: generate this many tokens.
            labels, cfg_scale, sampling, generator: as :meth:`ARPrior.sample
                <vistok.prior.ar.ARPrior.sample>`.
            given: ids ``[n, *token_shape]`` (cut like the output) of positions to keep.
            known: bool ``[n, L]`` (positions in generation order): which of ``given`` to keep;
                default all of them when ``given`` is passed.
        """
        length = self.num_positions(num_tokens)
        device = self.cond.weight.device
        m = len(self.space.digit_sizes)
        if given is not None:
            digits = self.space.to_digits(given.to(device))
            if digits.shape[:2] != (n, length):
                raise ValueError(
                    f"given ids hold {tuple(digits.shape[:2])} (items, positions), want {(n, length)}"
                )
            known = (
                torch.ones(n, length, dtype=torch.bool, device=device) if known is None else known.to(device)
            )
        else:
            digits = torch.zeros(n, length, m, dtype=torch.long, device=device)
            known = torch.zeros(n, length, dtype=torch.bool, device=device)
        guided = self.guidance(labels, cfg_scale)
        cond = self.condition_index(n, labels, device, train=False)
        if guided:
            cond = torch.cat([cond, torch.full_like(cond, self.num_classes)])
        guide = self.guide_fn(n * length, cfg_scale) if guided else None  # rows: item x position
        g = cond.shape[0] // n
        n0 = (~known).sum(1)  # [n] positions to generate per item
        for t in range(self.steps):
            unknown = ~known
            if not bool(unknown.any()):
                break
            h = self.states(digits.repeat(g, 1, 1), unknown.repeat(g, 1), cond)
            d, lp = self.head.sample(h.reshape(-1, h.shape[-1]), sampling, generator=generator, guide=guide)
            d, lp = d.reshape(n, length, m), lp.reshape(n, length)
            frac = (t + 1) / self.steps
            keep_masked = (n0.double() * math.cos(math.pi / 2 * frac)).floor().long()
            left = unknown.sum(1)
            keep_masked = (
                torch.minimum(keep_masked, (left - 1).clamp_min(0)) if t + 1 < self.steps else keep_masked * 0
            )
            u = torch.rand(n, length, generator=generator, device=device, dtype=torch.float64).clamp(
                1e-20, 1 - 1e-12
            )
            gumbel = -torch.log(-torch.log(u))
            conf = lp.double() + self.choice_temperature * (1 - frac) * gumbel
            conf = conf.masked_fill(known, float("inf"))
            rank = conf.argsort(1).argsort(1)  # 0 = least confident
            reveal = unknown & (rank >= keep_masked[:, None])
            digits = torch.where(reveal[..., None], d, digits)
            known = known | reveal
        return self.space.from_digits(digits)
