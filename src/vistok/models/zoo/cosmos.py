"""NVIDIA Cosmos image tokenizers: ``cosmos-di8``, ``cosmos-di16`` (discrete), ``cosmos-ci8``, ``cosmos-ci16`` (continuous).

Official source: NVIDIA/Cosmos-Tokenizer (Apache-2.0), ``cosmos_tokenizer/networks/
discrete_image.py`` and ``continuous_image.py`` with the blocks of ``cosmos_tokenizer/modules/``
(``layers2d``, ``patching``, ``quantizers``, ``distributions``) and the image configurations of
``networks/configs.py``. Weights: the Hugging Face repositories
``nvidia/Cosmos-0.1-Tokenizer-{DI8x8,DI16x16,CI8x8,CI16x16}`` (first published as
``nvidia/Cosmos-Tokenizer-...``, which the Hub redirects), NVIDIA Open Model License.

Architecture (both kinds): a two-level Haar wavelet transform (``patch_size=4``: ``[3, H, W]``
-> ``[48, H/4, W/4]``), a VQGAN-lineage encoder (``channels=128``, ``channels_mult=(2, 4, 4)``,
two ResNet blocks a level, a mid block with one self-attention) that halves the map
``log2(spatial_compression / patch_size)`` times, a 1x1 ``quant_conv``; the decoder mirrors it
(nearest 2x upsampling) and ends with the inverse Haar transform. Attention inside the levels
sits where the running resolution (counted from ``resolution=1024``) is in
``attn_resolutions=(32,)``: never, for the released configurations.

* ``cosmos-di*``: ``z_channels=256`` -> ``quant_conv`` -> 6 channels quantized by FSQ with
  levels ``(8, 8, 8, 5, 5, 5)`` (64,000 codes; no projections). ids ``[B, h, w]``, each
  ``log2(64000) = 15.97`` bits; the first level's digit is the least significant
  (``index_factors``). Decoding maps ids to codes, ``post_quant_conv``, decoder.
* ``cosmos-ci*``: ``z_channels=16`` -> ``quant_conv`` -> 16 latent channels. The release is
  trained as a plain autoencoder (``formulation="AE"``: ``IdentityDistribution``), so the
  latent is deterministic (there is no posterior to sample: no ``sample``/``seed`` options).
  Latents ``[B, 16, h, w]`` are stored as float16 (16 bits a value).

Release layout: TorchScript archives made by ``torch.jit.trace`` of the official
``encoder_jit()`` (``Sequential(encoder, quant_conv, quantizer | distribution)``) and
``decoder_jit()`` (``Sequential(inv_quant?, post_quant_conv, decoder)``), plus
``autoencoder.jit`` (the whole network). vistok reads their tensors without running their
code (:func:`vistok.utils.torchscript.read_torchscript`); a folder with ``encoder.jit`` +
``decoder.jit`` (preferred) or ``autoencoder.jit``, or one ``.jit`` file holding the whole
network, is accepted. The module keeps the official attribute names, so the key map is the
identity; the fixed buffers the traced modules carry (Haar filters ``wavelets``/``_arange``,
FSQ ``_levels``/``_basis``/``implicit_codebook``, also under ``inv_quant.quantizer``) are
checked against this configuration and dropped (``ignore_keys``).

Ranges and precision: the official API feeds images in ``[-1, 1]`` and returns ``[-1, 1]``,
in bfloat16 on CUDA by default; vistok maps ``[0, 1]`` to ``[-1, 1]`` and runs float32 on the
CPU (the official network run in float32 is the parity reference). Deviations, none
numerical beyond float rounding: ``F.silu`` for ``x * sigmoid(x)``,
``scaled_dot_product_attention`` for the explicit ``bmm`` softmax, nearest interpolation for
``repeat_interleave`` (identical values); the Haar transforms use the official filters and
convolutions. Any ``H`` and ``W`` that are multiples of ``spatial_compression`` are accepted
(the official API pads to multiples of 16; vistok leaves padding to ``fit_to``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models.zoo._base import PublishedTokenizer
from vistok.nn.taming import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm
from vistok.quantize._grid import fsq_neighbours
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens
from vistok.utils.checkpoints import CheckpointError
from vistok.utils.torchscript import read_torchscript

__all__ = ["FSQ", "CosmosCI", "CosmosDI", "HaarPatcher", "HaarUnpatcher"]

_HUB = "nvidia/Cosmos-0.1-Tokenizer-"
_RELEASE = "encoder.jit+decoder.jit"
_HAAR = 0.7071067811865476  # 1 / sqrt(2), the official filter tap
_NATIVE = (
    256  # max_tokens is counted at 256 x 256, vistok's benchmark size (any multiple of the stride works)
)


# ---- Haar wavelet patching -----------------------------------------------------------------------
def _haar_filters() -> tuple[Tensor, Tensor]:
    """The official low-pass (flipped taps) and high-pass filters, float32 ``[2]`` each."""
    taps = torch.tensor([_HAAR, _HAAR])
    low = taps.flip(0)
    high = taps * ((-1) ** torch.arange(2))
    return low, high


class HaarPatcher(nn.Module):
    """``[B, C, H, W]`` -> ``[B, C * patch_size**2, H / p, W / p]`` by ``log2(p)`` Haar steps.

    Each step filters the columns, then the rows, with the two 2-tap filters (stride 2,
    grouped convolutions), concatenates the ``LL, LH, HL, HH`` bands channel-block-wise and
    halves them: the official ``Patcher(patch_method="haar")``.
    """

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.steps = int(math.log2(patch_size))
        low, high = _haar_filters()
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)

    def _step(self, x: Tensor) -> Tensor:
        g = x.shape[1]
        low, high = self.low.to(x.dtype), self.high.to(x.dtype)
        lw, hw = low.view(1, 1, 1, 2).expand(g, 1, 1, 2), high.view(1, 1, 1, 2).expand(g, 1, 1, 2)
        x = F.pad(x, (0, 1, 0, 1), mode="reflect")
        xl = F.conv2d(x, lw, groups=g, stride=(1, 2))
        xh = F.conv2d(x, hw, groups=g, stride=(1, 2))
        lc, hc = lw.transpose(2, 3), hw.transpose(2, 3)
        out = torch.cat(
            [
                F.conv2d(xl, lc, groups=g, stride=(2, 1)),
                F.conv2d(xl, hc, groups=g, stride=(2, 1)),
                F.conv2d(xh, lc, groups=g, stride=(2, 1)),
                F.conv2d(xh, hc, groups=g, stride=(2, 1)),
            ],
            dim=1,
        )
        return out / 2

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.steps):
            x = self._step(x)
        return x


class HaarUnpatcher(nn.Module):
    """The inverse of :class:`HaarPatcher`: ``[B, C p^2, h, w]`` -> ``[B, C, h p, w p]`` (transposed convs)."""

    def __init__(self, patch_size: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.steps = int(math.log2(patch_size))
        low, high = _haar_filters()
        self.register_buffer("low", low, persistent=False)
        self.register_buffer("high", high, persistent=False)

    def _step(self, x: Tensor) -> Tensor:
        g = x.shape[1] // 4
        low, high = self.low.to(x.dtype), self.high.to(x.dtype)
        lc, hc = low.view(1, 1, 2, 1).expand(g, 1, 2, 1), high.view(1, 1, 2, 1).expand(g, 1, 2, 1)
        xll, xlh, xhl, xhh = torch.chunk(x, 4, dim=1)
        yl = F.conv_transpose2d(xll, lc, groups=g, stride=(2, 1))
        yl += F.conv_transpose2d(xlh, hc, groups=g, stride=(2, 1))
        yh = F.conv_transpose2d(xhl, lc, groups=g, stride=(2, 1))
        yh += F.conv_transpose2d(xhh, hc, groups=g, stride=(2, 1))
        lr, hr = lc.transpose(2, 3), hc.transpose(2, 3)
        y = F.conv_transpose2d(yl, lr, groups=g, stride=(1, 2))
        y += F.conv_transpose2d(yh, hr, groups=g, stride=(1, 2))
        return y * 2

    def forward(self, x: Tensor) -> Tensor:
        for _ in range(self.steps):
            x = self._step(x)
        return x


# ---- encoder and decoder (official key names) ------------------------------------------------
def _level_count(spatial_compression: int, patch_size: int, levels: int) -> int:
    n = int(math.log2(spatial_compression)) - int(math.log2(patch_size))
    if not 0 <= n <= levels:
        raise ValueError(
            f"spatial_compression={spatial_compression} with patch_size={patch_size} needs {n} resamplings; "
            f"channels_mult has {levels} levels"
        )
    return n


class Encoder(nn.Module):
    """Images ``[B, 3, H, W]`` in ``[-1, 1]`` -> ``[B, z_channels, H / s, W / s]`` (``s = spatial_compression``)."""

    def __init__(
        self,
        *,
        channels: int,
        channels_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        resolution: int,
        patch_size: int,
        spatial_compression: int,
        z_channels: int,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_resolutions = len(channels_mult)
        self.num_res_blocks = num_res_blocks
        self.num_downsamples = _level_count(spatial_compression, patch_size, self.num_resolutions)
        self.patcher = HaarPatcher(patch_size)
        self.conv_in = nn.Conv2d(in_channels * patch_size * patch_size, channels, 3, padding=1)
        res = resolution // patch_size
        mult_in = (1, *channels_mult)
        self.down = nn.ModuleList()
        block_in = channels
        for i in range(self.num_resolutions):
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            block_in, block_out = channels * mult_in[i], channels * channels_mult[i]
            for _ in range(num_res_blocks):
                level.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i < self.num_downsamples:
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
        h = self.conv_in(self.patcher(x))
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if i < self.num_downsamples:
                h = level.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(F.silu(self.norm_out(h)))


class Decoder(nn.Module):
    """``[B, z_channels, h, w]`` -> images ``[B, 3, h s, w s]`` in (about) ``[-1, 1]``."""

    def __init__(
        self,
        *,
        channels: int,
        channels_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        resolution: int,
        patch_size: int,
        spatial_compression: int,
        z_channels: int,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_resolutions = len(channels_mult)
        self.num_res_blocks = num_res_blocks
        self.num_upsamples = _level_count(spatial_compression, patch_size, self.num_resolutions)
        block_in = channels * channels_mult[-1]
        res = (resolution // patch_size) // 2 ** (self.num_resolutions - 1)
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(block_in, block_in)
        self.mid.attn_1 = AttnBlock(block_in)
        self.mid.block_2 = ResnetBlock(block_in, block_in)
        levels: list[nn.Module] = []
        for i in reversed(range(self.num_resolutions)):
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            block_out = channels * channels_mult[i]
            for _ in range(num_res_blocks + 1):
                level.block.append(ResnetBlock(block_in, block_out))
                block_in = block_out
                if res in attn_resolutions:
                    level.attn.append(AttnBlock(block_in))
            if i >= self.num_resolutions - self.num_upsamples:
                level.upsample = Upsample(block_in)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels * patch_size * patch_size, 3, padding=1)
        self.unpatcher = HaarUnpatcher(patch_size)

    def forward(self, z: Tensor) -> Tensor:
        h = self.conv_in(z)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        for i in reversed(range(self.num_resolutions)):
            level = self.up[i]
            for j, block in enumerate(level.block):
                h = block(h)
                if len(level.attn) > 0:
                    h = level.attn[j](h)
            if i >= self.num_resolutions - self.num_upsamples:
                h = level.upsample(h)
        h = self.conv_out(F.silu(self.norm_out(h)))
        return self.unpatcher(h)


# ---- FSQ (the official arithmetic, no parameters) ---------------------------------------------
class FSQ(nn.Module):
    """Finite scalar quantization with the official constants and operation order.

    ``quantize``: ``[B, d, h, w]`` -> codes ``[B, h, w, d]`` in ``[-1, 1]``;
    ``codes_to_indices``: codes -> long ``[B, h, w]``; ``indices_to_codes``: the inverse
    (``[...]`` -> ``[..., d]``). Channel 0 is the least significant digit.
    """

    def __init__(self, levels: tuple[int, ...], eps: float = 1e-3) -> None:
        super().__init__()
        self.levels = tuple(int(v) for v in levels)
        lv = torch.tensor(self.levels, dtype=torch.int32)
        basis = torch.cumprod(torch.tensor([1, *self.levels[:-1]]), dim=0, dtype=torch.int32)
        half_l = (lv - 1) * (1 + eps) / 2
        offset = torch.where(lv % 2 == 0, 0.5, 0.0)
        self.register_buffer("_levels", lv, persistent=False)
        self.register_buffer("_basis", basis, persistent=False)
        self.register_buffer("half_l", half_l, persistent=False)
        self.register_buffer("offset", offset, persistent=False)
        self.register_buffer("shift", (offset / half_l).atanh(), persistent=False)
        self.register_buffer("half_width", lv // 2, persistent=False)

    @property
    def codebook_size(self) -> int:
        return math.prod(self.levels)

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes in code space (level ``i`` spaced ``1 / (L_i // 2)``),
        nearest first: long ``[...] -> [..., k]`` (found on the grid, see ``vistok.quantize._grid``)."""
        return fsq_neighbours(ids, list(self.levels), k)

    def quantize(self, z: Tensor) -> Tensor:
        """``[B, d, h, w]`` -> rounded, renormalized codes ``[B, h, w, d]``."""
        z = z.movedim(1, -1)
        bounded = (z + self.shift).tanh() * self.half_l - self.offset
        return bounded.round() / self.half_width

    def codes_to_indices(self, codes: Tensor) -> Tensor:
        """Codes ``[..., d]`` -> long ids ``[...]`` (the official float sum, then truncation)."""
        digits = (codes * self.half_width + self.half_width).float()
        return (digits * self._basis).sum(dim=-1).to(torch.int32).long()

    def indices_to_codes(self, ids: Tensor) -> Tensor:
        """Long ids ``[...]`` -> float codes ``[..., d]`` in ``[-1, 1]``."""
        digits = (ids.unsqueeze(-1) // self._basis) % self._levels
        return (digits - self.half_width) / self.half_width


# ---- the tokenizers ------------------------------------------------------------------------------
class _Cosmos(PublishedTokenizer):
    """What the discrete and continuous image tokenizers share: reading the release, the network."""

    formats: ClassVar[str] = (
        "TorchScript archives as released: a folder with encoder.jit + decoder.jit (or autoencoder.jit), "
        "or one .jit file holding the whole network; read as data, no code of them runs"
    )
    state_keys: ClassVar[tuple[str, ...]] = ()
    ignore_keys: ClassVar[tuple[str, ...]] = (
        r"(encoder\.patcher|decoder\.unpatcher)\.(wavelets|_arange)$",
        r"(inv_quant\.)?quantizer\.(_levels|_basis|implicit_codebook)$",
    )

    def _build(
        self,
        *,
        channels: int,
        channels_mult: tuple[int, ...],
        num_res_blocks: int,
        attn_resolutions: tuple[int, ...],
        resolution: int,
        patch_size: int,
        spatial_compression: int,
        z_channels: int,
        latent_channels: int,
    ) -> None:
        if patch_size < 1 or patch_size & (patch_size - 1):
            raise ValueError(f"patch_size must be a power of two, got {patch_size}")
        if spatial_compression < patch_size or spatial_compression & (spatial_compression - 1):
            raise ValueError(
                f"spatial_compression must be a power of two >= patch_size, got {spatial_compression}"
            )
        if channels % 32:
            raise ValueError(f"channels must be a multiple of 32 (GroupNorm with 32 groups), got {channels}")
        arch = dict(
            channels=channels,
            channels_mult=tuple(channels_mult),
            num_res_blocks=num_res_blocks,
            attn_resolutions=tuple(attn_resolutions),
            resolution=resolution,
            patch_size=patch_size,
            spatial_compression=spatial_compression,
            z_channels=z_channels,
        )
        self.encoder = Encoder(**arch)
        self.decoder = Decoder(**arch)
        self.quant_conv = nn.Conv2d(z_channels, latent_channels, 1)
        self.post_quant_conv = nn.Conv2d(latent_channels, z_channels, 1)
        self.patch_size = patch_size
        self.stride = spatial_compression
        self.max_tokens = (_NATIVE // spatial_compression) ** 2

    # ---- reading the release ----------------------------------------------------------------
    def read_official(self, path: Path) -> dict[str, Tensor]:
        """The tensors of ``encoder.jit`` + ``decoder.jit`` (or ``autoencoder.jit``, or one archive).

        Raises:
            CheckpointError: a folder without those files, an archive that is not TorchScript,
                or two archives that disagree on a shared key.
        """
        if path.is_dir():
            enc, dec, full = path / "encoder.jit", path / "decoder.jit", path / "autoencoder.jit"
            if enc.is_file() and dec.is_file():
                state = read_torchscript(enc)
                for k, v in read_torchscript(dec).items():
                    if k in state and not torch.equal(state[k], v):
                        raise CheckpointError(f"{path}: encoder.jit and decoder.jit disagree on {k!r}")
                    state[k] = v
                return state
            if full.is_file():
                return read_torchscript(full)
            raise CheckpointError(
                f"{path}: folder holds neither encoder.jit + decoder.jit nor autoencoder.jit"
            )
        return read_torchscript(path)

    def _check_fixed_buffers(self, state: dict[str, Tensor]) -> None:
        low, _ = _haar_filters()
        for key in ("encoder.patcher.wavelets", "decoder.unpatcher.wavelets"):
            if key in state and not torch.allclose(state[key].float().flip(0), low, atol=1e-2):
                raise CheckpointError(
                    f"{self.weights_hint}: {key} is {state[key].float().tolist()}, not the Haar filter "
                    "(only patch_method='haar', the released one, is implemented)"
                )

    weights_hint: str = "checkpoint"

    def load_official(self, *, weights: str | None, pretrained: bool, hub: str) -> None:
        self.weights_hint = str(weights) if weights else hub
        super().load_official(weights=weights, pretrained=pretrained, hub=hub)

    def _latent(self, images: Tensor) -> Tensor:
        return self.quant_conv(self.encoder(self.to_model(images)))

    def _pixels_unclamped(self, z: Tensor) -> Tensor:
        """Decoder input ``[B, C, h, w]`` -> images on the ``[0, 1]`` scale, not clamped."""
        return (self.decoder(self.post_quant_conv(z)).float() + 1.0) * 0.5

    def _pixels(self, z: Tensor) -> Tensor:
        return self._pixels_unclamped(z).clamp(0.0, 1.0)


@TOKENIZERS.register(
    "cosmos-di",
    doc="NVIDIA Cosmos discrete image tokenizer (Haar + conv encoder, FSQ 64K codes); see cosmos-di8/16",
)
class CosmosDI(_Cosmos):
    """Cosmos-Tokenizer-DI: images ``[B, 3, H, W]`` in ``[0, 1]`` <-> FSQ ids ``[B, H / s, W / s]``.

    Args:
        channels, channels_mult, num_res_blocks, attn_resolutions, resolution: the encoder
            and decoder widths and where attention sits (official config names).
        patch_size: the Haar transform's size (4: two steps).
        spatial_compression: ``s``, the stride of the token grid (8 or 16 as released).
        z_channels: the encoder's output width before ``quant_conv``.
        levels: FSQ levels; ``quant_conv`` outputs ``len(levels)`` channels.
        weights, pretrained, hub: where the official weights come from (see ``PublishedTokenizer``).
    """

    kind = "discrete"
    official: ClassVar[str] = "NVIDIA/Cosmos-Tokenizer cosmos_tokenizer/networks/discrete_image.py"

    def __init__(
        self,
        *,
        channels: int = 128,
        channels_mult: tuple[int, ...] = (2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (32,),
        resolution: int = 1024,
        patch_size: int = 4,
        spatial_compression: int = 16,
        z_channels: int = 256,
        levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5),
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = f"{_HUB}DI16x16/{_RELEASE}",
    ) -> None:
        super().__init__()
        if not levels or min(levels) < 2:
            raise ValueError(f"levels must be two or more integers >= 2, got {levels}")
        self._build(
            channels=channels,
            channels_mult=channels_mult,
            num_res_blocks=num_res_blocks,
            attn_resolutions=attn_resolutions,
            resolution=resolution,
            patch_size=patch_size,
            spatial_compression=spatial_compression,
            z_channels=z_channels,
            latent_channels=len(levels),
        )
        self.quantizer = FSQ(tuple(levels))
        self.vocab_size = self.quantizer.codebook_size
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def convert_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Identity key map; checks the traced FSQ levels and Haar filters against this configuration."""
        self._check_fixed_buffers(state)
        for key in ("quantizer._levels", "inv_quant.quantizer._levels"):
            if key in state and tuple(int(v) for v in state[key].tolist()) != self.quantizer.levels:
                raise CheckpointError(
                    f"{self.weights_hint}: trained with FSQ levels {tuple(state[key].tolist())}, this "
                    f"configuration has levels={list(self.quantizer.levels)}"
                )
        if not any(k.endswith("quantizer._levels") for k in state) and "quant_conv.weight" in state:
            raise CheckpointError(
                f"{self.weights_hint}: no FSQ quantizer in this release (a continuous Cosmos-CI checkpoint? "
                "use cosmos-ci8/cosmos-ci16)"
            )
        return state

    @property
    def index_factors(self) -> list[int]:
        return list(self.quantizer.levels)

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ids long ``[B, H / s, W / s]`` in ``[0, vocab_size)``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        codes = self.quantizer.quantize(self._latent(images))
        ids = self.quantizer.codes_to_indices(codes)
        b, h, w = ids.shape
        return Tokens(bits=self.rate(b, h * w, self.index_bits(self.vocab_size)), ids=ids)

    def embed(self, ids: Tensor) -> Tensor:
        """The FSQ code of each id: long ``[...]`` -> float ``[..., len(levels)]`` in ``[-1, 1]``."""
        return self.quantizer.indices_to_codes(ids)

    @property
    def has_neighbours(self) -> bool:
        return True

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other FSQ codes (L2 in code space): long ``[...] -> [..., k]``."""
        return self.quantizer.neighbours(ids, k)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """ids ``[B, h, w]`` -> images ``[B, 3, h s, w s]`` in ``[0, 1]``."""
        if tokens.ids is None:
            raise ValueError(f"{self.spec}: decode needs Tokens with ids")
        codes = self.embed(tokens.ids.to(self.quant_conv.weight.device)).permute(0, 3, 1, 2)
        return self._pixels(codes.to(self.post_quant_conv.weight.dtype))


@TOKENIZERS.register(
    "cosmos-ci",
    doc="NVIDIA Cosmos continuous image tokenizer (Haar + conv autoencoder, 16 channels); see cosmos-ci8/16",
)
class CosmosCI(_Cosmos):
    """Cosmos-Tokenizer-CI: images ``[B, 3, H, W]`` in ``[0, 1]`` <-> latents ``[B, 16, H / s, W / s]`` (float16).

    Args:
        channels, channels_mult, num_res_blocks, attn_resolutions, resolution: the encoder
            and decoder widths and where attention sits (official config names).
        patch_size: the Haar transform's size (4: two steps).
        spatial_compression: ``s``, the stride of the latent grid (8 or 16 as released).
        z_channels: the encoder's output width before ``quant_conv``.
        latent_channels: the latent width ``C`` after ``quant_conv``.
        weights, pretrained, hub: where the official weights come from (see ``PublishedTokenizer``).
    """

    kind = "continuous"
    official: ClassVar[str] = "NVIDIA/Cosmos-Tokenizer cosmos_tokenizer/networks/continuous_image.py"

    def __init__(
        self,
        *,
        channels: int = 128,
        channels_mult: tuple[int, ...] = (2, 4, 4),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (32,),
        resolution: int = 1024,
        patch_size: int = 4,
        spatial_compression: int = 16,
        z_channels: int = 16,
        latent_channels: int = 16,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = f"{_HUB}CI16x16/{_RELEASE}",
    ) -> None:
        super().__init__()
        self._build(
            channels=channels,
            channels_mult=channels_mult,
            num_res_blocks=num_res_blocks,
            attn_resolutions=attn_resolutions,
            resolution=resolution,
            patch_size=patch_size,
            spatial_compression=spatial_compression,
            z_channels=z_channels,
            latent_channels=latent_channels,
        )
        self.latent_channels = latent_channels
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def convert_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Identity key map; a discrete (FSQ) release is refused by name."""
        self._check_fixed_buffers(state)
        if any(k.endswith("quantizer._levels") for k in state):
            raise CheckpointError(
                f"{self.weights_hint}: an FSQ quantizer in this release (a discrete Cosmos-DI checkpoint? "
                "use cosmos-di8/cosmos-di16)"
            )
        return state

    def encode_grid(self, images: Tensor) -> Tensor:
        """Float32 latents ``[B, C, H / s, W / s]`` (:class:`~vistok.models._grid.ContinuousGrid`)."""
        return self._latent(images)

    def decode_grid(self, grid: Tensor) -> Tensor:
        """Latents ``[B, C, h, w]`` -> images ``[B, 3, h s, w s]`` on the ``[0, 1]`` scale, unclamped
        (:class:`~vistok.models._grid.ContinuousGrid`)."""
        return self._pixels_unclamped(grid.to(self.post_quant_conv.weight.dtype))

    @torch.no_grad()
    def latent(self, images: Tensor) -> Tensor:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> float32 latents ``[B, C, H / s, W / s]`` (before storage)."""
        self.check_input(images)
        return self._latent(images)

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> latents float16 ``[B, C, H / s, W / s]``, 16 bits a value."""
        self.check_num_tokens(num_tokens)
        z = self.latent(images).to(torch.float16)
        b, c, h, w = z.shape
        return Tokens(bits=self.rate(b, c * h * w, 16.0), latents=z, meta={"latent_dtype": "float16"})

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """Latents ``[B, C, h, w]`` (any float dtype) -> images ``[B, 3, h s, w s]`` in ``[0, 1]``."""
        if tokens.latents is None:
            raise ValueError(f"{self.spec}: decode needs Tokens with latents")
        w = self.post_quant_conv.weight
        return self._pixels(tokens.latents.to(device=w.device, dtype=w.dtype))


def _doc(kind: str, s: int) -> str:
    what = "discrete, FSQ 64K codes" if kind == "DI" else "continuous, 16 channels"
    return f"NVIDIA Cosmos-Tokenizer-{kind}{s}x{s} ({what}, {s}x{s} compression; weights: NVIDIA Open Model License)"


for _s in (8, 16):
    TOKENIZERS.register_variant(
        f"cosmos-di{_s}",
        "cosmos-di",
        doc=_doc("DI", _s),
        spatial_compression=_s,
        hub=f"{_HUB}DI{_s}x{_s}/{_RELEASE}",
    )
    TOKENIZERS.register_variant(
        f"cosmos-ci{_s}",
        "cosmos-ci",
        doc=_doc("CI", _s),
        spatial_compression=_s,
        hub=f"{_HUB}CI{_s}x{_s}/{_RELEASE}",
    )
