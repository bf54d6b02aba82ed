"""VAR's multi-scale VQVAE: the tokenizer of Visual AutoRegressive modeling (next-scale prediction).

Tian et al., *Visual Autoregressive Modeling: Scalable Image Generation via Next-Scale
Prediction* (NeurIPS 2024). A VQGAN-style convolutional encoder / decoder (the LDM vq-f16
layout: ``ch_mult = (1, 1, 2, 2, 4)``, two residual blocks per level, fused-qkv self-attention
at the lowest resolution and in the middle) around a *multi-scale residual* quantizer: the
``[B, Cvae, 16, 16]`` feature map is area-downsampled to each scale of ``patch_nums`` in turn
(``1, 2, 3, 4, 5, 6, 8, 10, 13, 16``), quantized against one shared codebook, upsampled back
(bicubic), passed through a scale-dependent ``phi`` (a 3x3 conv mixed with the identity by
``quant_resi``: ``phi(h) = (1 - r) h + r conv(h)``; four convs shared across the ten scales by
nearest "tick"), and subtracted from the residual. Decoding sums the ``phi``-ed, upsampled
embeddings of every scale and runs the decoder.

Names:

* ``var-vqvae``: ``vae_ch160v4096z32.pth`` as VAR uses it at 256x256 (VAR-d16..d30):
  10 scales, 680 tokens, codebook 4096 x 32, ``ch = 160``; 108.9 M parameters.
* ``var-vqvae-512``: the same weights with VAR-d36's 512x512 scale list
  ``(1, 2, 3, 4, 6, 9, 13, 18, 24, 32)`` (2240 tokens). The VQVAE itself was trained at 256.

Official source: FoundationVision/VAR ``models/vqvae.py`` (``VQVAE``), ``models/quant.py``
(``VectorQuantizer2``, ``Phi*``), ``models/basic_vae.py`` (``Encoder``, ``Decoder``).

Checkpoint: a plain ``torch.save`` state dict of ``VQVAE`` (no nesting). Keys match this
module's apart from the ``phi`` container: ``quantize.quant_resi.qresi_ls.{i}.*`` (partially
shared, the release), ``quantize.quant_resi.qresi.*`` (fully shared) or
``quantize.quant_resi.{i}.*`` (not shared) all load into ``quantize.quant_resi.{i}.*``. The
training-only codebook-usage statistic ``quantize.ema_vocab_hit_SV`` is dropped.

Tokens: ids long ``[B, N]``, all scales coarse to fine, each scale row-major
(``N = sum(p * p)``: 680); ``meta["patch_nums"]`` lists the scales held. ``num_tokens=k``
(and ``NAME@k``) keeps the first whole scales: ``k`` must be a scale boundary
(1, 5, 14, 30, 55, 91, 155, 255, 424, 680); decoding a prefix is the partial sum ``f_hat``
of the scales held, exactly VAR's intermediate reconstructions. Inputs are mapped to
``[-1, 1]`` (VAR's ``normalize_01_into_pm1``); outputs are clamped there, as
``fhat_to_img`` does.

Input size: the last scale must equal the feature map, so the model takes square images of
``16 * patch_nums[-1]`` pixels only (256 for ``var-vqvae``); other sizes need another
``patch_nums`` (``var-vqvae-512``, or ``patch_nums=[...]``).

Deviations: none in the computation. The encoder stops after the scales asked for and does not
form the (unused) last-scale residual; the decoder rebuilds ``f_hat`` from the ids exactly as
``VQVAE.idxBl_to_img`` / ``embed_to_fhat`` do. ``ch_mult``, ``num_res_blocks`` and
``norm_groups`` are spec keys (fixed in the official ``VQVAE``; the parity fixtures use small
values of them).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models.zoo._base import PublishedTokenizer
from vistok.nn.taming import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm
from vistok.quantize._search import code_neighbours
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens
from vistok.utils.checkpoints import read_state_dict

__all__ = ["VARVQVAE", "VARDecoder", "VAREncoder", "VARPhi", "VARQuantizer", "phi_ticks"]

PATCH_NUMS_256 = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16)
PATCH_NUMS_512 = (1, 2, 3, 4, 6, 9, 13, 18, 24, 32)


class _ResnetBlock(ResnetBlock):
    """:class:`~vistok.nn.taming.ResnetBlock` (same keys) with VAR's in-place SiLU and residual add.

    Bit-identical to the shared block (dropout is 0 in every VAR VQVAE); it only saves two
    full-size temporaries per block.
    """

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        return h.add_(x if self.in_channels == self.out_channels else self.nin_shortcut(x))


class _AttnBlock(AttnBlock):
    """:class:`~vistok.nn.taming.AttnBlock` with ``fused_qkv`` (same keys), scored as VAR scores it.

    ``scaled_dot_product_attention`` agrees with VAR's two ``bmm`` to about 1e-6; the encoder's
    features feed an argmin over the codebook, so this block keeps VAR's order of operations
    (scores ``q^T k`` scaled after the product, softmax, ``v w^T``) and gives its exact bits.
    The maps are small (16x16 for 256x256 images), so the cost is negligible.
    """

    def __init__(self, channels: int, *, groups: int) -> None:
        super().__init__(channels, fused_qkv=True, groups=groups)
        self.scale = int(channels) ** -0.5

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        scores = torch.bmm(q.transpose(1, 2).contiguous(), k.contiguous()).mul_(
            self.scale
        )  # [B, HW(q), HW(k)]
        probs = F.softmax(scores, dim=2).transpose(1, 2).contiguous()  # [B, HW(k), HW(q)]
        o = torch.bmm(v.contiguous(), probs).view(b, c, h, w)  # [B, C, HW(q)]
        return x + self.proj_out(o)


class _Level(nn.Module):
    """One resolution of the encoder/decoder: ``block`` (ResnetBlocks), ``attn``, and a resampler."""

    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleList()
        self.attn = nn.ModuleList()


class _Mid(nn.Module):
    """``block_1 -> attn_1 -> block_2`` at the lowest resolution."""

    def __init__(self, channels: int, *, attn: bool, groups: int) -> None:
        super().__init__()
        self.block_1 = _ResnetBlock(channels, channels, groups=groups)
        self.attn_1 = _AttnBlock(channels, groups=groups) if attn else nn.Identity()
        self.block_2 = _ResnetBlock(channels, channels, groups=groups)

    def forward(self, x: Tensor) -> Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class VAREncoder(nn.Module):
    """Images ``[B, 3, H, W]`` in ``[-1, 1]`` -> features ``[B, z_channels, H / 2^(L-1), W / 2^(L-1)]``.

    ``L = len(ch_mult)`` levels of ``num_res_blocks`` ResnetBlocks; attention after every
    block of the last level (``using_sa``) and in the middle (``using_mid_sa``).
    """

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        using_sa: bool,
        using_mid_sa: bool,
        groups: int,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_resolutions = len(ch_mult)
        self.num_res_blocks = num_res_blocks
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        in_mult = (1, *ch_mult)
        self.down = nn.ModuleList()
        block_in = ch
        for i in range(self.num_resolutions):
            level = _Level()
            block_in, block_out = ch * in_mult[i], ch * ch_mult[i]
            last = i == self.num_resolutions - 1
            for _ in range(num_res_blocks):
                level.block.append(_ResnetBlock(block_in, block_out, groups=groups))
                block_in = block_out
                if last and using_sa:
                    level.attn.append(_AttnBlock(block_in, groups=groups))
            if not last:
                level.downsample = Downsample(block_in)
            self.down.append(level)
        self.mid = _Mid(block_in, attn=using_mid_sa, groups=groups)
        self.norm_out = group_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for i, level in enumerate(self.down):
            attn = level.attn
            for j, block in enumerate(level.block):
                h = block(h)
                if len(attn):
                    h = attn[j](h)
            if i != self.num_resolutions - 1:
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))


class VARDecoder(nn.Module):
    """Features ``[B, z_channels, h, w]`` -> images ``[B, 3, h 2^(L-1), w 2^(L-1)]`` (about ``[-1, 1]``).

    ``num_res_blocks + 1`` ResnetBlocks per level, attention after each block of the lowest
    resolution (``using_sa``) and in the middle (``using_mid_sa``).
    """

    def __init__(
        self,
        *,
        ch: int,
        ch_mult: tuple[int, ...],
        num_res_blocks: int,
        z_channels: int,
        using_sa: bool,
        using_mid_sa: bool,
        groups: int,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_resolutions = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = _Mid(block_in, attn=using_mid_sa, groups=groups)
        levels: list[_Level] = []
        for i in reversed(range(self.num_resolutions)):
            level = _Level()
            block_out = ch * ch_mult[i]
            for _ in range(num_res_blocks + 1):
                level.block.append(_ResnetBlock(block_in, block_out, groups=groups))
                block_in = block_out
                if i == self.num_resolutions - 1 and using_sa:
                    level.attn.append(_AttnBlock(block_in, groups=groups))
            if i != 0:
                level.upsample = Upsample(block_in)
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in, groups)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.mid(self.conv_in(z))
        for i in reversed(range(self.num_resolutions)):
            level = self.up[i]
            attn = level.attn
            for j, block in enumerate(level.block):
                h = block(h)
                if len(attn):
                    h = attn[j](h)
            if i != 0:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))


class VARPhi(nn.Conv2d):
    """``phi(h) = (1 - r) h + r conv3x3(h)`` on ``[B, C, h, w]`` (``r = |quant_resi|``)."""

    def __init__(self, channels: int, quant_resi: float) -> None:
        super().__init__(channels, channels, 3, padding=1)
        self.resi_ratio = abs(quant_resi)

    def forward(self, h: Tensor) -> Tensor:
        return h.mul(1.0 - self.resi_ratio) + super().forward(h).mul_(self.resi_ratio)


def phi_ticks(count: int) -> np.ndarray:
    """Where the ``count`` shared ``phi`` convs sit on ``[0, 1]`` (VAR's float64 ticks)."""
    if count == 4:
        return np.linspace(1 / 3 / count, 1 - 1 / 3 / count, count)
    return np.linspace(1 / 2 / count, 1 - 1 / 2 / count, count)


class VARQuantizer(nn.Module):
    """Multi-scale residual quantizer over one codebook ``embedding [V, C]``.

    ``quant_resi`` holds the ``phi`` convs (``share_quant_resi`` of them; 1: one for all
    scales; 0: ``default_qresi_counts or len(patch_nums)``); scale ``si`` uses the one whose
    tick is nearest ``si / (S - 1)``, as VAR picks it. ``|quant_resi| <= 1e-6`` makes every
    ``phi`` the identity.
    """

    def __init__(
        self,
        vocab_size: int,
        channels: int,
        patch_nums: tuple[int, ...],
        *,
        using_znorm: bool,
        quant_resi: float,
        share_quant_resi: int,
        default_qresi_counts: int,
    ) -> None:
        super().__init__()
        if len(patch_nums) < 2:
            raise ValueError(
                f"patch_nums needs at least two scales (VAR places phi by si / (S - 1)), got {patch_nums}"
            )
        self.vocab_size, self.channels = vocab_size, channels
        self.patch_nums = tuple(int(p) for p in patch_nums)
        self.using_znorm = using_znorm
        if share_quant_resi == 0:
            count = default_qresi_counts or len(self.patch_nums)
        elif share_quant_resi == 1:
            count = 1
        else:
            count = share_quant_resi
        identity = abs(quant_resi) <= 1e-6
        self.quant_resi = nn.ModuleList(
            [nn.Identity() if identity else VARPhi(channels, quant_resi) for _ in range(count)]
        )
        n = len(self.patch_nums)
        if count == 1:
            self.phi_index = [0] * n
        else:
            ticks = phi_ticks(count)
            self.phi_index = [int(np.argmin(np.abs(ticks - si / (n - 1)))) for si in range(n)]
        self.embedding = nn.Embedding(vocab_size, channels)
        self.offsets = [0]
        for p in self.patch_nums:
            self.offsets.append(self.offsets[-1] + p * p)

    def phi(self, si: int) -> nn.Module:
        """The ``phi`` of scale ``si``."""
        return self.quant_resi[self.phi_index[si]]

    @torch.no_grad()
    def f_to_ids(self, f: Tensor, scales: int) -> Tensor:
        """Features ``[B, C, P, P]`` (``P = patch_nums[-1]``) -> ids long ``[B, offsets[scales]]``.

        The residual of each scale is area-pooled to ``p x p``, matched to the nearest code
        (l2; cosine with ``using_znorm``), and its ``phi``-ed bicubic upsampling is taken
        off the residual; the last scale asked for leaves the residual as it is.
        """
        b, c, h, w = f.shape
        n = len(self.patch_nums)
        if (h, w) != (self.patch_nums[-1],) * 2:
            raise ValueError(f"feature map {h}x{w} does not match the last scale {self.patch_nums[-1]}")
        weight = self.embedding.weight
        if self.using_znorm:
            code_t = F.normalize(weight.T, dim=0)
        else:
            code_sq = torch.sum(weight.square(), dim=1, keepdim=False)
            code_t = weight.T
        rest = f.float()  # consumed in place: the caller's quant_conv output is not reused
        out = []
        for si in range(scales):
            pn = self.patch_nums[si]
            last = si == n - 1
            z = rest if last else F.interpolate(rest, size=(pn, pn), mode="area")
            z = z.permute(0, 2, 3, 1).reshape(-1, c)
            if self.using_znorm:
                idx = torch.argmax(F.normalize(z, dim=-1) @ code_t, dim=1)
            else:
                d = torch.sum(z.square(), dim=1, keepdim=True) + code_sq
                d.addmm_(z, code_t, alpha=-2, beta=1)
                idx = torch.argmin(d, dim=1)
            out.append(idx.view(b, pn * pn))
            if si == scales - 1:
                break
            e = self.embedding(idx.view(b, pn, pn)).permute(0, 3, 1, 2)
            e = F.interpolate(e, size=(h, w), mode="bicubic").contiguous()  # never the last scale here
            rest.sub_(self.phi(si)(e))
        return torch.cat(out, dim=1)

    @torch.no_grad()
    def ids_to_fhat(self, ids: Tensor, scales_per_image: Tensor | None = None) -> Tensor:
        """Ids long ``[B, offsets[s]]`` (the first ``s`` scales) -> ``f_hat`` float ``[B, C, P, P]``.

        ``scales_per_image`` (long ``[B]``, optional) keeps only the first
        ``scales_per_image[b]`` scales of image ``b`` (the rest of its row is padding).
        """
        b = ids.shape[0]
        n = len(self.patch_nums)
        s = self.offsets.index(ids.shape[1])
        side = self.patch_nums[-1]
        c = self.channels
        f_hat = torch.zeros(b, c, side, side, dtype=torch.float32, device=ids.device)
        for si in range(s):
            pn = self.patch_nums[si]
            # per-scale lookup: the [B, C, p, p] view then has VAR's strides (same kernels, same bits)
            h = (
                self.embedding(ids[:, self.offsets[si] : self.offsets[si + 1]])
                .transpose(1, 2)
                .view(b, c, pn, pn)
            )
            if si < n - 1:
                h = F.interpolate(h, size=(side, side), mode="bicubic")
            h = self.phi(si)(h)
            if scales_per_image is not None:
                keep = scales_per_image > si
                if not bool(keep.all()):
                    h = h * keep.to(h.dtype).view(b, 1, 1, 1)
            f_hat.add_(h)
        return f_hat


@TOKENIZERS.register(
    "var-vqvae",
    doc="VAR's multi-scale VQVAE (vae_ch160v4096z32): 10 scales 1..16, 680 ids of a 4096-code book, 256x256",
)
class VARVQVAE(PublishedTokenizer):
    """VAR's multi-scale residual VQVAE (``FoundationVision/VAR`` ``models/vqvae.py``).

    Images float ``[B, 3, S, S]`` in ``[0, 1]`` (``S = 2^(len(ch_mult)-1) * patch_nums[-1]``,
    256 for the release) <-> ids long ``[B, N]`` (``N = sum(p^2)`` = 680), scales coarse to
    fine. ``num_tokens`` must be a scale boundary (see :attr:`scale_boundaries`).

    Args:
        vocab_size: codebook size ``V`` (4096).
        z_channels: code width ``Cvae`` (32).
        ch: base width of the encoder/decoder (160).
        ch_mult: width multipliers per level (``(1, 1, 2, 2, 4)``: 16x downsampling).
        num_res_blocks: ResnetBlocks per encoder level (decoder: one more).
        norm_groups: GroupNorm groups (32).
        using_sa, using_mid_sa: attention at the lowest resolution / in the middle.
        quant_conv_ks: kernel of ``quant_conv`` / ``post_quant_conv`` (3).
        using_znorm: cosine instead of l2 code search.
        quant_resi: ``phi`` mixing ratio ``r`` (0.5).
        share_quant_resi: number of ``phi`` convs (4; 1 = one shared; 0 = one per scale).
        default_qresi_counts: ``phi`` count when ``share_quant_resi = 0`` (0: one per scale).
        patch_nums: side of each scale's token map, coarse to fine.
        weights, pretrained, hub: where the release comes from (see ``PublishedTokenizer``).
    """

    kind = "discrete"
    variable_length = True
    formats: ClassVar[str] = "VAR's plain torch .pth state dict of VQVAE (vae_ch160v4096z32.pth)"
    official: ClassVar[str] = "FoundationVision/VAR models/vqvae.py"
    state_keys: ClassVar[tuple[str, ...]] = ()
    ignore_keys: ClassVar[tuple[str, ...]] = (r"quantize\.ema_vocab_hit_SV$",)

    def __init__(
        self,
        *,
        vocab_size: int = 4096,
        z_channels: int = 32,
        ch: int = 160,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        norm_groups: int = 32,
        using_sa: bool = True,
        using_mid_sa: bool = True,
        quant_conv_ks: int = 3,
        using_znorm: bool = False,
        quant_resi: float = 0.5,
        share_quant_resi: int = 4,
        default_qresi_counts: int = 0,
        patch_nums: tuple[int, ...] = PATCH_NUMS_256,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "FoundationVision/var/vae_ch160v4096z32.pth",
    ) -> None:
        super().__init__()
        patch_nums = tuple(int(p) for p in patch_nums)
        if list(patch_nums) != sorted(set(patch_nums)) or patch_nums[0] < 1:
            raise ValueError(f"patch_nums must increase strictly from >= 1, got {list(patch_nums)}")
        arch = dict(
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            z_channels=z_channels,
            using_sa=using_sa,
            using_mid_sa=using_mid_sa,
            groups=norm_groups,
        )
        self.encoder = VAREncoder(**arch)
        self.decoder = VARDecoder(**arch)
        self.quantize = VARQuantizer(
            vocab_size,
            z_channels,
            patch_nums,
            using_znorm=using_znorm,
            quant_resi=quant_resi,
            share_quant_resi=share_quant_resi,
            default_qresi_counts=default_qresi_counts,
        )
        self.quant_conv = nn.Conv2d(z_channels, z_channels, quant_conv_ks, padding=quant_conv_ks // 2)
        self.post_quant_conv = nn.Conv2d(z_channels, z_channels, quant_conv_ks, padding=quant_conv_ks // 2)
        self.patch_nums = patch_nums
        self.downsample = 2 ** (len(ch_mult) - 1)
        self.vocab_size = vocab_size
        self.max_tokens = self.quantize.offsets[-1]
        self.input_size = self.downsample * patch_nums[-1]
        self.stride = self.downsample
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)
        # channels-last convolution weights and maps: 1.15x faster on CPUs (oneDNN) than VAR's NCHW at
        # ch=160, with identical codes on the parity fixtures (benchmarks/zoo_speed.py, docs/zoo.md)
        self.encoder.to(memory_format=torch.channels_last)
        self.decoder.to(memory_format=torch.channels_last)

    # ---- checkpoint ------------------------------------------------------------------------
    def read_official(self, path: Path) -> dict[str, Tensor]:
        """The bare ``VQVAE.state_dict()`` that ``vae_ch160v4096z32.pth`` holds."""
        return read_state_dict(path, keys=self.state_keys)

    _PHI_KEY = re.compile(r"^quantize\.quant_resi\.(?:qresi_ls\.(\d+)|qresi)\.")

    def convert_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """``quant_resi.qresi_ls.{i}.`` / ``quant_resi.qresi.`` -> ``quant_resi.{i}.`` / ``quant_resi.0.``."""
        out = {}
        for k, v in state.items():
            m = self._PHI_KEY.match(k)
            if m:
                k = f"quantize.quant_resi.{m.group(1) or 0}." + k[m.end() :]
            out[k] = v
        return out

    # ---- token counts ----------------------------------------------------------------------
    @property
    def scale_boundaries(self) -> list[int]:
        """The token counts ``num_tokens`` may take: the first 1, 2, ..., S whole scales."""
        return self.quantize.offsets[1:]

    def check_num_tokens(self, num_tokens: int | None) -> int | None:
        """As :meth:`Tokenizer.check_num_tokens`, and ``k`` must end a scale."""
        k = super().check_num_tokens(num_tokens)
        if k is not None and k not in self.scale_boundaries:
            raise ValueError(
                f"{self.spec}: num_tokens must end a whole scale (first s of patch_nums "
                f"{list(self.patch_nums)}): one of {self.scale_boundaries}, got {k}"
            )
        return k

    # ---- contract --------------------------------------------------------------------------
    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, S, S]`` in ``[0, 1]`` -> ids long ``[B, k]`` (``k = num_tokens`` or all).

        ``meta["patch_nums"]``: the scales held; ``lengths = k``; ``bits = k log2(V)``.
        """
        self.check_input(images)
        k = self.check_num_tokens(num_tokens) or self.max_tokens
        scales = self.quantize.offsets.index(k)
        x = self.to_model(images).contiguous(memory_format=torch.channels_last)  # faster CPU convolutions
        f = self.quant_conv(self.encoder(x)).contiguous()
        ids = self.quantize.f_to_ids(f, scales)
        b = images.shape[0]
        return Tokens(
            bits=self.rate(b, k, self.index_bits(self.vocab_size)),
            ids=ids,
            lengths=torch.full((b,), k, dtype=torch.long, device=ids.device),
            meta={"patch_nums": list(self.patch_nums[:scales])},
        )

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Ids long ``[B, k]`` (``k`` a scale boundary) -> float ``[B, 3, S, S]`` in ``[0, 1]``.

        Per-image ``lengths`` shorter than ``k`` (also scale boundaries) keep fewer scales.
        """
        ids = tokens.ids
        if ids is None or ids.ndim != 2:
            raise ValueError(
                f"{self.spec}: decodes ids [B, N], got {None if ids is None else tuple(ids.shape)}"
            )
        n = ids.shape[1]
        if n not in self.scale_boundaries:
            raise ValueError(
                f"{self.spec}: ids must hold whole scales of {list(self.patch_nums)}: "
                f"N in {self.scale_boundaries}, got {n}"
            )
        per_image = None
        if tokens.lengths is not None:
            lengths = [int(x) for x in tokens.lengths.tolist()]
            bad = sorted({x for x in lengths if x not in self.scale_boundaries or x > n})
            if bad:
                raise ValueError(f"{self.spec}: lengths must be scale boundaries <= {n}, got {bad}")
            if min(lengths) < n:
                offsets = self.quantize.offsets
                per_image = torch.tensor(
                    [offsets.index(x) for x in lengths], device=self.quantize.embedding.weight.device
                )
        ids = ids.to(self.quantize.embedding.weight.device).long()
        f_hat = self.quantize.ids_to_fhat(ids, per_image)
        x = self.decoder(self.post_quant_conv(f_hat.contiguous(memory_format=torch.channels_last)))
        return self.from_model(x.clamp_(-1.0, 1.0))

    # ---- codebook ----------------------------------------------------------------------------
    @property
    def has_neighbours(self) -> bool:
        return True

    def embed(self, ids: Tensor) -> Tensor:
        """Codebook vectors of ids: long ``[...]`` -> float ``[..., z_channels]``."""
        return F.embedding(ids.long(), self.quantize.embedding.weight)

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes (l2; cosine with ``using_znorm``): long ``[...]`` -> ``[..., k]``."""
        cb = self.quantize.embedding.weight
        cosine = self.quantize.using_znorm
        return code_neighbours(F.normalize(cb, dim=1) if cosine else cb, ids, k, cosine=cosine, who=self.spec)


TOKENIZERS.register_variant(
    "var-vqvae-512",
    "var-vqvae",
    doc="VAR's VQVAE (vae_ch160v4096z32) with VAR-d36's 512x512 scales 1..32: 2240 ids",
    patch_nums=PATCH_NUMS_512,
)
