"""Causal transformer blocks with rotary position embedding (RoPE) and a KV cache.

:class:`RoPEAttention` subclasses :class:`vistok.nn.Attention` (same ``qkv``/``proj``
parameters, same SDPA call) and only adds the rotation of queries and keys and the cache;
:class:`CausalBlock` is the pre-norm block of :class:`vistok.nn.TransformerBlock` with that
attention. Rotations are computed in float64 and cast, so the cached path and a full
recomputation rotate a position identically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.nn import MLP, Attention

__all__ = ["CausalBlock", "CausalTransformer", "KVCache", "RoPEAttention", "rope_angles"]


def rope_angles(positions: Tensor, head_dim: int, *, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """``(cos, sin)`` each ``[L, head_dim // 2]`` (float64) for integer ``positions [L]``."""
    if head_dim % 2:
        raise ValueError(f"RoPE needs an even head width, got {head_dim}")
    inv = 1.0 / base ** (
        torch.arange(0, head_dim, 2, dtype=torch.float64, device=positions.device) / head_dim
    )
    ang = positions.double()[:, None] * inv[None, :]
    return ang.cos(), ang.sin()


def _rotate(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate pairs ``(x[2i], x[2i+1])`` of ``x [B, H, L, Dh]`` by the angles of each position."""
    x1, x2 = x[..., 0::2], x[..., 1::2]
    c, s = cos.to(x.dtype), sin.to(x.dtype)
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2)


@dataclass
class KVCache:
    """Keys and values of one block, ``[B, H, max_len, Dh]`` each; ``length`` positions filled."""

    k: Tensor
    v: Tensor
    length: int = 0


class RoPEAttention(Attention):
    """Causal self-attention with RoPE; ``forward(x, start, cache)`` (see :class:`vistok.nn.Attention`)."""

    def forward(  # type: ignore[override]
        self, x: Tensor, start: int = 0, cache: KVCache | None = None, key_mask: Tensor | None = None
    ) -> Tensor:
        """``x``: ``[B, n, D]`` holding positions ``start .. start+n-1``.

        With ``cache``, keys/values are appended to it and the queries attend to all cached
        positions (and causally among themselves). ``key_mask``: bool ``[B, n]``, False for
        padding keys (full-sequence training only). Returns ``[B, n, D]``.
        """
        b, n, d = x.shape
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        cos, sin = rope_angles(torch.arange(start, start + n, device=x.device), self.head_dim)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        if cache is not None:
            if cache.length != start:
                raise ValueError(f"KV cache holds {cache.length} positions, got input starting at {start}")
            cache.k[:, :, start : start + n] = k
            cache.v[:, :, start : start + n] = v
            cache.length = start + n
            k, v = cache.k[:, :, : start + n], cache.v[:, :, : start + n]
        total = k.shape[2]
        if n == 1:
            mask = None  # one new query sees every cached key
        else:
            # query i (absolute start + i) sees keys 0 .. start + i
            qpos = torch.arange(start, start + n, device=x.device)[:, None]
            mask = torch.arange(total, device=x.device)[None, :] <= qpos
            if key_mask is not None:
                mask = mask[None, None] & key_mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class CausalBlock(nn.Module):
    """Pre-norm block: ``x + attn(norm(x))``, ``x + mlp(norm(x))`` with :class:`RoPEAttention`."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qk_norm: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = RoPEAttention(dim, num_heads, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(
        self, x: Tensor, start: int = 0, cache: KVCache | None = None, key_mask: Tensor | None = None
    ) -> Tensor:
        x = x + self.attn(self.norm1(x), start, cache, key_mask)
        return x + self.mlp(self.norm2(x))


class CausalTransformer(nn.Module):
    """``depth`` :class:`CausalBlock` s and a final LayerNorm, with per-block KV caches."""

    def __init__(
        self, dim: int, depth: int, num_heads: int, *, mlp_ratio: float = 4.0, qk_norm: bool = False
    ):
        super().__init__()
        self.num_heads = num_heads
        self.blocks = nn.ModuleList(
            CausalBlock(dim, num_heads, mlp_ratio=mlp_ratio, qk_norm=qk_norm) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def new_cache(self, batch: int, max_len: int, like: Tensor) -> list[KVCache]:
        """Empty caches for ``batch`` sequences of up to ``max_len`` positions (dtype/device of ``like``)."""
        dim = like.shape[-1]
        hd = dim // self.num_heads
        shape = (batch, self.num_heads, max_len, hd)
        return [KVCache(like.new_zeros(shape), like.new_zeros(shape)) for _ in range(len(self.blocks))]

    def forward(
        self,
        x: Tensor,
        start: int = 0,
        caches: list[KVCache] | None = None,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        """``x [B, n, D]`` at positions ``start..`` -> normalized ``[B, n, D]``."""
        for i, blk in enumerate(self.blocks):
            x = blk(x, start, None if caches is None else caches[i], key_mask)
        return self.norm(x)
