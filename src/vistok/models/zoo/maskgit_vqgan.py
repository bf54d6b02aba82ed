"""MaskGIT-VQGAN: the f16 VQGAN of MaskGIT (1024 codes), as 1d-tokenizer ships it.

Name: ``maskgit-vqgan`` (256x256 ImageNet, 16x16 grid of ids into 1024 codes of 256 dims).

Official source: ``bytedance/1d-tokenizer`` ``modeling/modules/maskgit_vqgan.py`` (a port of
open-muse's PyTorch conversion of the JAX MaskGIT tokenizer; the frozen ``PretrainedTokenizer``
of ``modeling/titok.py`` builds it). The release is a bare state dict
``fun-research/TiTok/maskgit-vqgan-imagenet-f16-256.bin`` with ``encoder.*``, ``decoder.*`` and
``quantize.embedding.weight``; the legacy TiTok releases carry the same decoder and codebook
under ``pixel_decoder.*`` / ``pixel_quantize.*`` (:class:`Decoder` and :class:`Codebook` here
are reused by :mod:`vistok.models.zoo.titok`).

Architecture, as in the official code: no attention; bias-free 3x3 convolutions in the
residual blocks; 2x2 average pooling to downsample; nearest 2x + 3x3 conv to upsample;
``GroupNorm(32, eps=1e-6)``; SiLU. Images are read and written in ``[0, 1]`` (no
``[-1, 1]`` mapping: the official tokenizer takes ``ToTensor`` images and clamps its output
to ``[0, 1]``).

Deviations: none in the numerics. The official "same" padding is computed per call; every
convolution here has stride 1 and an odd kernel, where it is the fixed symmetric padding
``k // 2`` used below. Kept on purpose: the official residual block applies its 1x1
``nin_shortcut`` to the block's *output* (not its input) when the width changes; the released
weights were trained that way, so this port does the same.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models.zoo._base import PublishedTokenizer
from vistok.quantize._search import code_neighbours
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens
from vistok.utils.checkpoints import read_state_dict

__all__ = ["Codebook", "Decoder", "Encoder", "MaskGITVQGAN", "ResnetBlock"]


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """``h = conv2(silu(norm2(conv1(silu(norm1(x))))))``; returns ``h + x`` (same width) or
    ``h + nin_shortcut(h)`` (width change, the official wiring). ``[B, Cin, H, W] -> [B, Cout, H, W]``."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = _norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.changes = in_channels != out_channels
        if self.changes:
            self.nin_shortcut = nn.Conv2d(out_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return h + (self.nin_shortcut(h) if self.changes else x)


class _Level(nn.Module):
    """One resolution: ``block`` (residual blocks), then 2x2 average pooling (encoder) or
    nearest 2x + ``upsample_conv`` (decoder) when ``resample``."""

    def __init__(self, cin: int, cout: int, num_res_blocks: int, *, up: bool, resample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout) for i in range(num_res_blocks))
        self.up, self.resample = up, resample
        if up and resample:
            self.upsample_conv = nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        for blk in self.block:
            x = blk(x)
        if self.resample:
            if self.up:
                x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
            else:
                x = F.avg_pool2d(x, kernel_size=2, stride=2)
        return x


class Encoder(nn.Module):
    """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ``[B, z_channels, H/f, W/f]``, ``f = 2^(levels-1)``."""

    def __init__(
        self, hidden_channels: int, channel_mult: Sequence[int], num_res_blocks: int, z_channels: int
    ) -> None:
        super().__init__()
        mult = tuple(channel_mult)
        self.conv_in = nn.Conv2d(3, hidden_channels, 3, padding=1, bias=False)
        ins = (1, *mult)
        self.down = nn.ModuleList(
            _Level(
                hidden_channels * ins[i],
                hidden_channels * mult[i],
                num_res_blocks,
                up=False,
                resample=i != len(mult) - 1,
            )
            for i in range(len(mult))
        )
        mid = hidden_channels * mult[-1]
        self.mid = nn.ModuleList(ResnetBlock(mid, mid) for _ in range(num_res_blocks))
        self.norm_out = _norm(mid)
        self.conv_out = nn.Conv2d(mid, z_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for level in self.down:
            x = level(x)
        for blk in self.mid:
            x = blk(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Decoder(nn.Module):
    """``[B, z_channels, h, w]`` -> images ``[B, 3, h f, w f]`` (unclamped; ~``[0, 1]``)."""

    def __init__(
        self, hidden_channels: int, channel_mult: Sequence[int], num_res_blocks: int, z_channels: int
    ) -> None:
        super().__init__()
        mult = tuple(channel_mult)
        top = hidden_channels * mult[-1]
        self.conv_in = nn.Conv2d(z_channels, top, 3, padding=1)
        self.mid = nn.ModuleList(ResnetBlock(top, top) for _ in range(num_res_blocks))
        # up[i] works at level i (its input: level i+1's width, or the top width for the last)
        self.up = nn.ModuleList(
            _Level(
                hidden_channels * (mult[i + 1] if i + 1 < len(mult) else mult[-1]),
                hidden_channels * mult[i],
                num_res_blocks,
                up=True,
                resample=i != 0,
            )
            for i in range(len(mult))
        )
        self.norm_out = _norm(hidden_channels * mult[0])
        self.conv_out = nn.Conv2d(hidden_channels * mult[0], 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        x = self.conv_in(z)
        for blk in self.mid:
            x = blk(x)
        for level in reversed(self.up):
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class Codebook(nn.Module):
    """The MaskGIT codebook ``embedding [K, D]``: nearest-code search (squared L2) and lookup."""

    def __init__(self, num_embeddings: int, embedding_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(num_embeddings, embedding_dim)

    def distances(self, z: Tensor) -> Tensor:
        """``z [M, D]`` -> squared distances ``[M, K]`` (the official ``addmm`` form)."""
        e = self.embedding.weight.t()
        return torch.addmm(z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(0, keepdim=True), z, e, alpha=-2.0)

    def indices(self, z: Tensor) -> Tensor:
        """Channel-first ``z [B, D, h, w]`` -> long ids ``[B, h, w]``."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        return self.distances(flat).argmin(1).view(b, h, w)

    def lookup(self, ids: Tensor) -> Tensor:
        """Long ids ``[B, h, w]`` -> channel-first codes ``[B, D, h, w]``."""
        return F.embedding(ids, self.embedding.weight).permute(0, 3, 1, 2)

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes (squared L2) of each id: ``[...] -> [..., k]``."""
        return code_neighbours(self.embedding.weight, ids, k)


@TOKENIZERS.register("maskgit-vqgan", doc="MaskGIT VQGAN f16, 1024 codes (1d-tokenizer's pixel tokenizer).")
class MaskGITVQGAN(PublishedTokenizer):
    """MaskGIT-VQGAN: images ``[B, 3, H, W]`` in ``[0, 1]`` (H, W multiples of ``2^(levels-1)``)
    <-> ids ``[B, H/f, W/f]`` into ``num_embeddings`` codes.

    Args:
        hidden_channels: width of the first level (a multiple of 32: GroupNorm(32)).
        channel_mult: width multiplier per level; ``len(channel_mult)`` levels, stride
            ``2^(levels-1)``.
        num_res_blocks: residual blocks per level and in the middle.
        z_channels: code dimension.
        num_embeddings: codebook size.
        weights, pretrained, hub: where the release comes from (see ``PublishedTokenizer``).
    """

    kind: ClassVar[str] = "discrete"  # type: ignore[assignment]
    formats: ClassVar[str] = "bare torch state dict .bin (encoder.*, decoder.*, quantize.embedding.weight)"
    official: ClassVar[str] = "bytedance/1d-tokenizer modeling/modules/maskgit_vqgan.py"
    state_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        hidden_channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        num_embeddings: int = 1024,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "fun-research/TiTok/maskgit-vqgan-imagenet-f16-256.bin",
    ) -> None:
        super().__init__()
        if hidden_channels % 32:
            raise ValueError(
                f"hidden_channels must be a multiple of 32 (GroupNorm(32)), got {hidden_channels}"
            )
        self.encoder = Encoder(hidden_channels, channel_mult, num_res_blocks, z_channels)
        self.decoder = Decoder(hidden_channels, channel_mult, num_res_blocks, z_channels)
        self.quantize = Codebook(num_embeddings, z_channels)
        self.stride = 2 ** (len(channel_mult) - 1)
        self.vocab_size = num_embeddings
        self.max_tokens = (256 // self.stride) ** 2
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def read_official(self, path: Path) -> dict[str, Tensor]:
        return read_state_dict(path, keys=self.state_keys)

    @property
    def has_neighbours(self) -> bool:
        return True

    def embed(self, ids: Tensor) -> Tensor:
        """Long ids ``[...]`` -> code vectors ``[..., z_channels]``."""
        return F.embedding(ids, self.quantize.embedding.weight)

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes (squared L2) of each id: long ``[...] -> [..., k]``."""
        return self.quantize.neighbours(ids, k)

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, H, W]`` in ``[0, 1]`` -> ``ids [B, H/f, W/f]``, ``bits = h w log2(K)``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        x = images.float().contiguous(memory_format=torch.channels_last)  # faster convolutions on CPUs
        ids = self.quantize.indices(self.encoder(x))
        b, h, w = ids.shape
        return Tokens(bits=self.rate(b, h * w, self.index_bits(self.vocab_size or 1)), ids=ids)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` with ``ids [B, h, w]`` -> float ``[B, 3, h f, w f]`` in ``[0, 1]``."""
        if tokens.ids is None or tokens.ids.ndim != 3:
            raise ValueError(f"{self.spec}: decode needs ids [B, h, w]")
        return self.decoder(self.quantize.lookup(tokens.ids)).clamp(0.0, 1.0)
