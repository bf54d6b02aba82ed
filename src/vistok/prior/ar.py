"""GPT-style autoregressive prior: causal transformer with RoPE, KV-cache sampling.

Positions are generated in raster order (2D grids) or sequence order (1D, coarse to fine).
Input ``t`` holds the token of position ``t - 1`` (input 0 is the condition: a class or the
null/start row) plus a learned embedding of the position it must predict, ``t``; RoPE rotates
queries and keys by the sequence index. The head predicts the position's digits one by one
(:class:`~vistok.prior.heads.DigitHead`), so the likelihood is exact.

Variable-length 1D tokens: the loss covers positions ``< length`` of each item. Because a
variable-length tokenizer's ``k`` tokens are the first ``k`` of its full encoding (nested
prefixes), one causal model trained this way models every prefix, and sampling stops after
any ``num_tokens``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vistok.nn import PosEmb1d, init_weights
from vistok.prior.base import Prior, register_prior
from vistok.prior.heads import DigitEmbedding, DigitHead
from vistok.prior.layers import CausalTransformer
from vistok.prior.sampling import SamplingConfig
from vistok.prior.space import TokenSpace

__all__ = ["ARPrior"]


@register_prior("ar")
class ARPrior(Prior):
    """Autoregressive prior (see the module docstring).

    Args:
        space: what is generated.
        dim, depth, heads, mlp_ratio: transformer width, blocks, attention heads, MLP ratio.
        num_classes, class_dropout: class conditioning (see :class:`~vistok.prior.base.Prior`).
    """

    exact_likelihood = True

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
    ):
        super().__init__(space, dim, num_classes, class_dropout)
        self.embed = DigitEmbedding(space.digit_sizes, dim)
        self.pos = PosEmb1d(space.positions, dim)
        self.transformer = CausalTransformer(dim, depth, heads, mlp_ratio=mlp_ratio)
        self.head = DigitHead(space.digit_sizes, dim)
        self.transformer.apply(init_weights)
        self.head.apply(init_weights)

    def _inputs(self, cond: Tensor, digits: Tensor) -> Tensor:
        """``[B, n, dim]`` inputs for positions ``0..n-1``: condition row, then tokens ``0..n-2``."""
        start = self.cond(cond)[:, None]
        x = torch.cat([start, self.embed(digits[:, :-1])], dim=1) if digits.shape[1] > 1 else start
        return x + self.pos(x.shape[1]).to(x.dtype)

    def log_prob_positions(self, ids: Tensor, labels: Tensor | None = None, *, train: bool = False) -> Tensor:
        """Log-likelihood (nats) of each position given the previous ones: ``[B, L']``."""
        digits = self.space.to_digits(ids)
        cond = self.condition_index(digits.shape[0], labels, digits.device, train=train)
        h = self.transformer(self._inputs(cond, digits))
        return self.head.log_prob(h, digits)

    def log_prob(self, ids: Tensor, lengths: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Log-likelihood (nats) of each item ``[B]`` over its first ``lengths`` positions."""
        lp = self.log_prob_positions(ids, labels)
        return (lp * self.valid_mask(lengths, *lp.shape, lp.device)).sum(1)

    def loss(self, ids: Tensor, lengths: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """Mean negative log-likelihood per valid position (nats); labels dropped at ``class_dropout``."""
        lp = self.log_prob_positions(ids, labels, train=True)
        valid = self.valid_mask(lengths, *lp.shape, lp.device).to(lp.dtype)
        return -(lp * valid).sum() / valid.sum().clamp_min(1)

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
        use_cache: bool = True,
    ) -> Tensor:
        """Draw ``n`` items: long ids ``[n, *token_shape]`` (``[n, num_tokens, ...]`` for a cut 1D sequence).

        Args:
            num_tokens: 1D sequences only: stop after this many tokens.
            labels: long ``[n]`` class labels (conditional priors); ``None``: unconditional.
            cfg_scale: classifier-free guidance ``u + s (c - u)`` on every digit's logits (1: off).
            sampling: temperature / top-k / top-p.
            generator: the random source (same seed -> same tokens, with or without cache).
            use_cache: keep keys/values (one new position per step); ``False`` recomputes the
                whole prefix at every step (the reference the cache must equal).
        """
        length = self.num_positions(num_tokens)
        device = self.cond.weight.device
        guided = self.guidance(labels, cfg_scale)
        cond = self.condition_index(n, labels, device, train=False)
        if guided:
            cond = torch.cat([cond, torch.full_like(cond, self.num_classes)])
        guide = self.guide_fn(n, cfg_scale) if guided else None
        g = cond.shape[0] // n
        digits = torch.zeros(cond.shape[0], 0, len(self.space.digit_sizes), dtype=torch.long, device=device)
        start = self.cond(cond)[:, None]
        caches = self.transformer.new_cache(cond.shape[0], length, start) if use_cache else None
        x = start + self.pos(1).to(start.dtype)
        for t in range(length):
            if use_cache:
                h = self.transformer(x, t, caches)[:, -1]
            else:
                padded = (
                    torch.cat([digits, digits[:, :1]], dim=1)
                    if t
                    else digits.new_zeros(digits.shape[0], 1, digits.shape[2])
                )
                h = self.transformer(self._inputs(cond, padded))[:, -1]
            d, _ = self.head.sample(h, sampling, generator=generator, guide=guide)
            d = d.repeat(g, 1)
            digits = torch.cat([digits, d[:, None]], dim=1)
            if use_cache and t + 1 < length:
                x = self.embed(d[:, None]) + self.pos(t + 2)[t + 1].to(start.dtype)
        return self.space.from_digits(digits[:n])
