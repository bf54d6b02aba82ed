"""Multi-head self-attention on ``torch.nn.functional.scaled_dot_product_attention``.

SDPA picks the fused kernel for the device (FlashAttention / memory-efficient on GPU,
a blocked kernel on CPU), so no module here materializes the attention matrix.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["MLP", "Attention"]


class Attention(nn.Module):
    """Self-attention over tokens ``[B, L, D]`` with a fused qkv projection.

    Args:
        dim: token width ``D`` (a multiple of ``num_heads``).
        num_heads: attention heads.
        qkv_bias: bias on the qkv projection.
        qk_norm: LayerNorm on queries and keys per head (stabilizes large models).
    """

    def __init__(self, dim: int, num_heads: int, *, qkv_bias: bool = True, qk_norm: bool = False):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"attention width {dim} is not a multiple of num_heads={num_heads}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.q_norm: nn.Module = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.k_norm: nn.Module = nn.LayerNorm(self.head_dim) if qk_norm else nn.Identity()
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x``: float ``[B, L, D]``; ``attn_mask``: bool/float broadcastable to
        ``[B, heads, L, L]`` (True = attend). Returns ``[B, L, D]``."""
        b, n, d = x.shape
        # [B, L, 3, H, Dh] -> [3, B, H, L, Dh]
        qkv = self.qkv(x).view(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class MLP(nn.Module):
    """``Linear -> GELU (tanh) -> Linear`` on ``[..., D]``."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU(approximate="tanh")
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))
