"""The convolutional encoder and decoder of the VQGAN lineage, shared by the published families.

taming-transformers' VQGAN (``taming/modules/diffusionmodules/model.py``), latent-diffusion's
autoencoders and MAR's KL-16 VAE (``models/vae.py``, a copy of LDM's) build the same two
networks from the blocks of :mod:`vistok.nn.taming`, and their checkpoints name the tensors
the same way, so the families that load them (:mod:`vistok.models.zoo.taming`,
:mod:`vistok.models.zoo.mar`, ...) share these two classes; their state-dict keys are the
official ones (``encoder.down.N.block.M.conv1.weight``, ``mid.attn_1.q.weight``, ...).

Layout (``L = len(ch_mult)`` levels, widths ``ch * ch_mult[i]``):

* :class:`Encoder`: ``conv_in`` (3x3), then per level ``i`` the residual blocks
  ``down.i.block.j`` (``j < num_res_blocks``), each followed by ``down.i.attn.j`` when the
  level's nominal resolution (``resolution / 2**i``) is in ``attn_resolutions``, and a
  ``down.i.downsample`` on every level but the last; ``mid.block_1``, ``mid.attn_1``,
  ``mid.block_2``; ``norm_out``, SiLU, ``conv_out`` to ``z_channels`` (``2 * z_channels``
  with ``double_z``: the mean and log-variance of a KL autoencoder). Maps
  ``[B, in_channels, H, W]`` -> ``[B, z, H / 2**(L-1), W / 2**(L-1)]``.
* :class:`Decoder`: ``conv_in`` from ``z_channels``, the same middle, then per level from the
  deepest up ``num_res_blocks + 1`` blocks ``up.i.block.j`` (and ``up.i.attn.j``), an
  ``up.i.upsample`` on every level but the first; ``norm_out``, SiLU, ``conv_out`` to
  ``out_ch`` (optionally ``tanh``, or the features before ``norm_out`` with
  ``give_pre_end``).

Attention placement follows the nominal ``resolution`` of the configuration, not the size
of the input (as in the originals), so any multiple of the stride runs through the same
network. No timestep embedding (the originals' ``temb_ch`` is 0 in these autoencoders).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.nn.taming import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm

__all__ = ["Decoder", "Encoder"]


class _Level(nn.Module):
    """One resolution level: ``block`` (residual blocks), ``attn`` (one per block, or none) and a resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()

    def run(self, h: Tensor) -> Tensor:
        attn = self.attn if len(self.attn) else None
        for j, block in enumerate(self.block):
            h = block(h)
            if attn is not None:
                h = attn[j](h)
        return h


class _Middle(nn.Module):
    """``block_1``, ``attn_1``, ``block_2`` at the deepest level."""

    def __init__(self, channels: int, *, dropout: float, groups: int) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout=dropout, groups=groups)
        self.attn_1 = AttnBlock(channels, groups=groups)
        self.block_2 = ResnetBlock(channels, channels, dropout=dropout, groups=groups)

    def forward(self, h: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


class Encoder(nn.Module):
    """Images (or any ``in_channels`` map) ``[B, C, H, W]`` -> latent map ``[B, z, H/s, W/s]``, ``s = 2**(L-1)``.

    Args:
        ch: base width.
        ch_mult: width multiplier of each level (``L = len(ch_mult)`` levels).
        num_res_blocks: residual blocks per level.
        attn_resolutions: nominal resolutions whose blocks are followed by self-attention.
        resolution: the nominal input size that ``attn_resolutions`` refer to.
        z_channels: latent channels (``2 * z_channels`` out with ``double_z``).
        in_channels: input channels.
        double_z: output mean and log-variance (KL autoencoders).
        dropout: dropout inside the residual blocks (inactive in eval).
        resamp_with_conv: stride-2 conv downsampling (else 2x2 average pooling).
        groups: GroupNorm groups (32 in every release).
    """

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        resolution: int,
        z_channels: int,
        in_channels: int = 3,
        double_z: bool = False,
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        groups: int = 32,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        mults = (1, *tuple(ch_mult))
        res = resolution
        self.down = nn.ModuleList()
        block_in = ch
        for i in range(len(ch_mult)):
            level = _Level()
            block_in, block_out = ch * mults[i], ch * mults[i + 1]
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out, dropout=dropout, groups=groups))
                block_in = block_out
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in, groups=groups))
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(block_in, with_conv=resamp_with_conv)
                res //= 2
            self.down.append(level)
        self.mid = _Middle(block_in, dropout=dropout, groups=groups)
        self.norm_out = group_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, 2 * z_channels if double_z else z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            h = level.run(h)
            if i != last:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """Latent map ``[B, z, h, w]`` -> output ``[B, out_ch, h*s, w*s]`` (``s = 2**(L-1)``; images in ``[-1, 1]``).

    Args:
        ch, ch_mult, num_res_blocks, attn_resolutions, resolution, dropout, resamp_with_conv,
        groups: as for :class:`Encoder` (``num_res_blocks + 1`` blocks per level here).
        z_channels: latent channels in.
        out_ch: output channels.
        give_pre_end: return the last level's features (before ``norm_out``/``conv_out``).
        tanh_out: squash the output with ``tanh`` (some LDM configurations).
    """

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        resolution: int,
        z_channels: int,
        out_ch: int = 3,
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        give_pre_end: bool = False,
        tanh_out: bool = False,
        groups: int = 32,
    ) -> None:
        super().__init__()
        self.give_pre_end = give_pre_end
        self.tanh_out = tanh_out
        n = len(ch_mult)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (n - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _Middle(block_in, dropout=dropout, groups=groups)
        levels: list[_Level] = []
        for i in reversed(range(n)):
            level = _Level()
            block_out = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out, dropout=dropout, groups=groups))
                block_in = block_out
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in, groups=groups))
            if i != 0:
                level.upsample = Upsample(block_in, with_conv=resamp_with_conv)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)  # up[i] is level i (i = 0: full resolution), run deepest first
        self.norm_out = group_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, out_ch, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            h = level.run(h)
            if i != 0:
                h = level.upsample(h)
        if self.give_pre_end:
            return h
        h = self.conv_out(F.silu(self.norm_out(h)))
        return torch.tanh(h) if self.tanh_out else h
