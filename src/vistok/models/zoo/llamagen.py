"""LlamaGen's VQ tokenizers (Sun et al. 2024, "Autoregressive Model Beats Diffusion"), natively.

Names:

* ``llamagen-vq16``: ``vq_ds16_c2i``, downsample 16 (``ch_mult [1, 1, 2, 2, 4]``), 16x16
  tokens at 256x256;
* ``llamagen-vq8``: ``vq_ds8_c2i``, downsample 8 (``ch_mult [1, 2, 2, 4]``), 32x32 tokens
  at 256x256.

Both: a taming-style conv encoder (``ch=128``, two residual blocks per level, single-head
attention at the lowest level and in the middle) to ``z_channels=256``, a 1x1
``quant_conv`` to 8 channels, a 16384 x 8 codebook whose entries *and* inputs are
l2-normalized (nearest code by ``|z|^2 + |e|^2 - 2 z.e`` on unit vectors), a 1x1
``post_quant_conv`` and the mirrored decoder (three residual blocks per level). Ids are
``[B, H/f, W/f]``, 14 bits each; any ``H, W`` that are multiples of ``f`` are accepted.

Official source: FoundationVision/LlamaGen ``tokenizer/tokenizer_image/vq_model.py``
(``VQModel``, ``Encoder``, ``Decoder``, ``VectorQuantizer``); the module tree and state-dict
keys here are the official ones (``encoder.conv_blocks.N.res.M.conv1.weight``,
``encoder.mid.N``, ``quantize.embedding.weight``, ...), so the key map is the identity.

Checkpoint layout: the release (``vq_ds16_c2i.pt`` / ``vq_ds8_c2i.pt`` in the Hugging Face
repository ``FoundationVision/LlamaGen``) is the training script's ``torch.save`` dict:
``"model"`` (the weights), ``"optimizer"``, ``"discriminator"``, ``"optimizer_disc"``,
``"steps"``, ``"args"`` (an ``argparse.Namespace``, read as an inert record by the safe
reader) and, for runs trained with ``--ema``, ``"ema"``. The official evaluation and demo
scripts load ``"ema"`` when the file has it, else ``"model"``, else ``"state_dict"``; this
port does the same (:attr:`LlamaGenVQ.state_keys`). Only the weights are read; the
optimizer and discriminator entries are never touched.

Deviations (none changes the tokens of the official code beyond float rounding):

* ``quantize.codebook_used`` (a 65536-long training-time log of recent indices, used only
  for the usage printout) is dropped on load (:attr:`LlamaGenVQ.ignore_keys`);
  :class:`LlamaGenQuantizer` reports batch usage and perplexity in ``stats`` instead;
* attention runs through ``scaled_dot_product_attention`` and the non-linearity is
  ``F.silu`` (the same functions as the official ``bmm``/softmax and ``x * sigmoid(x)``);
* the quantizer computes in float32 with autocast off (vistok's quantizer contract); the
  official code would follow autocast in mixed-precision training;
* activations run in the channels-last memory format (about 10 % faster CPU convs; the
  same values);
* ``decode`` maps ``[-1, 1]`` to ``[0, 1]`` as ``(x + 1) / 2`` clamped (the official demo
  writes ``clamp(127.5 x + 128, 0, 255)`` as uint8).

Training (``forward``): the official quantizer losses, ``mean((q - sg(z))^2)`` (codebook)
+ ``beta * mean((sg(q) - z)^2)`` (commitment, ``beta = 0.25``) + ``entropy_loss_ratio *``
the entropy term (0 in the releases), on the l2-normalized vectors, with the
straight-through estimator; ``model.quantizer`` is the quantizer module, so vistok's
trainer hooks (RobustTok latent perturbation) apply.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models._base import ModelOutput
from vistok.models.zoo._base import PublishedTokenizer
from vistok.nn.taming import AttnBlock, Downsample, ResnetBlock, Upsample, group_norm
from vistok.quantize._search import code_neighbours
from vistok.quantize.base import Quantizer, QuantizerOutput, straight_through
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens
from vistok.utils.checkpoints import read_state_dict

__all__ = ["LlamaGenDecoder", "LlamaGenEncoder", "LlamaGenQuantizer", "LlamaGenVQ", "entropy_loss"]

# most distance scores (rows x codes) the nearest-code search holds at once: 16 M floats
_SEARCH_SCORES = 1 << 24


class _Level(nn.Module):
    """One resolution of the encoder or decoder: ``res`` blocks, ``attn`` blocks (lowest level
    only, one after each res block), then ``downsample`` / ``upsample`` when present."""

    def __init__(self, res: list[nn.Module], attn: list[nn.Module], resample: tuple[str, nn.Module] | None):
        super().__init__()
        self.res = nn.ModuleList(res)
        self.attn = nn.ModuleList(attn)
        self.resample_name = resample[0] if resample else None
        if resample is not None:
            self.add_module(resample[0], resample[1])

    def forward(self, h: Tensor) -> Tensor:
        attn = len(self.attn) > 0
        for i, block in enumerate(self.res):
            h = block(h)
            if attn:
                h = self.attn[i](h)
        if self.resample_name is not None:
            h = getattr(self, self.resample_name)(h)
        return h


class LlamaGenEncoder(nn.Module):
    """Image ``[B, 3, H, W]`` in ``[-1, 1]`` -> ``z`` ``[B, z_channels, H/f, W/f]``, ``f = 2^(levels-1)``.

    Args:
        ch: width of the first level (128 in the releases).
        ch_mult: per-level width multipliers.
        num_res_blocks: residual blocks per level.
        z_channels: output channels.
        dropout: dropout inside the residual blocks (0 in the releases; inactive in eval).
    """

    def __init__(
        self,
        *,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        dropout: float = 0.0,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch] + [ch * m for m in ch_mult]
        n = len(ch_mult)
        levels = []
        for i in range(n):
            block_in, block_out = widths[i], widths[i + 1]
            res, attn = [], []
            for _ in range(num_res_blocks):
                res.append(ResnetBlock(block_in, block_out, dropout=dropout))
                block_in = block_out
                if i == n - 1:
                    attn.append(AttnBlock(block_in))
            down = ("downsample", Downsample(block_in, with_conv=True)) if i != n - 1 else None
            levels.append(_Level(res, attn, down))
        self.conv_blocks = nn.ModuleList(levels)
        top = widths[-1]
        self.mid = nn.ModuleList(
            [ResnetBlock(top, top, dropout=dropout), AttnBlock(top), ResnetBlock(top, top, dropout=dropout)]
        )
        self.norm_out = group_norm(top)
        self.conv_out = nn.Conv2d(top, z_channels, 3, padding=1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, 3, H, W]`` -> ``(z [B, z_channels, h, w], mid features [B, ch * ch_mult[-1], h, w])``."""
        h = self.conv_in(x)
        for level in self.conv_blocks:
            h = level(h)
        for block in self.mid:
            h = block(h)
        return self.conv_out(F.silu(self.norm_out(h))), h


class LlamaGenDecoder(nn.Module):
    """``[B, z_channels, h, w]`` -> image ``[B, 3, f h, f w]`` in about ``[-1, 1]`` (not clamped).

    ``conv_blocks[0]`` is the lowest resolution (widest level, with attention); every level
    but the last ends in a nearest-neighbour 2x ``upsample``. Args as :class:`LlamaGenEncoder`
    (``num_res_blocks + 1`` residual blocks per level).
    """

    def __init__(
        self,
        *,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        z_channels: int = 256,
        dropout: float = 0.0,
        out_channels: int = 3,
    ) -> None:
        super().__init__()
        n = len(ch_mult)
        block_in = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, block_in, 3, padding=1)
        self.mid = nn.ModuleList(
            [
                ResnetBlock(block_in, block_in, dropout=dropout),
                AttnBlock(block_in),
                ResnetBlock(block_in, block_in, dropout=dropout),
            ]
        )
        levels = []
        for i in reversed(range(n)):
            block_out = ch * ch_mult[i]
            res, attn = [], []
            for _ in range(num_res_blocks + 1):
                res.append(ResnetBlock(block_in, block_out, dropout=dropout))
                block_in = block_out
                if i == n - 1:
                    attn.append(AttnBlock(block_in))
            up = ("upsample", Upsample(block_in, with_conv=True)) if i != 0 else None
            levels.append(_Level(res, attn, up))
        self.conv_blocks = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``z`` -> ``(image [B, 3, H, W], mid features [B, ch * ch_mult[-1], h, w])``."""
        h = self.conv_in(z)
        for block in self.mid:
            h = block(h)
        mid = h
        for level in self.conv_blocks:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h))), mid


def entropy_loss(affinity: Tensor, temperature: float = 0.01) -> Tensor:
    """LlamaGen's (MaskGIT's) codebook entropy term: mean per-token entropy minus batch entropy.

    ``affinity``: ``[N, K]`` scores (negative distances); a scalar float32 is returned.
    """
    logits = affinity.reshape(-1, affinity.shape[-1]) / temperature
    probs = F.softmax(logits, dim=-1)
    log_probs = F.log_softmax(logits + 1e-5, dim=-1)
    avg = probs.mean(dim=0)
    avg_entropy = -(avg * torch.log(avg + 1e-5)).sum()
    sample_entropy = -(probs * log_probs).sum(dim=-1).mean()
    return sample_entropy - avg_entropy


class LlamaGenQuantizer(Quantizer):
    """LlamaGen's ``VectorQuantizer`` in vistok's quantizer contract (channel-last ``[..., C]``).

    Args:
        codebook_size: number of codes ``K`` (16384 in the releases).
        dim: code (and input) width ``C`` (8).
        l2_norm: inputs and codes l2-normalized before the search and the lookup (True).
        beta: commitment weight (0.25).
        entropy_loss_ratio: weight of :func:`entropy_loss` in training (0 in the releases).

    ``embedding.weight`` ``[K, C]`` is the official (unnormalized) parameter. The nearest
    code minimizes ``|z|^2 + |e|^2 - 2 z.e`` in float32 as the official code computes it
    (in row chunks), so ties and near-ties resolve as there. ``quantized`` is the
    (normalized) code with the straight-through gradient; ``loss`` is zero in eval.
    """

    def __init__(
        self,
        codebook_size: int = 16384,
        dim: int = 8,
        *,
        l2_norm: bool = True,
        beta: float = 0.25,
        entropy_loss_ratio: float = 0.0,
    ) -> None:
        super().__init__(dim, dim)
        self.codebook_size = codebook_size
        self.bits_per_index = math.log2(codebook_size)
        self.l2_norm = l2_norm
        self.beta = beta
        self.entropy_loss_ratio = entropy_loss_ratio
        self.embedding = nn.Embedding(codebook_size, dim)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
            if l2_norm:
                self.embedding.weight.copy_(F.normalize(self.embedding.weight, p=2, dim=-1))

    def normalized_codebook(self) -> Tensor:
        """The codes as searched and looked up, ``[K, C]`` (unit rows when ``l2_norm``)."""
        w = self.embedding.weight
        return F.normalize(w, p=2, dim=-1) if self.l2_norm else w

    def embed(self, indices: Tensor) -> Tensor:
        """Code vectors ``[..., C]`` of long ``indices`` ``[...]`` (differentiable w.r.t. the codebook)."""
        return F.embedding(indices.long(), self.normalized_codebook())

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The ``k`` nearest other codes (the search's distance), nearest first: ``[...] -> [..., k]``."""
        return code_neighbours(self.normalized_codebook(), indices, k, cosine=self.l2_norm)

    def distances(self, flat: Tensor, codebook: Tensor) -> Tensor:
        """``[N, K]`` squared distances, summed as the official code sums them."""
        return (
            flat.pow(2).sum(dim=1, keepdim=True)
            + codebook.pow(2).sum(dim=1)
            - 2 * torch.einsum("bd,dn->bn", flat, codebook.t())
        )

    def search(self, flat: Tensor, codebook: Tensor) -> Tensor:
        """Long ``[N]`` nearest codes of the rows ``flat`` ``[N, C]`` (no gradient)."""
        rows = max(1, _SEARCH_SCORES // codebook.shape[0])
        if flat.shape[0] <= rows:
            return self.distances(flat, codebook).argmin(dim=1)
        return torch.cat([self.distances(c, codebook).argmin(dim=1) for c in flat.split(rows)])

    def _forward(self, x: Tensor) -> QuantizerOutput:
        z = F.normalize(x, p=2, dim=-1) if self.l2_norm else x
        flat = z.reshape(-1, self.dim)
        codebook = self.normalized_codebook()
        with torch.no_grad():
            indices = self.search(flat.detach(), codebook.detach())
        q = F.embedding(indices, codebook)
        zero = flat.new_zeros(())
        if self.training:
            codebook_loss = (q - flat.detach()).pow(2).mean()
            commit = (q.detach() - flat).pow(2).mean()
            ent = entropy_loss(-self.distances(flat, codebook)) if self.entropy_loss_ratio > 0 else zero
            loss = codebook_loss + self.beta * commit + self.entropy_loss_ratio * ent
        else:
            codebook_loss = commit = ent = loss = zero
        out = straight_through(flat, q).reshape(x.shape)
        stats = self.usage(indices)
        stats.update(codebook=codebook_loss.detach(), commit=commit.detach(), entropy=ent.detach())
        return QuantizerOutput(out, indices.reshape(x.shape[:-1]), loss, stats)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, l2_norm={self.l2_norm}, beta={self.beta}"


@TOKENIZERS.register(
    "llamagen-vq",
    doc="LlamaGen VQ tokenizer (FoundationVision/LlamaGen): taming conv encoder/decoder, l2-normalized codes.",
)
class LlamaGenVQ(PublishedTokenizer):
    """LlamaGen's ``VQModel`` (see the module docstring): images <-> ids ``[B, H/f, W/f]``.

    Args:
        codebook_size: number of codes (16384).
        codebook_embed_dim: code width (8).
        codebook_l2_norm: l2-normalized inputs and codes (True).
        commit_loss_beta: commitment weight in training (0.25).
        entropy_loss_ratio: entropy-term weight in training (0.0).
        encoder_ch_mult, decoder_ch_mult: per-level width multipliers (``[1, 1, 2, 2, 4]``:
            f16; ``[1, 2, 2, 4]``: f8); both must have the same length.
        z_channels: encoder output / decoder input channels (256).
        dropout_p: dropout in the residual blocks (0.0; training only).
        ch: first-level width (128; an argument of the official ``Encoder``/``Decoder`` that
            ``ModelArgs`` leaves at its default; GroupNorm needs multiples of 32).
        num_res_blocks: encoder residual blocks per level (2; the decoder has one more).
        image_size: native size, for ``max_tokens`` (256).
        weights, pretrained, hub: where the release comes from (see ``PublishedTokenizer``).
    """

    kind = "discrete"
    variable_length = False
    formats: ClassVar[str] = (
        "LlamaGen training checkpoint (.pt: a torch.save dict with the weights under 'ema' or "
        "'model', beside optimizer/discriminator/args), or a bare state dict / safetensors file"
    )
    official: ClassVar[str] = "FoundationVision/LlamaGen tokenizer/tokenizer_image/vq_model.py"
    state_keys: ClassVar[tuple[str, ...]] = ("ema", "model", "state_dict")
    ignore_keys: ClassVar[tuple[str, ...]] = (r"quantize\.codebook_used$",)

    def __init__(
        self,
        *,
        codebook_size: int = 16384,
        codebook_embed_dim: int = 8,
        codebook_l2_norm: bool = True,
        commit_loss_beta: float = 0.25,
        entropy_loss_ratio: float = 0.0,
        encoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        decoder_ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        z_channels: int = 256,
        dropout_p: float = 0.0,
        ch: int = 128,
        num_res_blocks: int = 2,
        image_size: int = 256,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "FoundationVision/LlamaGen/vq_ds16_c2i.pt",
    ) -> None:
        super().__init__()
        if len(encoder_ch_mult) != len(decoder_ch_mult):
            raise ValueError(
                f"encoder_ch_mult {list(encoder_ch_mult)} and decoder_ch_mult {list(decoder_ch_mult)} "
                "must have the same number of levels (the same downsampling)"
            )
        if ch % 32:
            raise ValueError(f"ch must be a multiple of 32 (GroupNorm with 32 groups), got {ch}")
        self.stride = 2 ** (len(encoder_ch_mult) - 1)
        if image_size % self.stride:
            raise ValueError(f"image_size {image_size} is not a multiple of the stride {self.stride}")
        self.encoder = LlamaGenEncoder(
            ch=ch, ch_mult=tuple(encoder_ch_mult), num_res_blocks=num_res_blocks,
            z_channels=z_channels, dropout=dropout_p,
        )  # fmt: skip
        self.decoder = LlamaGenDecoder(
            ch=ch, ch_mult=tuple(decoder_ch_mult), num_res_blocks=num_res_blocks,
            z_channels=z_channels, dropout=dropout_p,
        )  # fmt: skip
        self.quantize = LlamaGenQuantizer(
            codebook_size, codebook_embed_dim, l2_norm=codebook_l2_norm, beta=commit_loss_beta,
            entropy_loss_ratio=entropy_loss_ratio,
        )  # fmt: skip
        self.quant_conv = nn.Conv2d(z_channels, codebook_embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(codebook_embed_dim, z_channels, 1)
        self.vocab_size = codebook_size
        self.max_tokens = (image_size // self.stride) ** 2
        self.image_size = image_size
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    # ---- checkpoint ----------------------------------------------------------------------
    def read_official(self, path: Path) -> dict[str, Tensor]:
        """The weights of a LlamaGen checkpoint: ``"ema"`` when present, else ``"model"``
        (as the official evaluation scripts choose), else ``"state_dict"`` or a bare dict."""
        return read_state_dict(path, keys=self.state_keys)

    # ---- capabilities --------------------------------------------------------------------
    @property
    def quantizer(self) -> LlamaGenQuantizer:
        """The quantizer module (official name ``quantize``), for trainer hooks."""
        return self.quantize

    @property
    def has_neighbours(self) -> bool:
        return True

    def embed(self, ids: Tensor) -> Tensor:
        """Code vectors (unit length) of long ``ids`` ``[...]``: float ``[..., codebook_embed_dim]``."""
        return self.quantize.embed(ids)

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes of each id (euclidean on the unit codes): ``[..., k]``."""
        return self.quantize.neighbours(ids, k)

    # ---- passes --------------------------------------------------------------------------
    def _encode_h(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``[0, 1]`` images -> (pre-quantization ``[B, C, h, w]``, encoder mid features)."""
        x = self.to_model(images).contiguous(memory_format=torch.channels_last)
        z, feats = self.encoder(x)
        return self.quant_conv(z), feats

    def _decode_q(self, quant: Tensor) -> tuple[Tensor, Tensor]:
        """Codes ``[B, C, h, w]`` -> (image in about ``[-1, 1]``, decoder mid features)."""
        return self.decoder(self.post_quant_conv(quant.contiguous(memory_format=torch.channels_last)))

    def forward(self, images: Tensor) -> ModelOutput:
        """Training pass: float ``[B, 3, H, W]`` in [0, 1] -> :class:`ModelOutput`.

        ``reconstruction`` is on the [0, 1] scale, not clamped; ``loss`` is the official
        codebook + commitment (+ entropy) loss (zero in eval); ``quantized`` ``[B, C, h, w]``;
        ``indices`` ``[B, h, w]``; ``features`` the encoder's and decoder's mid-block maps.
        """
        h, enc_feats = self._encode_h(images)
        q = self.quantize(h.permute(0, 2, 3, 1))
        quant = q.quantized.permute(0, 3, 1, 2)
        x, dec_feats = self._decode_q(quant)
        return ModelOutput(
            reconstruction=(x + 1.0) * 0.5,
            loss=q.loss,
            stats=q.stats,
            quantized=quant,
            indices=q.indices,
            features={"encoder": enc_feats, "decoder": dec_feats},
        )

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, H, W]`` in [0, 1] (``H, W`` multiples of the stride) -> :class:`Tokens`
        with long ``ids [B, H/f, W/f]`` in ``[0, codebook_size)``, 14 bits each at 16384 codes."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        h, _ = self._encode_h(images)
        hl = h.permute(0, 2, 3, 1)
        flat = F.normalize(hl, p=2, dim=-1) if self.quantize.l2_norm else hl
        ids = self.quantize.search(flat.reshape(-1, hl.shape[-1]), self.quantize.normalized_codebook())
        b, gh, gw = hl.shape[:3]
        ids = ids.reshape(b, gh, gw)
        bits = self.rate(b, gh * gw, self.index_bits(self.vocab_size))
        return Tokens(bits=bits, ids=ids, meta={"size": [images.shape[-2], images.shape[-1]]})

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` with ``ids [B, h, w]`` -> float ``[B, 3, f h, f w]`` in [0, 1] (clamped)."""
        if tokens.ids is None:
            raise ValueError(f"{self.spec}: tokens carry no ids")
        quant = self.embed(tokens.ids.to(self.quantize.embedding.weight.device)).permute(0, 3, 1, 2)
        x, _ = self._decode_q(quant)
        return self.from_model(x)


# ---- the releases ------------------------------------------------------------------------
TOKENIZERS.register_variant(
    "llamagen-vq16",
    "llamagen-vq",
    encoder_ch_mult=[1, 1, 2, 2, 4],
    decoder_ch_mult=[1, 1, 2, 2, 4],
    hub="FoundationVision/LlamaGen/vq_ds16_c2i.pt",
    doc="LlamaGen vq_ds16_c2i: f16, 16384 l2-normalized 8-d codes, 256 tokens (14 bits) at 256px; ImageNet.",
)
TOKENIZERS.register_variant(
    "llamagen-vq8",
    "llamagen-vq",
    encoder_ch_mult=[1, 2, 2, 4],
    decoder_ch_mult=[1, 2, 2, 4],
    hub="FoundationVision/LlamaGen/vq_ds8_c2i.pt",
    doc="LlamaGen vq_ds8_c2i: f8, 16384 l2-normalized 8-d codes, 1024 tokens (14 bits) at 256px; ImageNet.",
)
