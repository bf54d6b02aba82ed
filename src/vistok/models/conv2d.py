"""``conv2d``: VQGAN-style convolutional tokenizer, a 2D grid of tokens at stride 4/8/16.

Encoder: stem -> levels of residual blocks with stride-2 downsampling -> mid block
(residual, optional self-attention, residual) -> ``latent_dim`` channels -> bottleneck
(any quantizer, or the Gaussian bottleneck). The decoder mirrors it with nearest
upsampling.

CPU efficiency: with ``stem=unshuffle`` the image is first folded space-to-depth
(``PixelUnshuffle``: ``[B, 3, H, W] -> [B, 3 s^2, H/s, W/s]``) and the decoder ends with
the inverse ``PixelShuffle``, so no 3x3 convolution runs at full resolution; that saves
most of the FLOPs of a VQGAN, whose first and last levels dominate. Convert the model to
``channels_last`` for the fastest CPU convolutions; inputs are converted to match.

Tokens: ``ids`` long ``[B, H/f, W/f]`` (``[..., K]`` for multi-codebook quantizers) or
``latents`` float16 ``[B, C, H/f, W/f]``. Any ``H, W`` that are multiples of ``f`` work.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models._base import LearnedTokenizer, ModelOutput
from vistok.nn.conv import AttnBlock2d, Downsample, NormKind, ResBlock, Upsample, make_norm
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens

__all__ = ["Conv2dTokenizer", "conv2d_levels"]


def conv2d_levels(factor: int, stem_factor: int) -> int:
    """Number of resolution levels for a total ``factor`` after a stem of ``stem_factor``."""
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"conv2d factor must be a power of two, got {factor}")
    if factor < stem_factor:
        raise ValueError(f"conv2d factor {factor} is smaller than the stem's {stem_factor}")
    return int(math.log2(factor // stem_factor)) + 1


class _Encoder(nn.Module):
    def __init__(
        self,
        chans: list[int],
        stem_factor: int,
        num_res_blocks: int,
        attention: bool,
        out_ch: int,
        norm: NormKind,
    ):
        super().__init__()
        self.stem_factor = stem_factor
        self.stem = nn.Conv2d(3 * stem_factor**2, chans[0], 3, padding=1)
        blocks: list[nn.Module] = []
        prev = chans[0]
        for i, ch in enumerate(chans):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(prev, ch, norm))
                prev = ch
            if i < len(chans) - 1:
                blocks.append(Downsample(ch))
        self.levels = nn.Sequential(*blocks)
        self.mid = nn.Sequential(
            ResBlock(prev, norm=norm),
            AttnBlock2d(prev, norm=norm) if attention else nn.Identity(),
            ResBlock(prev, norm=norm),
        )
        self.norm = make_norm(norm, prev)
        self.out = nn.Conv2d(prev, out_ch, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, 3, H, W]`` in [-1, 1] -> (latent ``[B, C, h, w]``, features ``[B, D, h, w]``)."""
        if self.stem_factor > 1:
            x = F.pixel_unshuffle(x, self.stem_factor)
        h = self.mid(self.levels(self.stem(x)))
        return self.out(F.silu(self.norm(h))), h


class _Decoder(nn.Module):
    def __init__(
        self,
        chans: list[int],
        stem_factor: int,
        num_res_blocks: int,
        attention: bool,
        in_ch: int,
        norm: NormKind,
    ):
        super().__init__()
        self.stem_factor = stem_factor
        top = chans[-1]
        self.inp = nn.Conv2d(in_ch, top, 3, padding=1)
        self.mid = nn.Sequential(
            ResBlock(top, norm=norm),
            AttnBlock2d(top, norm=norm) if attention else nn.Identity(),
            ResBlock(top, norm=norm),
        )
        blocks: list[nn.Module] = []
        prev = top
        for i in reversed(range(len(chans))):
            for _ in range(num_res_blocks):
                blocks.append(ResBlock(prev, chans[i], norm))
                prev = chans[i]
            if i > 0:
                blocks.append(Upsample(prev))
        self.levels = nn.Sequential(*blocks)
        self.norm = make_norm(norm, prev)
        self.out = nn.Conv2d(prev, 3 * stem_factor**2, 3, padding=1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, C, h, w]`` -> (image ``[B, 3, H, W]`` in ~[-1, 1], features ``[B, D, h, w]``)."""
        mid = self.mid(self.inp(z))
        x = self.out(F.silu(self.norm(self.levels(mid))))
        if self.stem_factor > 1:
            x = F.pixel_shuffle(x, self.stem_factor)
        return x, mid


@TOKENIZERS.register(
    "conv2d", doc="VQGAN-style conv tokenizer: 2D token grid at stride ``factor``; any quantizer."
)
class Conv2dTokenizer(LearnedTokenizer):
    """VQGAN-style convolutional tokenizer (see the module docstring).

    Args:
        factor: total downsampling ``f`` (a power of two, e.g. 4, 8, 16).
        width: channels of the first level.
        channel_mult: per-level width multipliers; ``None`` picks ``[1, 2, 2, 4, 4, ...]``
            cut to the number of levels (``log2(f / stem_factor) + 1``).
        num_res_blocks: residual blocks per level (encoder and decoder).
        attention: self-attention in the mid blocks.
        stem: ``"unshuffle"`` (space-to-depth by ``stem_factor``) or ``"conv"`` (a 3x3 conv
            at full resolution, the classic VQGAN).
        stem_factor: space-to-depth factor for ``stem="unshuffle"`` (2, 4 or 8).
        latent_dim: bottleneck channels ``C``.
        quantizer: quantizer spec (bracket it when it has commas).
        latent_norm: parameter-free LayerNorm on the latents before the bottleneck (guards
            FSQ/LFQ against saturation; no weights; recorded in the config like any parameter).
        image_size: native (training) size; sets ``max_tokens`` = ``(image_size / f)^2``.
        norm: feature normalization, ``channel`` (per-position LayerNorm over channels, the
            default: flat and smooth images keep their absolute level), ``group`` (VQGAN's
            GroupNorm: statistics over the whole map, so a flat image loses most of its level; the
            value of checkpoints saved before vistok 0.2) or ``none``.
    """

    def __init__(
        self,
        *,
        factor: int = 8,
        width: int = 64,
        channel_mult: list[int] | None = None,
        num_res_blocks: int = 1,
        attention: bool = False,
        stem: Literal["unshuffle", "conv"] = "unshuffle",
        stem_factor: int = 2,
        latent_dim: int = 4,
        quantizer: str = "fsq:levels=8-5-5-5",
        latent_norm: bool = False,
        image_size: int = 256,
        norm: NormKind = "channel",
    ):
        super().__init__(quantizer=quantizer, latent_dim=latent_dim, latent_norm=latent_norm)
        s = stem_factor if stem == "unshuffle" else 1
        if s not in (1, 2, 4, 8):
            raise ValueError(f"stem_factor must be 2, 4 or 8, got {stem_factor}")
        levels = conv2d_levels(factor, s)
        mult = list(channel_mult) if channel_mult is not None else ([1, 2, 2] + [4] * levels)[:levels]
        if len(mult) != levels:
            raise ValueError(
                f"channel_mult needs {levels} entries for factor={factor} with stem factor {s}, got {mult}"
            )
        if image_size % factor:
            raise ValueError(f"image_size {image_size} is not a multiple of factor {factor}")
        chans = [width * m for m in mult]
        self.encoder = _Encoder(chans, s, num_res_blocks, attention, latent_dim, norm)
        self.decoder = _Decoder(chans, s, num_res_blocks, attention, latent_dim, norm)
        self.factor = factor
        self.stride = factor
        self.input_size = None  # any multiple of `factor`
        self.image_size = image_size
        self.max_tokens = (image_size // factor) ** 2

    def _match_format(self, x: Tensor) -> Tensor:
        if self.encoder.stem.weight.is_contiguous(memory_format=torch.channels_last):
            return x.contiguous(memory_format=torch.channels_last)
        return x

    def _encode_z(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """[0, 1] images -> (channel-last latent ``[B, h, w, C]``, encoder features ``[B, D, h, w]``)."""
        z, feats = self.encoder(self._match_format(self.to_model(images)))
        return z.permute(0, 2, 3, 1), feats

    def _decode_z(self, zq: Tensor) -> tuple[Tensor, Tensor]:
        """Channel-last ``[B, h, w, C]`` -> (image ``[B, 3, H, W]`` in ~[-1, 1], decoder features)."""
        return self.decoder(self._match_format(zq.permute(0, 3, 1, 2)))

    def forward(self, images: Tensor) -> ModelOutput:
        """Training pass: float ``[B, 3, H, W]`` in [0, 1] -> :class:`ModelOutput`."""
        z, enc_feats = self._encode_z(images)
        q = self.quantize(z)
        x, dec_feats = self._decode_z(q.quantized)
        return ModelOutput(
            reconstruction=self.from_model(x),
            loss=q.loss,
            stats=q.stats,
            quantized=q.quantized.permute(0, 3, 1, 2),
            indices=q.indices,
            features={"encoder": enc_feats, "decoder": dec_feats},
        )

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, H, W]`` in [0, 1] (``H, W`` multiples of ``f``) -> :class:`Tokens`
        with ``ids [B, H/f, W/f(, K)]`` or float16 ``latents [B, C, H/f, W/f]``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        z, _ = self._encode_z(images)
        ids, lat = self.to_tokens(z)
        if lat is not None:
            lat = lat.permute(0, 3, 1, 2).contiguous()
        b, h, w = z.shape[:3]
        bits = torch.full((b,), self.token_bits(ids, lat, h * w) * h * w, dtype=torch.float64)
        return Tokens(bits=bits, ids=ids, latents=lat, meta={"size": [images.shape[-2], images.shape[-1]]})

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` from :meth:`encode` -> float ``[B, 3, f h, f w]`` in [0, 1]."""
        lat = None if tokens.latents is None else tokens.latents.permute(0, 2, 3, 1)
        x, _ = self._decode_z(self.from_tokens(tokens.ids, lat))
        return self.from_model(x).clamp(0.0, 1.0)


# ---- registry entries: the family is the class above (its constructor); its named sizes ----
TOKENIZERS.register_variant(
    "conv2d-tiny", "conv2d", width=16, channel_mult=[1, 2], stem_factor=4, image_size=32,
    doc="Tiny f8 conv tokenizer for tests (~0.1M parameters).",
)  # fmt: skip
TOKENIZERS.register_variant(
    "conv2d-f4", "conv2d", factor=4, width=64, channel_mult=[1, 2],
    doc="CPU-sized f4 conv tokenizer, space-to-depth stem.",
)  # fmt: skip
TOKENIZERS.register_variant(
    "conv2d-f8", "conv2d", factor=8, width=64, channel_mult=[1, 2, 2],
    doc="CPU-sized f8 conv tokenizer, space-to-depth stem, FSQ 8-5-5-5.",
)  # fmt: skip
TOKENIZERS.register_variant(
    "conv2d-f16", "conv2d", factor=16, width=64, channel_mult=[1, 2, 2, 4], attention=True, latent_dim=6,
    quantizer="fsq:levels=8-8-8-5-5-5",
    doc="CPU-sized f16 conv tokenizer, space-to-depth stem, mid attention, FSQ 8-8-8-5-5-5.",
)  # fmt: skip
TOKENIZERS.register_variant(
    "conv2d-l-f8", "conv2d", factor=8, width=128, channel_mult=[1, 1, 2, 4], num_res_blocks=2,
    attention=True, stem="conv", latent_dim=8, quantizer="vq:codebook_size=16384",
    doc="VQGAN-scale f8 (full-resolution conv stem, 2 res blocks per level, VQ 16384).",
)  # fmt: skip
TOKENIZERS.register_variant(
    "conv2d-l-f16", "conv2d", factor=16, width=128, channel_mult=[1, 1, 2, 2, 4], num_res_blocks=2,
    attention=True, stem="conv", latent_dim=8, quantizer="vq:codebook_size=16384",
    doc="VQGAN-scale f16 (full-resolution conv stem, 2 res blocks per level, VQ 16384).",
)  # fmt: skip
