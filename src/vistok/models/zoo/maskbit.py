"""MaskBit's tokenizers: VQGAN+ (a learned codebook) and the MaskBit bit tokenizer (LFQ).

MaskBit (Weber et al., "MaskBit: Embedding-free Image Generation via Bit Tokens", TMLR 2024)
modernises the VQGAN encoder/decoder ("VQGAN+"): bias-free 3x3 convolutions, no attention,
strided-conv downsampling, nearest-neighbour upsampling, GroupNorm(32) + SiLU. Both
tokenizers share that conv autoencoder (``ConvVQModel``) and downsample by 16: a 256x256 image
becomes a 16x16 grid of tokens.

* ``maskbit-10bit`` ... ``maskbit-18bit`` (:class:`MaskBitTokenizer`): lookup-free quantization,
  the encoder's ``K = bits`` channels taken by sign. A token is ``K`` bits; its id is
  ``sum_c [z_c > 0] * 2**c`` (channel ``c`` is bit ``c``, least significant first, the order
  of the official ``bits_to_indices``), so ``index_factors`` is ``[2] * K``. Decoding maps each
  bit to ``-1`` / ``+1`` (the official ``get_codebook_entry``). 18 bits: the README notes that
  one bit never changes in the release (17 are used).
* ``vqgan-plus-10bit`` / ``vqgan-plus-12bit`` (:class:`VQGANPlus`): nearest neighbour in a
  learned codebook (1024 x 256 / 4096 x 64) under squared L2 distance, computed as
  ``|z|^2 + |e|^2 - 2 z.e`` like the official ``SimpleVectorizer``.

Official source: https://github.com/markweberdev/maskbit (``modeling/conv_vqgan.py``,
``modeling/modules/autoencoder.py``, ``modeling/quantizer/``); hyper-parameters from its
``configs/tokenizer/*.yaml``. Releases: ``markweber/<name>/<name>.bin`` on the HF hub, a bare
``torch.save`` of ``ConvVQModel.state_dict()`` (``BaseModel.save_pretrained`` writes the same
dict as ``pytorch_model.bin``); the module keeps the official attribute names, so the key map
is the identity. The LFQ releases also hold the quantizer's constant buffers
``quantize.bits_to_indices`` and ``quantize.codebook`` (all ``2**K`` codes as +-1), which are
dropped (:attr:`MaskBitTokenizer.ignore_keys`) and recomputed: they depend only on ``K``.

Deviations, none numerical:

* images enter in ``[0, 1]`` as in the official training and evaluation (no ``[-1, 1]``
  mapping); ``decode`` clamps to ``[0, 1]`` as the official evaluation does;
* the official ``ResidualBlock``'s 1x1 ``nin_shortcut`` (present where the width changes) is
  applied to the block's *output*, not its input (``h + nin_shortcut(h)``); this is kept, so
  :mod:`vistok.nn.taming`'s ``ResnetBlock`` (input shortcut, biased convs) is not reused; its
  ``group_norm`` is (identical);
* 3x3 stride-1 "same" convolutions use the convolution's own zero padding instead of an
  explicit ``F.pad`` (the same result, one copy fewer); the stride-2 down-convolution keeps the
  official asymmetric TensorFlow-style "same" padding;
* ``num_resolutions`` is ``len(channel_mult)`` (equal in every official config);
* the official forward feeds the decoder ``z + (q - z).detach()``, equal to ``q`` up to
  float rounding; vistok decodes ``q`` from the ids exactly as ``decode_tokens`` does.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models.zoo._base import PublishedTokenizer
from vistok.models.zoo._sign_bits import SignBits
from vistok.nn.taming import group_norm
from vistok.quantize._search import code_neighbours
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens
from vistok.utils.checkpoints import CheckpointError, read_state_dict

__all__ = ["MaskBitTokenizer", "VQGANPlus"]

_HUB = "markweber"


def _norm(channels: int) -> nn.GroupNorm:
    if channels % 32:
        raise ValueError(f"GroupNorm(32) needs a width divisible by 32, got {channels}")
    return group_norm(channels, 32, 1e-6)


def _conv3(cin: int, cout: int, *, bias: bool = True) -> nn.Conv2d:
    """3x3 stride-1 conv with 'same' padding (symmetric 1, as the official ``Conv2dSame``)."""
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class _SameStride2Conv(nn.Conv2d):
    """3x3 stride-2 conv with TensorFlow 'same' padding: extra padding on the right/bottom."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, channels, 3, stride=2, padding=0)

    @staticmethod
    def _pad(n: int) -> int:
        return max((math.ceil(n / 2) - 1) * 2 + 3 - n, 0)

    def forward(self, x: Tensor) -> Tensor:
        ph, pw = self._pad(x.shape[-2]), self._pad(x.shape[-1])
        if ph or pw:
            x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return super().forward(x)


class ResidualBlock(nn.Module):
    """``h = conv2(silu(norm2(conv1(silu(norm1(x))))))``; returns ``h + x``, or ``h + nin_shortcut(h)``.

    The convs have no bias. Where the width changes, the official block adds a 1x1 projection
    of ``h`` itself (kept here as released). Maps ``[B, C_in, H, W] -> [B, C_out, H, W]``.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.norm1 = _norm(in_channels)
        self.conv1 = _conv3(in_channels, out_channels, bias=False)
        self.norm2 = _norm(out_channels)
        self.conv2 = _conv3(out_channels, out_channels, bias=False)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(out_channels, out_channels, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x), inplace=True))
        h = self.conv2(F.silu(self.norm2(h), inplace=True))
        if self.in_channels != self.out_channels:
            return h + self.nin_shortcut(h)
        return h + x


class _Stage(nn.Module):
    """``res_blocks`` then, optionally, a 2x down-conv / 2x2 average pool / 2x upsample + conv."""

    def __init__(self, cin: int, cout: int, blocks: int, *, resample: str = "none") -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(ResidualBlock(cin if i == 0 else cout, cout) for i in range(blocks))
        self.resample = resample
        if resample == "down_conv":
            self.down_conv = _SameStride2Conv(cout)
        elif resample == "up":
            self.upsample_conv = _conv3(cout, cout)

    def forward(self, x: Tensor) -> Tensor:
        for block in self.res_blocks:
            x = block(x)
        if self.resample == "down_conv":
            x = self.down_conv(x)
        elif self.resample == "down_pool":
            x = F.avg_pool2d(x, kernel_size=2, stride=2)
        elif self.resample == "up":
            x = self.upsample_conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return x


class ConvEncoder(nn.Module):
    """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> latents ``[B, token_size, H/s, W/s]``, ``s = 2**(L-1)``."""

    def __init__(
        self, token_size: int, hidden: int, mult: tuple[int, ...], blocks: int, sample_with_conv: bool
    ) -> None:
        super().__init__()
        widths = [hidden] + [hidden * m for m in mult]
        self.conv_in = _conv3(3, hidden, bias=False)
        last = len(mult) - 1
        down = "down_conv" if sample_with_conv else "down_pool"
        self.down = nn.ModuleList(
            _Stage(widths[i], widths[i + 1], blocks, resample=down if i < last else "none")
            for i in range(len(mult))
        )
        self.mid = _Stage(widths[-1], widths[-1], blocks)
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], token_size, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv_in(x)
        for stage in self.down:
            x = stage(x)
        x = self.mid(x)
        return self.conv_out(F.silu(self.norm_out(x), inplace=True))


class ConvDecoder(nn.Module):
    """Quantized latents ``[B, token_size, h, w]`` -> images ``[B, 3, h*s, w*s]`` (about ``[0, 1]``).

    ``up[0]`` is the deepest level (the official list order), ``up[-1]`` the full-resolution one.
    """

    def __init__(self, token_size: int, hidden: int, mult: tuple[int, ...], blocks: int) -> None:
        super().__init__()
        widths = [hidden * m for m in (*mult, mult[-1])]
        self.conv_in = _conv3(token_size, widths[-1])
        self.mid = _Stage(widths[-1], widths[-1], blocks)
        self.up = nn.ModuleList(
            _Stage(widths[i + 1], widths[i], blocks, resample="up" if i > 0 else "none")
            for i in reversed(range(len(mult)))
        )
        self.norm_out = _norm(widths[0])
        self.conv_out = _conv3(widths[0], 3)

    def forward(self, z: Tensor) -> Tensor:
        x = self.mid(self.conv_in(z))
        for stage in self.up:
            x = stage(x)
        return self.conv_out(F.silu(self.norm_out(x), inplace=True))


class _ConvVQModel(PublishedTokenizer):
    """The shared VQGAN+ autoencoder; subclasses add the quantizer (``_quantize`` / ``embed``)."""

    kind = "discrete"
    formats = (
        "the official torch .bin state dict (a bare ConvVQModel.state_dict(): the hub's <name>.bin, "
        "or a save_pretrained folder with pytorch_model.bin)"
    )
    official = "markweberdev/maskbit modeling/conv_vqgan.py"
    state_keys: ClassVar[tuple[str, ...]] = ()

    def _build(
        self,
        token_size: int,
        hidden_channels: int,
        channel_mult: tuple[int, ...],
        num_res_blocks: int,
        num_res_blocks_decoder: int | None,
        sample_with_conv: bool,
    ) -> None:
        mult = tuple(int(m) for m in channel_mult)
        if not mult or min(mult) < 1 or num_res_blocks < 1 or (num_res_blocks_decoder or 1) < 1:
            raise ValueError("channel_mult needs positive entries and num_res_blocks must be >= 1")
        self.token_size = token_size
        dec_blocks = num_res_blocks if num_res_blocks_decoder is None else num_res_blocks_decoder
        self.encoder = ConvEncoder(token_size, hidden_channels, mult, num_res_blocks, sample_with_conv)
        self.decoder = ConvDecoder(token_size, hidden_channels, mult, dec_blocks)
        self.stride = 2 ** (len(mult) - 1)
        self.max_tokens = (256 // self.stride) ** 2

    # ---- the release -------------------------------------------------------------------------
    def read_official(self, path: Path) -> dict[str, Tensor]:
        """The state dict of a ``.bin`` file, or of the one ``.bin`` in a folder (hub download)."""
        if path.is_dir():
            bins = sorted(path.glob("*.bin"))
            if (path / "pytorch_model.bin").is_file():
                bins = [path / "pytorch_model.bin"]
            if len(bins) != 1:
                found = ", ".join(p.name for p in bins) or "none"
                raise CheckpointError(f"{path}: expected one .bin state dict in the folder, found {found}")
            path = bins[0]
        return read_state_dict(path, keys=self.state_keys)

    # ---- the model ---------------------------------------------------------------------------
    def _quantize(self, z: Tensor) -> Tensor:
        raise NotImplementedError

    def embed(self, ids: Tensor) -> Tensor:  # pragma: no cover - defined by the subclasses
        raise NotImplementedError

    @torch.no_grad()
    def pre_quant(self, images: Tensor) -> Tensor:
        """The encoder's output before quantization: float ``[B, token_size, H/16, W/16]``."""
        self.check_input(images)
        return self.encoder(images)

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Images float ``[B, 3, H, W]`` in ``[0, 1]`` -> ids long ``[B, H/16, W/16]`` in ``[0, vocab)``."""
        self.check_num_tokens(num_tokens)
        ids = self._quantize(self.pre_quant(images))
        bits = self.rate(ids.shape[0], ids[0].numel(), self.index_bits(self.vocab_size or 1))
        return Tokens(bits=bits, ids=ids)

    @torch.no_grad()
    def decode_ids(self, ids: Tensor) -> Tensor:
        """ids long ``[B, h, w]`` -> the decoder's raw output ``[B, 3, 16h, 16w]`` (not clamped)."""
        if ids.ndim != 3:
            raise ValueError(f"{self.spec}: ids must be [B, h, w], got shape {tuple(ids.shape)}")
        z = self.embed(ids).permute(0, 3, 1, 2).contiguous()
        return self.decoder(z)

    def decode(self, tokens: Tokens) -> Tensor:
        """Tokens with ids ``[B, h, w]`` -> images float ``[B, 3, 16h, 16w]`` in ``[0, 1]`` (clamped)."""
        if tokens.ids is None:
            raise ValueError(f"{self.spec}: decode needs ids")
        return self.decode_ids(tokens.ids.to(self.decoder.conv_out.weight.device)).float().clamp(0.0, 1.0)


@TOKENIZERS.register(
    "maskbit", doc="MaskBit bit tokenizer (VQGAN+ with lookup-free quantization, K bits/token)"
)
class MaskBitTokenizer(SignBits, _ConvVQModel):
    """MaskBit's LFQ tokenizer: ``K = token_bits`` sign bits per token of a 16x16 grid (at 256x256).

    Args:
        token_bits: bits per token ``K`` (the encoder's output width; ``vocab_size = 2**K``).
        hidden_channels, channel_mult, num_res_blocks, num_res_blocks_decoder, sample_with_conv:
            the conv autoencoder (official config names; decoder blocks default to the encoder's).
        weights, pretrained, hub: where the official weights come from (see ``PublishedTokenizer``).
    """

    ignore_keys: ClassVar[tuple[str, ...]] = (r"quantize\.bits_to_indices$", r"quantize\.codebook$")

    def __init__(
        self,
        *,
        token_bits: int = 12,
        hidden_channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        num_res_blocks_decoder: int | None = None,
        sample_with_conv: bool = True,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = f"{_HUB}/maskbit_tokenizer_12bit/maskbit_tokenizer_12bit.bin",
    ) -> None:
        super().__init__()
        if not 1 <= token_bits <= 62:
            raise ValueError(f"token_bits must be in 1..62, got {token_bits}")
        self._build(
            token_bits,
            hidden_channels,
            channel_mult,
            num_res_blocks,
            num_res_blocks_decoder,
            sample_with_conv,
        )
        self.token_bits = token_bits
        self.vocab_size = 2**token_bits
        self.register_buffer("bit_values", 2 ** torch.arange(token_bits, dtype=torch.long), persistent=False)
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def _quantize(self, z: Tensor) -> Tensor:
        """``[B, K, h, w]`` -> ids ``[B, h, w]``: ``sum_c [z_c > 0] 2**c``."""
        return self.signs_to_ids(z)


@TOKENIZERS.register("vqgan-plus", doc="VQGAN+ (MaskBit's modernised VQGAN, learned codebook)")
class VQGANPlus(_ConvVQModel):
    """VQGAN+: nearest entry (squared L2) of a learned ``codebook_size x token_size`` codebook.

    Args:
        codebook_size: entries of the codebook (``vocab_size``).
        token_size: width of an entry (the encoder's output width).
        hidden_channels, channel_mult, num_res_blocks, num_res_blocks_decoder, sample_with_conv:
            the conv autoencoder (official config names; decoder blocks default to the encoder's).
        weights, pretrained, hub: where the official weights come from (see ``PublishedTokenizer``).
    """

    def __init__(
        self,
        *,
        codebook_size: int = 4096,
        token_size: int = 64,
        hidden_channels: int = 128,
        channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        num_res_blocks_decoder: int | None = None,
        sample_with_conv: bool = True,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = f"{_HUB}/vqgan_plus_12bit/vqgan_plus_12bit.bin",
    ) -> None:
        super().__init__()
        if codebook_size < 2:
            raise ValueError(f"codebook_size must be >= 2, got {codebook_size}")
        self._build(
            token_size,
            hidden_channels,
            channel_mult,
            num_res_blocks,
            num_res_blocks_decoder,
            sample_with_conv,
        )
        self.vocab_size = codebook_size
        self.quantize = nn.Module()
        self.quantize.embedding = nn.Embedding(codebook_size, token_size)
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    @property
    def codebook(self) -> Tensor:
        """The learned codebook, float ``[codebook_size, token_size]``."""
        return self.quantize.embedding.weight

    def _quantize(self, z: Tensor) -> Tensor:
        """``[B, C, h, w]`` -> ids ``[B, h, w]`` of the nearest entries (``|z|^2 + |e|^2 - 2 z.e``)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        e = self.codebook
        d = flat.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * torch.einsum("bd,dn->bn", flat, e.T)
        return d.argmin(1).view(b, h, w)

    def embed(self, ids: Tensor) -> Tensor:
        """ids long ``[...]`` -> codebook entries float ``[..., token_size]``."""
        return F.embedding(ids.long(), self.codebook)

    @property
    def has_neighbours(self) -> bool:
        return True

    @torch.no_grad()
    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other entries (squared L2) of each id: long ``[...]`` -> ``[..., k]``."""
        return code_neighbours(self.codebook, ids, k, who=self.spec)


def _doc(kind: str, bits: int, hub: str, note: str = "") -> str:
    return f"MaskBit {kind}, {bits} bits/token, 16x16 tokens at 256x256 (official weights: {hub}){note}"


for _k in (10, 12, 14, 16, 18):
    _h = f"{_HUB}/maskbit_tokenizer_{_k}bit/maskbit_tokenizer_{_k}bit.bin"
    TOKENIZERS.register_variant(
        f"maskbit-{_k}bit",
        "maskbit",
        doc=_doc("bit tokenizer (LFQ)", _k, _h, "; 17 of the 18 bits are used" if _k == 18 else ""),
        token_bits=_k,
        hub=_h,
    )

TOKENIZERS.register_variant(
    "vqgan-plus-10bit",
    "vqgan-plus",
    doc=_doc("VQGAN+ (1024 x 256 codebook)", 10, "markweber/vqgan_plus_paper, the paper's model"),
    codebook_size=1024,
    token_size=256,
    hub=f"{_HUB}/vqgan_plus_paper",
)
TOKENIZERS.register_variant(
    "vqgan-plus-12bit",
    "vqgan-plus",
    doc=_doc("VQGAN+ (4096 x 64 codebook)", 12, f"{_HUB}/vqgan_plus_12bit/vqgan_plus_12bit.bin"),
    codebook_size=4096,
    token_size=64,
    hub=f"{_HUB}/vqgan_plus_12bit/vqgan_plus_12bit.bin",
)
