"""SEED-Voken (TencentARC): the Open-MAGVIT2 (LFQ) and IBQ image tokenizers.

Both are 16x-downsampling VQGAN-style autoencoders trained on ImageNet at 256x256, read
from the official PyTorch Lightning checkpoints of https://github.com/TencentARC/SEED-Voken.

* ``open-magvit2`` (base) / ``open-magvit2-256``: the MAGVIT-v2 style autoencoder of
  ``src/Open_MAGVIT2/modules/diffusionmodules/improved_model.py`` (bias-free ResBlocks,
  strided-conv downsampling, conv + depth-to-space upsampling, adaptive GroupNorm in the
  decoder conditioned on the per-channel mean / std of the quantized map) with the
  lookup-free quantizer of ``src/Open_MAGVIT2/modules/vqvae/lookup_free_quantize.py``:
  each of the ``z_channels`` (18) channels is one bit, ``+1`` where the encoder output is
  ``> 0`` else ``-1``; the id of a position is ``sum_d [z_d > 0] * 2**d`` (channel 0 is
  the least significant bit, the official ``mask = 2 ** arange(d)``), so
  ``index_factors == [2] * z_channels``.
* ``ibq`` (base) / ``ibq-1024``, ``ibq-8192``, ``ibq-16384``, ``ibq-262144``: the taming
  VQGAN encoder / decoder of ``src/IBQ/modules/diffusionmodules/model.py`` (attention at
  16x16, ``quant_conv`` / ``post_quant_conv``) with the index-backpropagation quantizer
  of ``src/IBQ/modules/vqvae/quantize.py``: the code of a position is the argmax over the
  codebook of ``softmax(z . e_n)`` (the inner product, not the L2 distance); the decoder
  reads ``e_id``. All four sizes share the network and differ only in the codebook
  (``configs/IBQ/gpu/imagenet_ibqgan_{1024,8192,16384,262144}.yaml``).

Checkpoint layout (Lightning ``.ckpt``): ``{"state_dict": ..., "hyper_parameters": ...,
"epoch", "global_step", "pytorch-lightning_version", callbacks, optimizer states}``. The
state dict holds the model (``encoder.*``, ``decoder.*``, ``quantize.embedding.weight``,
``quant_conv.*``, ``post_quant_conv.*``), the training losses (``loss.discriminator.*``,
``loss.perceptual_loss.*``: dropped, see :attr:`ignore_keys`) and the ``LitEma`` shadow
of every trainable parameter as a buffer named ``model_ema.<name without dots>``
(``encoder.conv_in.weight`` -> ``model_ema.encoderconv_inweight``) plus
``model_ema.decay`` / ``model_ema.num_updates``. The official evaluation
(``evaluation_image.py``) loads the whole dict and evaluates inside ``ema_scope()``, i.e.
with the EMA weights; so does vistok (``ema=True``, the default): the shadow of each
parameter replaces the raw tensor of the same name, matched by removing the dots from
the parameter names of this module (which equal the official names). With ``ema=False``
(or a file without shadows) the raw weights are used. Shadows of the loss and the EMA
counters are dropped; any other leftover key is an error.

Deviations: none in the numerics (SiLU is ``F.silu`` instead of ``x * sigmoid(x)`` and
attention uses ``scaled_dot_product_attention``: equal up to float rounding). The IBQ
encoder keeps the official softmax before the argmax, so ties broken by the softmax's
rounding pick the same code as the official code. Decoding from ids uses the exact
codebook vectors (``+-1`` / ``e_id``), as the official ``get_codebook_entry`` does; the
official training-time path decodes the straight-through value ``z + (q - z)``, which
differs from it by float rounding only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models.zoo._base import PublishedTokenizer
from vistok.models.zoo._sign_bits import SignBits
from vistok.nn.taming import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm
from vistok.registry import TOKENIZERS
from vistok.tokenizer import Kind
from vistok.tokens import Tokens
from vistok.utils.checkpoints import CheckpointError, read_state_dict

__all__ = ["IBQ", "OpenMagvit2"]

_EMA = "model_ema."


# ---- Open-MAGVIT2 blocks (improved_model.py) -----------------------------------------------------
class MagvitResBlock(nn.Module):
    """``x + conv2(silu(norm2(conv1(silu(norm1(x))))))``, bias-free 3x3 convs, GroupNorm(32).

    The shortcut is a bias-free 1x1 ``nin_shortcut`` when the width changes. ``[B, C, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = group_norm(in_channels)
        self.norm2 = group_norm(out_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        if self.in_channels != self.out_channels:
            x = self.nin_shortcut(x)
        return h.add_(x)


class AdaptiveGroupNorm(nn.Module):
    """GroupNorm(32) without affine weights, then ``gamma(std(z)) * x + beta(mean(z))``.

    ``z`` is the decoder's input map ``[B, Z, h, w]``; its per-channel statistics over the
    positions (``std = sqrt(var_unbiased + eps)``) go through the linear maps ``gamma`` and
    ``beta`` to a per-channel scale and shift of ``x`` ``[B, C, H, W]``.
    """

    def __init__(self, z_channels: int, channels: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gn = nn.GroupNorm(32, channels, eps=eps, affine=False)
        self.gamma = nn.Linear(z_channels, channels)
        self.beta = nn.Linear(z_channels, channels)
        self.eps = eps

    def forward(self, x: Tensor, std: Tensor, mean: Tensor) -> Tensor:
        """``std`` / ``mean``: ``[B, Z]`` statistics of the quantized map (see :func:`style_stats`)."""
        b, c = x.shape[:2]
        scale = self.gamma(std).view(b, c, 1, 1)
        shift = self.beta(mean).view(b, c, 1, 1)
        return torch.addcmul(shift, self.gn(x), scale)


def style_stats(z: Tensor, eps: float = 1e-6) -> tuple[Tensor, Tensor]:
    """``[B, Z, h, w]`` -> ``(sqrt(var + eps), mean)`` over the positions, each ``[B, Z]`` (unbiased var)."""
    flat = z.flatten(2)
    return (flat.var(dim=-1) + eps).sqrt(), flat.mean(dim=-1)


def depth_to_space(x: Tensor, block: int = 2) -> Tensor:
    """``[B, C * block**2, H, W]`` -> ``[B, C, H * block, W * block]``, depth-column-row order.

    Input channel ``(i * block + j) * C + c`` lands at ``(c, block * y + i, block * x + j)``
    (the official ``depth_to_space``; not ``pixel_shuffle``'s channel order).
    """
    b, cs, h, w = x.shape
    c = cs // (block * block)
    x = x.view(b, block, block, c, h, w).permute(0, 3, 4, 1, 5, 2)
    return x.reshape(b, c, h * block, w * block)


class Upsampler(nn.Module):
    """Double ``H`` and ``W``: a 3x3 ``conv1`` to ``4C`` channels, then :func:`depth_to_space`."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels * 4, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return depth_to_space(self.conv1(x), 2)


class _Level(nn.Module):
    """One resolution of an encoder / decoder: ``block`` (and ``attn``), plus a resampler."""


class MagvitEncoder(nn.Module):
    """Images ``[B, 3, H, W]`` in ``[-1, 1]`` -> ``[B, z_channels, H / s, W / s]``, ``s = 2**(levels-1)``."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1, bias=False)
        self.down = nn.ModuleList()
        in_mult = (1, *ch_mult)
        block_in = ch
        for i, m in enumerate(ch_mult):
            block_in, block_out = ch * in_mult[i], ch * m
            level = _Level()
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(MagvitResBlock(block_in, block_out))
                block_in = block_out
            level.block = nn.ModuleList(blocks)
            if i < len(ch_mult) - 1:
                level.downsample = nn.Conv2d(block_out, block_out, 3, stride=2, padding=1)
            self.down.append(level)
        self.mid_block = nn.ModuleList(MagvitResBlock(block_in, block_in) for _ in range(num_res_blocks))
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            for blk in level.block:
                x = blk(x)
            if i < last:
                x = level.downsample(x)
        for blk in self.mid_block:
            x = blk(x)
        return self.conv_out(F.silu(self.norm_out(x), inplace=True))


class MagvitDecoder(nn.Module):
    """``[B, z_channels, h, w]`` (the quantized map, also the adaptive-norm style) -> ``[B, 3, h s, w s]``."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, z_channels: int) -> None:
        super().__init__()
        levels = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid_block = nn.ModuleList(MagvitResBlock(block_in, block_in) for _ in range(num_res_blocks))
        ups: list[nn.Module] = [nn.Module()] * levels
        adaptive: list[nn.Module] = [nn.Module()] * levels
        for i in reversed(range(levels)):
            block_out = ch * ch_mult[i]
            adaptive[i] = AdaptiveGroupNorm(z_channels, block_in)
            level = _Level()
            blocks = []
            for _ in range(num_res_blocks):
                blocks.append(MagvitResBlock(block_in, block_out))
                block_in = block_out
            level.block = nn.ModuleList(blocks)
            if i > 0:
                level.upsample = Upsampler(block_in)
            ups[i] = level
        self.up = nn.ModuleList(ups)
        self.adaptive = nn.ModuleList(adaptive)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        std, mean = style_stats(z)
        x = self.conv_in(z)
        for blk in self.mid_block:
            x = blk(x)
        for i in reversed(range(len(self.up))):
            x = self.adaptive[i](x, std, mean)
            level = self.up[i]
            for blk in level.block:
                x = blk(x)
            if i > 0:
                x = level.upsample(x)
        return self.conv_out(F.silu(self.norm_out(x), inplace=True))


# ---- IBQ blocks (taming's VQGAN encoder / decoder, model.py) ---------------------------------
class TamingEncoder(nn.Module):
    """Images ``[B, 3, H, W]`` in ``[-1, 1]`` -> ``[B, z_channels, H / s, W / s]`` (taming ``Encoder``).

    Attention follows each ResBlock of the levels whose nominal size (``resolution``
    halved per level) is in ``attn_resolutions``; the middle is block, attention, block.
    """

    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        resolution: int,
        z_channels: int,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch, 3, padding=1)
        in_mult = (1, *ch_mult)
        res = resolution
        self.down = nn.ModuleList()
        block_in = ch
        for i, m in enumerate(ch_mult):
            block_in, block_out = ch * in_mult[i], ch * m
            level = _Level()
            blocks, attn = [], []
            for _ in range(num_res_blocks):
                blocks.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attn)
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        last = len(self.down) - 1
        for i, level in enumerate(self.down):
            for j, blk in enumerate(level.block):
                h = blk(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if i < last:
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))


class TamingDecoder(nn.Module):
    """``[B, z_channels, h, w]`` -> ``[B, 3, h s, w s]`` (taming ``Decoder``: ``num_res_blocks + 1`` per level)."""

    def __init__(
        self,
        ch: int,
        ch_mult: Sequence[int],
        num_res_blocks: int,
        attn_resolutions: Sequence[int],
        resolution: int,
        z_channels: int,
    ) -> None:
        super().__init__()
        levels = len(ch_mult)
        block_in = ch * ch_mult[-1]
        res = resolution // 2 ** (levels - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        ups: list[nn.Module] = [nn.Module()] * levels
        for i in reversed(range(levels)):
            block_out = ch * ch_mult[i]
            level = _Level()
            blocks, attn = [], []
            for _ in range(num_res_blocks + 1):
                blocks.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if res in attn_resolutions:
                    attn.append(AttnBlock(block_in))
            level.block, level.attn = nn.ModuleList(blocks), nn.ModuleList(attn)
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            ups[i] = level
        self.up = nn.ModuleList(ups)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for j, blk in enumerate(level.block):
                h = blk(h)
                if len(level.attn):
                    h = level.attn[j](h)
            if i != 0:
                h = level.upsample(h)
        return self.conv_out(F.silu(self.norm_out(h), inplace=True))


class IndexPropagationQuantize(nn.Module):
    """The IBQ codebook ``embedding.weight`` ``[n_e, e_dim]``; codes by the softmax argmax of ``z . e``."""

    def __init__(self, n_e: int, e_dim: int) -> None:
        super().__init__()
        self.embedding = nn.Embedding(n_e, e_dim)

    def codes(self, z: Tensor) -> Tensor:
        """``[B, e_dim, h, w]`` -> long ``[B, h, w]``: argmax over ``n`` of ``softmax_n(z . e_n)``."""
        logits = torch.einsum("bdhw,nd->bnhw", z, self.embedding.weight)
        return torch.softmax(logits, dim=1).max(dim=1)[1]

    def lookup(self, ids: Tensor) -> Tensor:
        """Long ``[B, h, w]`` -> ``[B, e_dim, h, w]``: the codebook vectors."""
        return F.embedding(ids, self.embedding.weight).permute(0, 3, 1, 2)


# ---- the shared Lightning / EMA reading ---------------------------------------------------------
class _SeedVoken(PublishedTokenizer):
    """What both families share: the Lightning file, the ``LitEma`` shadows, the token grid."""

    kind: ClassVar[Kind] = "discrete"
    variable_length: ClassVar[bool] = False
    formats: ClassVar[str] = (
        "PyTorch Lightning .ckpt as released (model under 'state_dict'; LitEma shadows "
        "'model_ema.*' used when present), or a torch/safetensors state dict"
    )
    state_keys: ClassVar[tuple[str, ...]] = ("state_dict",)
    source_keys: ClassVar[tuple[str, ...]] = ("weights", "pretrained", "ema")
    ignore_keys: ClassVar[tuple[str, ...]] = (
        r"loss\.",  # the GAN discriminator and the LPIPS network of the training loss
        r"model_ema\.(?:decay|num_updates)$",  # the EMA's counters
        r"model_ema\.loss",  # EMA shadows of the discriminator
    )

    def _setup(self, *, stride: int, resolution: int, ema: bool) -> None:
        self.stride = stride
        self.max_tokens = (resolution // stride) ** 2
        self.ema = ema
        self.ema_used = False
        self._reading: Path | None = None

    # ---- loading -----------------------------------------------------------------------------
    def read_official(self, path: Path) -> dict[str, Tensor]:
        self._reading = path
        return read_state_dict(path, keys=self.state_keys)

    def convert_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Put the EMA shadow of each parameter in place of its raw tensor (``ema=True``).

        ``model_ema.<name without dots>`` is the shadow of parameter ``<name>``. When the
        file holds shadows of this module's parameters they must cover every parameter
        whose raw tensor it holds (a file of another architecture is left to the key check).
        """
        state = dict(state)
        params = [n for n, _ in self.named_parameters()]
        flat = {n.replace(".", ""): n for n in params}
        if len(flat) != len(params):  # pragma: no cover - names that collide without dots
            raise CheckpointError(f"{type(self).__name__}: parameter names collide once dots are removed")
        shadows = {k[len(_EMA) :]: k for k in state if k.startswith(_EMA) and k[len(_EMA) :] in flat}
        self.ema_used = False
        if not shadows:
            return state
        missing = sorted(flat[s] for s in flat if s not in shadows)
        if missing and not all(n in state for n in missing):  # another architecture: the key check says so
            return {k: v for k, v in state.items() if k not in shadows.values()}
        if self.ema and missing:
            where = self._reading or "checkpoint"
            raise CheckpointError(
                f"{where}: has LitEma shadows ('{_EMA}*') but none for {len(missing)} parameters "
                f"({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''}); pass ema=false to use "
                "the raw weights"
            )
        for s, key in shadows.items():
            shadow = state.pop(key)
            name = flat[s]
            if self.ema and name in state:  # a raw tensor that is absent stays absent: an error later
                state[name] = shadow
        self.ema_used = self.ema
        return state

    # ---- tokens ---------------------------------------------------------------------------------
    def _tokens(self, ids: Tensor) -> Tokens:
        b, h, w = ids.shape
        assert self.vocab_size is not None
        return Tokens(bits=self.rate(b, h * w, self.index_bits(self.vocab_size)), ids=ids)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["published"]["ema_weights"] = self.ema_used
        return d


# ---- Open-MAGVIT2 ------------------------------------------------------------------------------
@TOKENIZERS.register(
    "open-magvit2",
    doc="Open-MAGVIT2 (SEED-Voken) LFQ tokenizer, 2**z_channels implicit codes, stride 2**(levels-1)",
)
class OpenMagvit2(SignBits, _SeedVoken):
    """Open-MAGVIT2: images ``[B, 3, H, W]`` in ``[0, 1]`` <-> ids ``[B, H/16, W/16]`` of ``2**18`` codes.

    Args:
        ch, ch_mult, num_res_blocks, z_channels: the official ``ddconfig`` (``z_channels``
            is also the LFQ ``embed_dim``: ``log2`` of the codebook size).
        resolution: the native image size (sets :attr:`max_tokens` only; any multiple of
            the stride is accepted).
        ema: use the ``LitEma`` weights of the file when it has them (as the official
            evaluation does).
        weights, pretrained, hub: where the release comes from.
    """

    official: ClassVar[str] = "TencentARC/SEED-Voken src/Open_MAGVIT2/models/lfqgan.py"

    def __init__(
        self,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 4,
        z_channels: int = 18,
        resolution: int = 256,
        ema: bool = True,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "TencentARC/Open-MAGVIT2-Tokenizer-256-resolution/imagenet_256_L.ckpt",
    ) -> None:
        super().__init__()
        if not 1 <= z_channels <= 30:
            raise ValueError(f"z_channels (bits per token) must be in 1..30, got {z_channels}")
        if not ch_mult:
            raise ValueError("ch_mult needs at least one level")
        self.encoder = MagvitEncoder(ch, ch_mult, num_res_blocks, z_channels)
        self.decoder = MagvitDecoder(ch, ch_mult, num_res_blocks, z_channels)
        self.z_channels = z_channels
        self.vocab_size = 2**z_channels
        self.register_buffer("bit_values", 2 ** torch.arange(z_channels, dtype=torch.long), persistent=False)
        self._setup(stride=2 ** (len(ch_mult) - 1), resolution=resolution, ema=ema)
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def features(self, images: Tensor) -> Tensor:
        """The encoder output before quantization, ``[B, z_channels, H/s, W/s]`` (images in ``[0, 1]``)."""
        return self.encoder(self.to_model(images))

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ids long ``[B, H/s, W/s]`` in ``[0, 2**z_channels)``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        z = self.features(images)
        ids = self.signs_to_ids(z)
        return self._tokens(ids)

    def decode_model(self, ids: Tensor) -> Tensor:
        """Ids ``[B, h, w]`` -> the decoder's output ``[B, 3, h s, w s]`` in model space (about ``[-1, 1]``)."""
        return self.decoder(self.embed(ids).permute(0, 3, 1, 2).contiguous())

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Tokens with ids ``[B, h, w]`` -> images ``[B, 3, h s, w s]`` in ``[0, 1]``."""
        if tokens.ids is None:
            raise ValueError(f"{self.spec}: decode needs tokens with ids")
        return self.from_model(self.decode_model(tokens.ids.long()))


# ---- IBQ -------------------------------------------------------------------------------------------
@TOKENIZERS.register(
    "ibq",
    doc="IBQ (SEED-Voken) index-backpropagation VQ tokenizer, learned codebook, stride 2**(levels-1)",
)
class IBQ(_SeedVoken):
    """IBQ: images ``[B, 3, H, W]`` in ``[0, 1]`` <-> ids ``[B, H/16, W/16]`` of ``codebook_size`` codes.

    Args:
        ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels: the official
            ``ddconfig`` (``resolution`` places the attention blocks and sets
            :attr:`max_tokens`; any multiple of the stride is accepted).
        embed_dim, codebook_size: the codebook (``embed_dim`` / ``n_embed``).
        ema: use the ``LitEma`` weights of the file when it has them.
        weights, pretrained, hub: where the release comes from.
    """

    official: ClassVar[str] = "TencentARC/SEED-Voken src/IBQ/models/ibqgan.py"

    def __init__(
        self,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 4,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 256,
        z_channels: int = 256,
        embed_dim: int = 256,
        codebook_size: int = 16384,
        ema: bool = True,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "TencentARC/IBQ-Tokenizer-16384/imagenet256_16384.ckpt",
    ) -> None:
        super().__init__()
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        if not ch_mult:
            raise ValueError("ch_mult needs at least one level")
        args = (ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels)
        self.encoder = TamingEncoder(*args)
        self.decoder = TamingDecoder(*args)
        self.quantize = IndexPropagationQuantize(codebook_size, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.vocab_size = codebook_size
        self._setup(stride=2 ** (len(ch_mult) - 1), resolution=resolution, ema=ema)
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def features(self, images: Tensor) -> Tensor:
        """``quant_conv(encoder(x))`` before quantization, ``[B, embed_dim, H/s, W/s]`` (images in ``[0, 1]``)."""
        return self.quant_conv(self.encoder(self.to_model(images)))

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ids long ``[B, H/s, W/s]`` in ``[0, codebook_size)``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        return self._tokens(self.quantize.codes(self.features(images)))

    def embed(self, ids: Tensor) -> Tensor:
        """Long ``[...]`` -> codebook vectors ``[..., embed_dim]``."""
        return F.embedding(ids, self.quantize.embedding.weight)

    @property
    def has_neighbours(self) -> bool:
        return True

    @torch.no_grad()
    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` other codes with the largest inner product with ``e_id``: long ``[...]`` -> ``[..., k]``.

        The inner product is the quantizer's own score (IBQ picks ``argmax_n z . e_n``).
        """
        if not 1 <= k < self.vocab_size:  # type: ignore[operator]
            raise ValueError(f"k must be in 1..{self.vocab_size - 1}, got {k}")  # type: ignore[operator]
        w = self.quantize.embedding.weight
        uniq, inverse = torch.unique(ids.reshape(-1), return_inverse=True)
        out = torch.empty(len(uniq), k, dtype=torch.long, device=ids.device)
        step = max(1, (1 << 24) // w.shape[0])
        for s in range(0, len(uniq), step):
            u = uniq[s : s + step]
            sim = w[u] @ w.T
            sim[torch.arange(len(u), device=sim.device), u] = -math.inf
            out[s : s + step] = sim.topk(k, dim=1).indices
        return out[inverse].reshape(*ids.shape, k)

    def decode_model(self, ids: Tensor) -> Tensor:
        """Ids ``[B, h, w]`` -> the decoder's output ``[B, 3, h s, w s]`` in model space (about ``[-1, 1]``)."""
        return self.decoder(self.post_quant_conv(self.quantize.lookup(ids)))

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Tokens with ids ``[B, h, w]`` -> images ``[B, 3, h s, w s]`` in ``[0, 1]``."""
        if tokens.ids is None:
            raise ValueError(f"{self.spec}: decode needs tokens with ids")
        return self.from_model(self.decode_model(tokens.ids.long()))


_OM2_DOC = (
    "Open-MAGVIT2 256px ImageNet tokenizer (LFQ, 2**18 codes, 16x16 tokens at 256; "
    "TencentARC/Open-MAGVIT2-Tokenizer-256-resolution)"
)
TOKENIZERS.register_variant(
    "open-magvit2-256",
    "open-magvit2",
    doc=_OM2_DOC,
    ch=128,
    ch_mult=(1, 1, 2, 2, 4),
    num_res_blocks=4,
    z_channels=18,
    resolution=256,
    hub="TencentARC/Open-MAGVIT2-Tokenizer-256-resolution/imagenet_256_L.ckpt",
)
for _n in (1024, 8192, 16384, 262144):
    TOKENIZERS.register_variant(
        f"ibq-{_n}",
        "ibq",
        doc=f"IBQ 256px ImageNet tokenizer ({_n} codes of dim 256, 16x16 tokens at 256; TencentARC/IBQ-Tokenizer-{_n})",
        ch=128,
        ch_mult=(1, 1, 2, 2, 4),
        num_res_blocks=4,
        attn_resolutions=(16,),
        resolution=256,
        z_channels=256,
        embed_dim=256,
        codebook_size=_n,
        hub=f"TencentARC/IBQ-Tokenizer-{_n}/imagenet256_{_n}.ckpt",
    )
