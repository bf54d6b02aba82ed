"""The convolutional blocks of the VQGAN lineage (taming-transformers, LDM, LlamaGen, VAR, MAR).

Those releases all build their encoders and decoders from the same four blocks, and their
checkpoints name the blocks' tensors the same way, so the published families reuse these:

* :class:`ResnetBlock`: ``norm1, conv1, norm2, conv2`` and a ``nin_shortcut`` (1x1) or
  ``conv_shortcut`` (3x3) when the width changes;
* :class:`AttnBlock`: single-head spatial self-attention, ``norm, q, k, v, proj_out`` (1x1
  convs) or a fused ``qkv`` (VAR); computed with ``scaled_dot_product_attention``, the same
  softmax(q k^T / sqrt(C)) v as the originals' explicit ``bmm``;
* :class:`Downsample`: zero-pad right and bottom by one, then a stride-2 3x3 conv (or 2x2
  average pooling without conv);
* :class:`Upsample`: nearest-neighbour 2x, then a 3x3 conv.

Normalization is ``GroupNorm(groups, C, eps=1e-6)`` with 32 groups unless a family says
otherwise; the non-linearity is SiLU (``x * sigmoid(x)``). Maps are ``[B, C, H, W]``.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["AttnBlock", "Downsample", "ResnetBlock", "Upsample", "group_norm"]


def group_norm(channels: int, groups: int = 32, eps: float = 1e-6) -> nn.GroupNorm:
    """The lineage's normalization: ``GroupNorm(groups, channels, eps)`` with affine weights."""
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=eps, affine=True)


class ResnetBlock(nn.Module):
    """``x + conv2(drop(silu(norm2(conv1(silu(norm1(x)))))))`` with a shortcut when widths differ.

    Args:
        in_channels, out_channels: widths (``out_channels=None``: same as in).
        conv_shortcut: a 3x3 ``conv_shortcut`` instead of the 1x1 ``nin_shortcut``.
        dropout: dropout probability between the convs (inactive in eval).
        groups: GroupNorm groups.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int | None = None,
        *,
        conv_shortcut: bool = False,
        dropout: float = 0.0,
        groups: int = 32,
    ) -> None:
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = group_norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.use_conv_shortcut = conv_shortcut
        if in_channels != out_channels:
            if conv_shortcut:
                self.conv_shortcut = nn.Conv2d(in_channels, out_channels, 3, padding=1)
            else:
                self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        if self.in_channels != self.out_channels:
            x = self.conv_shortcut(x) if self.use_conv_shortcut else self.nin_shortcut(x)
        return x + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the ``H * W`` positions of a map, with a residual.

    Args:
        channels: width ``C``.
        fused_qkv: one 1x1 conv ``qkv`` to ``3C`` (VAR's layout) instead of ``q``, ``k``, ``v``.
        groups: GroupNorm groups.
    """

    def __init__(self, channels: int, *, fused_qkv: bool = False, groups: int = 32) -> None:
        super().__init__()
        self.fused_qkv = fused_qkv
        self.norm = group_norm(channels, groups)
        if fused_qkv:
            self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        else:
            self.q = nn.Conv2d(channels, channels, 1)
            self.k = nn.Conv2d(channels, channels, 1)
            self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        y = self.norm(x)
        if self.fused_qkv:
            q, k, v = self.qkv(y).chunk(3, dim=1)
        else:
            q, k, v = self.q(y), self.k(y), self.v(y)
        # [B, C, H, W] -> [B, 1, HW, C]: one head over all positions
        q, k, v = (t.reshape(b, 1, c, h * w).transpose(-1, -2) for t in (q, k, v))
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj_out(o)


class Downsample(nn.Module):
    """Halve ``H`` and ``W``: pad (0, 1, 0, 1) with zeros, then a stride-2 3x3 ``conv`` (or 2x2 avg pool)."""

    def __init__(self, channels: int, *, with_conv: bool = True) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        if self.with_conv:
            return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0.0))
        return F.avg_pool2d(x, kernel_size=2, stride=2)


class Upsample(nn.Module):
    """Double ``H`` and ``W`` by nearest-neighbour interpolation, then a 3x3 ``conv`` (optional)."""

    def __init__(self, channels: int, *, with_conv: bool = True) -> None:
        super().__init__()
        self.with_conv = with_conv
        if with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x
