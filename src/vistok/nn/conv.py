"""Convolutional blocks for VQGAN-style encoders/decoders, on ``[B, C, H, W]`` maps.

All blocks work in either memory format; on CPU, ``model.to(memory_format=torch.channels_last)``
with channels-last inputs is usually the faster layout for 3x3 convolutions.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AttnBlock2d",
    "ChannelNorm",
    "Downsample",
    "NormKind",
    "ResBlock",
    "Upsample",
    "group_norm",
    "make_norm",
]

NormKind = Literal["group", "channel", "none"]


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count ``<= max_groups`` that divides ``channels``."""
    groups = math.gcd(channels, max_groups)
    return nn.GroupNorm(groups, channels, eps=1e-6)


class ChannelNorm(nn.Module):
    """LayerNorm over the channels at each position of ``[B, C, H, W]`` (with affine).

    Unlike GroupNorm it uses no statistics across positions, so a flat image is processed
    exactly like a flat region of a photo and its absolute level survives the network
    (GroupNorm, on a constant map, keeps only each group's pattern across its few channels).
    """

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:
        y = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return y.permute(0, 3, 1, 2)


def make_norm(kind: NormKind, channels: int) -> nn.Module:
    """The normalization layer of ``kind``: ``group`` (VQGAN's GroupNorm, 32 groups),
    ``channel`` (:class:`ChannelNorm`) or ``none`` (identity)."""
    if kind == "group":
        return group_norm(channels)
    if kind == "channel":
        return ChannelNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"norm must be group|channel|none, got {kind!r}")


class ResBlock(nn.Module):
    """``Norm-SiLU-Conv3x3-Norm-SiLU-Conv3x3`` (``norm``: see :func:`make_norm`) plus a (1x1-projected when widths differ) skip.

    ``[B, in_ch, H, W] -> [B, out_ch, H, W]``. The second conv starts at zero, so a fresh
    block is the identity on its skip path (stable deep stacks).
    """

    def __init__(self, in_ch: int, out_ch: int | None = None, norm: NormKind = "group"):
        super().__init__()
        out_ch = out_ch or in_ch
        self.norm1 = make_norm(norm, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.norm2 = make_norm(norm, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip: nn.Module = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Stride-2 3x3 conv: ``[B, C, H, W] -> [B, C, H/2, W/2]`` (H, W even)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest x2 then 3x3 conv: ``[B, C, H, W] -> [B, C, 2H, 2W]``."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class AttnBlock2d(nn.Module):
    """Residual multi-head self-attention over all ``H*W`` positions of a feature map.

    ``[B, C, H, W] -> [B, C, H, W]``; uses SDPA (no ``[HW, HW]`` matrix is materialized
    by the fused kernels). The output projection starts at zero (identity block).
    """

    def __init__(self, channels: int, num_heads: int = 1, norm: NormKind = "group"):
        super().__init__()
        if channels % num_heads:
            raise ValueError(f"attention channels {channels} not a multiple of num_heads={num_heads}")
        self.num_heads = num_heads
        self.norm = make_norm(norm, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        nh = self.num_heads
        # [B, 3C, H, W] -> [3, B, heads, HW, C/heads]
        qkv = self.qkv(self.norm(x)).reshape(b, 3, nh, c // nh, h * w).permute(1, 0, 2, 4, 3)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])
        out = out.permute(0, 1, 3, 2).reshape(b, c, h, w)
        return x + self.proj(out)
