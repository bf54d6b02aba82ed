"""TiTok: a ViT that reads an image into a short 1D sequence of latent tokens (bytedance/1d-tokenizer).

Names:

* legacy two-stage TiTok, VQ 4096 x 12-d l2-normalized codes, whose decoder predicts logits
  over MaskGIT-VQGAN's 1024 codes; their softmax-weighted codebook mix is rendered by the
  frozen MaskGIT-VQGAN pixel decoder (the official ``TiTok.decode`` with
  ``finetune_decoder=True``): ``titok-l-32``, ``titok-b-64``, ``titok-s-128``;
* single-stage TiTok (``is_legacy=False``), the decoder predicts pixel patches, then a 3x3
  conv: VQ 8192 x 64-d codes ``titok-bl-64-vq``, ``titok-bl-128-vq``, ``titok-sl-256-vq``;
  continuous, a diagonal Gaussian of 16 channels per token ``titok-bl-64-vae``,
  ``titok-bl-128-vae``, ``titok-ll-32-vae`` (posterior mean by default; ``sample=true`` draws
  ``mean + std * N(0, 1)`` with the generator seeded by ``seed``).

Official source: ``bytedance/1d-tokenizer`` ``modeling/titok.py``, ``modeling/modules/blocks.py``
(``TiTokEncoder``, ``TiTokDecoder``, ``ResidualAttentionBlock``), ``modeling/quantizer/quantizer.py``,
configs ``configs/infer/TiTok/*.yaml``. One-D-Piece (:mod:`vistok.models.zoo.one_d_piece`) is
this architecture with prefix decoding.

Checkpoint layout: each release is a Hugging Face ``PyTorchModelHubMixin`` folder
(``yucornetto/tokenizer_titok_*_imagenet``): ``config.json`` (the OmegaConf config as JSON) and
``model.safetensors`` (older hub clients: ``pytorch_model.bin``) with the official module's
state dict: ``latent_tokens``, ``encoder.*``, ``decoder.*``, ``quantize.embedding.weight`` (VQ)
and, for the legacy names, the MaskGIT-VQGAN pixel decoder as ``pixel_quantize.embedding.weight``
and ``pixel_decoder.*`` (the official class holds them whenever ``finetune_decoder`` is set, as
in the legacy configs, so its state dict, and therefore the release, includes them). The bare
state dicts of ``fun-research/TiTok`` (``tokenizer_titok_l32.bin``, ...) load the same way.
Keys are the official ones (``convert_state`` is the identity); nothing is ignored.

When the folder has a ``config.json`` it is checked against the configuration being built
(token count, code size, codebook, l2 norm, legacy flags, patch and image size, and the ViT
sizes when they are the official ``small``/``base``/``large``): a mismatch is a one-line
``CheckpointError`` naming the field, never a silently wrong model. Width and depth also show in
the tensor shapes; the head count shows only in ``config.json``.

Images are read in ``[0, 1]`` as the official code reads them (``ToTensor`` images, no
``[-1, 1]`` mapping); reconstructions are clamped to ``[0, 1]``.

Deviations (numerics only at float rounding): attention is ``scaled_dot_product_attention`` on
batch-first tokens with ``nn.MultiheadAttention``'s parameters (``attn.in_proj_weight``, ...);
the 1x1 convolutions on the fake ``[B, C, 1, N]`` maps are applied as linear layers on
``[B, N, C]``, with the legacy encoder's raw ``reshape(B, width, N, 1)`` reproduced exactly.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models._base import ModelOutput
from vistok.models.zoo._base import PublishedTokenizer
from vistok.models.zoo.maskgit_vqgan import Codebook, Decoder
from vistok.quantize._search import code_neighbours
from vistok.quantize.base import Quantizer, QuantizerOutput, straight_through
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens
from vistok.utils.checkpoints import CheckpointError, read_json, read_state_dict

__all__ = ["TiTok", "TiTokDecoder", "TiTokEncoder", "TiTokVAE", "VectorQuantizer"]

# the official ViT sizes by name: (width, depth, heads)
VIT_SIZES: dict[str, tuple[int, int, int]] = {
    "small": (512, 8, 8),
    "base": (768, 12, 12),
    "large": (1024, 24, 16),
}


class SelfAttention(nn.Module):
    """Multi-head self-attention on ``[B, L, D]`` with ``nn.MultiheadAttention``'s tensor names
    (``in_proj_weight [3D, D]``, ``in_proj_bias [3D]``, ``out_proj``), computed with SDPA."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} is not a multiple of num_heads={num_heads}")
        self.num_heads = num_heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * dim, dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * dim))
        self.out_proj = nn.Linear(dim, dim)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        qkv = F.linear(x, self.in_proj_weight, self.in_proj_bias)
        q, k, v = qkv.view(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4).unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.out_proj(out.transpose(1, 2).reshape(b, n, d))


class ResidualAttentionBlock(nn.Module):
    """Pre-norm block ``x + attn(ln_1(x))``, ``x + mlp(ln_2(x))`` (exact GELU, MLP ratio 4)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads)
        self.ln_2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(
            OrderedDict(
                [("c_fc", nn.Linear(dim, 4 * dim)), ("gelu", nn.GELU()), ("c_proj", nn.Linear(4 * dim, dim))]
            )
        )

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


def _conv1x1(conv: nn.Conv2d, x: Tensor) -> Tensor:
    """A 1x1 ``conv`` applied to channels-last ``x [..., Cin] -> [..., Cout]``."""
    return F.linear(x, conv.weight.flatten(1), conv.bias)


class TiTokEncoder(nn.Module):
    """Images ``[B, 3, S, S]`` + learned latent tokens -> ``[B, N, out_channels]``.

    Tokens are ``[cls, S^2/p^2 patches, N latents]``; the latents' outputs go through
    ``ln_post`` and ``conv_out`` (1x1). ``legacy`` reproduces the released models' raw
    reshape of ``[B, N, width]`` to ``[B, width, N]`` before ``conv_out``.
    """

    def __init__(
        self, *, image_size: int, patch_size: int, width: int, depth: int, num_heads: int,
        num_latent_tokens: int, out_channels: int, legacy: bool,
    ) -> None:  # fmt: skip
        super().__init__()
        self.grid = image_size // patch_size
        self.width, self.legacy = width, legacy
        self.patch_embed = nn.Conv2d(3, width, patch_size, stride=patch_size)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid**2 + 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, num_heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(width)
        self.conv_out = nn.Conv2d(width, out_channels, 1)

    def forward(self, images: Tensor, latent_tokens: Tensor) -> Tensor:
        """``images [B, 3, S, S]``, ``latent_tokens [N, width]`` -> ``[B, N, out_channels]``."""
        x = self.patch_embed(images).flatten(2).transpose(1, 2)
        b = x.shape[0]
        x = torch.cat([self.class_embedding.expand(b, 1, -1), x], dim=1) + self.positional_embedding
        lat = (latent_tokens + self.latent_token_positional_embedding).expand(b, -1, -1)
        x = self.ln_pre(torch.cat([x, lat], dim=1))
        for blk in self.transformer:
            x = blk(x)
        x = self.ln_post(x[:, 1 + self.grid**2 :])
        n = x.shape[1]
        if self.legacy:  # the released models read [B, N, W] memory as [B, W, N]
            x = x.reshape(b, self.width, n).transpose(1, 2)
        return _conv1x1(self.conv_out, x)


class TiTokDecoder(nn.Module):
    """``[B, n, token_size]`` (``n <= N``) -> the decoder head's output.

    Tokens are ``[cls, (S/p)^2 mask tokens, n latents]``; the mask tokens' outputs go through
    ``ln_post`` and ``ffn``. Legacy: ``ffn`` is conv-tanh-conv to ``pixel_codebook_size``
    logits, returned as ``[B, (S/p)^2, K]``. Otherwise ``ffn`` predicts ``p x p x 3`` pixels per
    position, unpatchified and passed through ``conv_out`` (3x3): ``[B, 3, S, S]``.
    """

    def __init__(
        self, *, image_size: int, patch_size: int, width: int, depth: int, num_heads: int,
        num_latent_tokens: int, token_size: int, legacy: bool, pixel_codebook_size: int,
    ) -> None:  # fmt: skip
        super().__init__()
        self.grid, self.patch, self.legacy = image_size // patch_size, patch_size, legacy
        self.decoder_embed = nn.Linear(token_size, width)
        scale = width**-0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(1, width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(self.grid**2 + 1, width))
        self.mask_token = nn.Parameter(scale * torch.randn(1, 1, width))
        self.latent_token_positional_embedding = nn.Parameter(scale * torch.randn(num_latent_tokens, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.ModuleList(ResidualAttentionBlock(width, num_heads) for _ in range(depth))
        self.ln_post = nn.LayerNorm(width)
        self.conv_out: nn.Module
        if legacy:
            self.ffn = nn.Sequential(
                nn.Conv2d(width, 2 * width, 1), nn.Tanh(), nn.Conv2d(2 * width, pixel_codebook_size, 1)
            )
            self.conv_out = nn.Identity()
        else:
            self.ffn = nn.Sequential(nn.Conv2d(width, patch_size * patch_size * 3, 1))
            self.conv_out = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        b, n, _ = z.shape
        g2 = self.grid**2
        x = self.decoder_embed(z) + self.latent_token_positional_embedding[:n]
        queries = (
            torch.cat([self.class_embedding, self.mask_token[0].expand(g2, -1)], dim=0)
            + self.positional_embedding
        )
        x = self.ln_pre(torch.cat([queries.expand(b, -1, -1), x], dim=1))
        for blk in self.transformer:
            x = blk(x)
        x = self.ln_post(x[:, 1 : 1 + g2])
        if self.legacy:
            return _conv1x1(self.ffn[2], torch.tanh(_conv1x1(self.ffn[0], x)))
        p, g = self.patch, self.grid
        x = (
            _conv1x1(self.ffn[0], x)
            .view(b, g, g, p, p, 3)
            .permute(0, 5, 1, 3, 2, 4)
            .reshape(b, 3, g * p, g * p)
        )
        return self.conv_out(x)


class VectorQuantizer(Quantizer):
    """TiTok's codebook ``embedding [K, C]`` in vistok's quantizer contract (channel-last ``[..., C]``).

    The nearest code minimizes the squared L2 distance, on l2-normalized vectors and codes when
    ``use_l2_norm`` (the looked-up codes are then normalized too). In training, ``loss`` is the
    official ``codebook + commitment_cost * commitment`` (MSE terms, ``commitment_cost`` 0.25 in
    every release) and ``quantized`` carries the straight-through gradient to the (normalized)
    input; in eval ``loss`` is zero. The official ``clustering_vq`` codebook refresh (a
    training-only option of the later releases' configs) is not ported.
    """

    def __init__(
        self, codebook_size: int, token_size: int, use_l2_norm: bool, *, commitment_cost: float = 0.25
    ) -> None:
        super().__init__(token_size, token_size)
        self.codebook_size = codebook_size
        self.bits_per_index = math.log2(codebook_size)
        self.embedding = nn.Embedding(codebook_size, token_size)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1.0 / codebook_size, 1.0 / codebook_size)
        self.use_l2_norm = use_l2_norm
        self.commitment_cost = commitment_cost

    def codebook(self) -> Tensor:
        """The codes as the decoder sees them, ``[K, C]``."""
        e = self.embedding.weight
        return F.normalize(e, dim=-1) if self.use_l2_norm else e

    def distances(self, z: Tensor, e: Tensor) -> Tensor:
        """``z [M, C]`` (already normalized when l2) -> ``[M, K]`` squared distances to ``e``."""
        return z.pow(2).sum(1, keepdim=True) + e.pow(2).sum(1) - 2 * (z @ e.t())

    def _normalized(self, z: Tensor) -> Tensor:
        flat = z.float().reshape(-1, z.shape[-1])
        return F.normalize(flat, dim=-1) if self.use_l2_norm else flat

    def indices(self, z: Tensor) -> Tensor:
        """``z [B, N, C]`` -> long ids ``[B, N]``."""
        with torch.no_grad():
            return self.distances(self._normalized(z), self.codebook()).argmin(1).view(z.shape[:-1])

    def lookup(self, ids: Tensor) -> Tensor:
        """Long ids ``[...]`` -> codes ``[..., C]``."""
        return F.embedding(ids, self.codebook())

    def embed(self, indices: Tensor) -> Tensor:
        """Code vectors ``[..., C]`` of long ``indices`` (differentiable w.r.t. the codebook)."""
        return self.lookup(indices.long())

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The ``k`` nearest other codes of each id (the search's distance): ``[...] -> [..., k]``."""
        return code_neighbours(self.codebook(), indices, k)

    def _forward(self, x: Tensor) -> QuantizerOutput:
        flat = self._normalized(x)
        codebook = self.codebook()
        with torch.no_grad():
            ids = self.distances(flat, codebook).argmin(1)
        q = F.embedding(ids, codebook)
        zero = flat.new_zeros(())
        if self.training:
            codebook_loss = (q - flat.detach()).pow(2).mean()
            commit = (q.detach() - flat).pow(2).mean()
            loss = codebook_loss + self.commitment_cost * commit
        else:
            codebook_loss = commit = loss = zero
        stats = self.usage(ids)
        stats.update(codebook=codebook_loss.detach(), commit=commit.detach())
        return QuantizerOutput(
            straight_through(flat, q).reshape(x.shape), ids.view(x.shape[:-1]), loss, stats
        )

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, use_l2_norm={self.use_l2_norm}"


class _TiTokBase(PublishedTokenizer):
    """What the TiTok tokenizers share: the two ViTs, the optional MaskGIT pixel decoder, the
    release reader with its ``config.json`` check. Subclasses add the token bottleneck."""

    formats: ClassVar[str] = (
        "Hugging Face PyTorchModelHubMixin folder (config.json + model.safetensors or pytorch_model.bin), "
        "or the bare state dict .bin"
    )
    official: ClassVar[str] = "bytedance/1d-tokenizer modeling/titok.py"
    state_keys: ClassVar[tuple[str, ...]] = ()
    quantize_mode: ClassVar[str] = "vq"

    def _build(
        self, *, image_size: int, enc_patch_size: int, dec_patch_size: int, enc_width: int, enc_depth: int,
        enc_heads: int, dec_width: int, dec_depth: int, dec_heads: int, num_latent_tokens: int,
        token_size: int, legacy: bool, pixel_hidden_channels: int, pixel_channel_mult: tuple[int, ...],
        pixel_num_res_blocks: int, pixel_z_channels: int, pixel_codebook_size: int,
    ) -> None:  # fmt: skip
        for what, size, patch in (
            ("encoder", image_size, enc_patch_size),
            ("decoder", image_size, dec_patch_size),
        ):
            if size % patch:
                raise ValueError(f"image_size {size} is not a multiple of the {what} patch size {patch}")
        if legacy and dec_patch_size != 2 ** (len(pixel_channel_mult) - 1):
            raise ValueError(
                f"legacy TiTok renders its {image_size // dec_patch_size}^2 proxy codes with the MaskGIT decoder "
                f"(x{2 ** (len(pixel_channel_mult) - 1)}): dec_patch_size must be that factor, got {dec_patch_size}"
            )
        self.arch: dict[str, Any] = dict(
            image_size=image_size, enc_patch_size=enc_patch_size, dec_patch_size=dec_patch_size,
            enc=(enc_width, enc_depth, enc_heads), dec=(dec_width, dec_depth, dec_heads),
            num_latent_tokens=num_latent_tokens, token_size=token_size, legacy=legacy,
        )  # fmt: skip
        enc_out = token_size * (2 if self.quantize_mode == "vae" else 1)
        self.encoder = TiTokEncoder(
            image_size=image_size, patch_size=enc_patch_size, width=enc_width, depth=enc_depth,
            num_heads=enc_heads, num_latent_tokens=num_latent_tokens, out_channels=enc_out, legacy=legacy,
        )  # fmt: skip
        self.decoder = TiTokDecoder(
            image_size=image_size, patch_size=dec_patch_size, width=dec_width, depth=dec_depth,
            num_heads=dec_heads, num_latent_tokens=num_latent_tokens, token_size=token_size, legacy=legacy,
            pixel_codebook_size=pixel_codebook_size,
        )  # fmt: skip
        self.latent_tokens = nn.Parameter(enc_width**-0.5 * torch.randn(num_latent_tokens, enc_width))
        self.legacy = legacy
        if legacy:
            self.pixel_quantize = Codebook(pixel_codebook_size, pixel_z_channels)
            self.pixel_decoder = Decoder(
                pixel_hidden_channels, pixel_channel_mult, pixel_num_res_blocks, pixel_z_channels
            )
        self.input_size = image_size
        self.max_tokens = num_latent_tokens
        self.token_size = token_size

    # ---- the release ----------------------------------------------------------------------
    def read_official(self, path: Path) -> dict[str, Tensor]:
        if path.is_dir() and (path / "config.json").is_file():
            self.check_config(read_json(path / "config.json"), path / "config.json")
        return read_state_dict(path, keys=self.state_keys)

    def expected_config(self) -> dict[str, Any]:
        """``model.vq_model`` fields of the official config this configuration corresponds to."""
        a = self.arch
        return {
            "num_latent_tokens": a["num_latent_tokens"],
            "token_size": a["token_size"],
            "vit_enc_patch_size": a["enc_patch_size"],
            "vit_dec_patch_size": a["dec_patch_size"],
            "quantize_mode": self.quantize_mode,
            "is_legacy": a["legacy"],
            "finetune_decoder": a["legacy"],
        }

    def check_config(self, cfg: dict[str, Any], path: Path) -> None:
        """Compare the release's ``config.json`` with this configuration.

        Raises:
            CheckpointError: naming the file, the first field that differs and both values.
        """
        vq = (cfg.get("model") or {}).get("vq_model")
        if not isinstance(vq, dict):
            raise CheckpointError(f"{path}: no model.vq_model section: not a TiTok config.json")
        defaults = {"quantize_mode": "vq", "is_legacy": True, "finetune_decoder": True, "use_l2_norm": False}
        crop = ((cfg.get("dataset") or {}).get("preprocessing") or {}).get("crop_size")
        expected = self.expected_config()
        mode = expected.pop("quantize_mode")
        checks: list[tuple[str, Any, Any]] = [
            ("model.vq_model.quantize_mode", vq.get("quantize_mode", "vq"), mode),
            ("dataset.preprocessing.crop_size", crop, self.arch["image_size"]),
        ]
        for key, want in expected.items():
            checks.append((f"model.vq_model.{key}", vq.get(key, defaults.get(key)), want))
        for side in ("enc", "dec"):
            size = vq.get(f"vit_{side}_model_size")
            if size in VIT_SIZES:
                checks.append((f"model.vq_model.vit_{side}_model_size", VIT_SIZES[size], self.arch[side]))
        for field, got, want in checks:
            if got is not None and got != want:
                what = " (width, depth, heads)" if field.endswith("_model_size") else ""
                raise CheckpointError(
                    f"{path}: {field} is {got!r}{what}, this {type(self).__name__} configuration expects "
                    f"{want!r}: use the name of that release or set its parameters"
                )

    # ---- the decoder path -----------------------------------------------------------------
    def render(self, z: Tensor) -> Tensor:
        """Token vectors ``[B, n, token_size]`` -> images ``[B, 3, S, S]`` in ``[0, 1]`` (clamped)."""
        return self.render_unclamped(z).clamp(0.0, 1.0)

    def render_unclamped(self, z: Tensor) -> Tensor:
        """Token vectors ``[B, n, token_size]`` -> images ``[B, 3, S, S]`` on the ``[0, 1]`` scale,
        not clamped (what training losses see).

        Legacy: the decoder's logits over MaskGIT's codes, softmaxed, mix the MaskGIT codebook;
        the MaskGIT pixel decoder renders the mixed map (the official ``TiTok.decode``).
        """
        x = self.decoder(z.float())
        if self.legacy:
            b, g2, _ = x.shape
            g = round(g2**0.5)
            mixed = x.softmax(-1) @ self.pixel_quantize.embedding.weight  # [B, g*g, D]
            # [B, D, g, g] as a channels-last view, no copy (the official einsum's output layout
            # too): the pixel decoder's convolutions run channels-last, ~10 % faster on CPUs
            x = self.pixel_decoder(mixed.view(b, g, g, -1).permute(0, 3, 1, 2))
        return x

    def _latents(self, images: Tensor) -> Tensor:
        return self.encoder(images.float(), self.latent_tokens)


@TOKENIZERS.register("titok", doc="TiTok 1D VQ tokenizer (bytedance/1d-tokenizer), defaults: TiTok-L-32.")
class TiTok(_TiTokBase):
    """TiTok with a VQ bottleneck: images ``[B, 3, S, S]`` in ``[0, 1]`` <-> ids ``[B, N]``.

    Args:
        image_size: the square input size ``S``.
        enc_patch_size, dec_patch_size: ViT patch sizes of the encoder and decoder.
        enc_width, enc_depth, enc_heads, dec_width, dec_depth, dec_heads: the two ViTs
            (official sizes: small 512/8/8, base 768/12/12, large 1024/24/16).
        num_latent_tokens: ``N``, tokens per image.
        codebook_size, token_size, use_l2_norm: the codebook (``K`` codes of ``token_size``).
        legacy: the two-stage models (decoder -> MaskGIT proxy-code logits -> MaskGIT pixel
            decoder) and the legacy encoder reshape; ``False``: single-stage pixel decoder.
        pixel_hidden_channels, pixel_channel_mult, pixel_num_res_blocks, pixel_z_channels,
        pixel_codebook_size: the MaskGIT-VQGAN pixel decoder and codebook (legacy only).
        weights, pretrained, hub: where the release comes from (see ``PublishedTokenizer``).
    """

    kind: ClassVar[str] = "discrete"  # type: ignore[assignment]

    def __init__(
        self,
        *,
        image_size: int = 256,
        enc_patch_size: int = 16,
        dec_patch_size: int = 16,
        enc_width: int = 1024,
        enc_depth: int = 24,
        enc_heads: int = 16,
        dec_width: int = 1024,
        dec_depth: int = 24,
        dec_heads: int = 16,
        num_latent_tokens: int = 32,
        codebook_size: int = 4096,
        token_size: int = 12,
        use_l2_norm: bool = True,
        legacy: bool = True,
        pixel_hidden_channels: int = 128,
        pixel_channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        pixel_num_res_blocks: int = 2,
        pixel_z_channels: int = 256,
        pixel_codebook_size: int = 1024,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "yucornetto/tokenizer_titok_l32_imagenet",
    ) -> None:
        super().__init__()
        self._build(
            image_size=image_size, enc_patch_size=enc_patch_size, dec_patch_size=dec_patch_size,
            enc_width=enc_width, enc_depth=enc_depth, enc_heads=enc_heads, dec_width=dec_width,
            dec_depth=dec_depth, dec_heads=dec_heads, num_latent_tokens=num_latent_tokens,
            token_size=token_size, legacy=legacy, pixel_hidden_channels=pixel_hidden_channels,
            pixel_channel_mult=pixel_channel_mult, pixel_num_res_blocks=pixel_num_res_blocks,
            pixel_z_channels=pixel_z_channels, pixel_codebook_size=pixel_codebook_size,
        )  # fmt: skip
        self.quantize = VectorQuantizer(codebook_size, token_size, use_l2_norm)
        self.vocab_size = codebook_size
        self.arch.update(codebook_size=codebook_size, use_l2_norm=use_l2_norm)
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def expected_config(self) -> dict[str, Any]:
        out = super().expected_config()
        out.update(codebook_size=self.arch["codebook_size"], use_l2_norm=self.arch["use_l2_norm"])
        return out

    @property
    def quantizer(self) -> VectorQuantizer:
        """The quantizer module (official name ``quantize``), for trainer hooks."""
        return self.quantize

    @property
    def has_neighbours(self) -> bool:
        return True

    def embed(self, ids: Tensor) -> Tensor:
        """Long ids ``[...]`` -> the codes the decoder reads ``[..., token_size]``."""
        return self.quantize.lookup(ids)

    def forward(self, images: Tensor) -> ModelOutput:
        """Training pass: float ``[B, 3, S, S]`` in ``[0, 1]`` -> :class:`ModelOutput`.

        End to end through the released architecture: encoder, the VQ (straight-through, the
        official codebook + 0.25 commitment loss; zero in eval), decoder (legacy: the MaskGIT
        proxy-code mix and the pixel decoder, as in the official stage-2 decoder fine-tune).
        ``reconstruction`` is not clamped; ``quantized`` and ``indices`` are ``[B, N, C]`` and
        ``[B, N]``; ``features`` is empty (no feature-alignment hook on this family).
        """
        self.check_input(images)
        q = self.quantize(self._latents(images))
        return ModelOutput(
            reconstruction=self.render_unclamped(q.quantized),
            loss=q.loss,
            stats=q.stats,
            quantized=q.quantized,
            indices=q.indices,
        )

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes of each id (squared L2, on normalized codes when the
        quantizer normalizes): long ``[...] -> [..., k]``."""
        return self.quantize.neighbours(ids, k)

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, S, S]`` in ``[0, 1]`` -> ``ids [B, N]``, ``bits = N log2(K)``."""
        self.check_input(images)
        k = self.check_num_tokens(num_tokens) or self.max_tokens
        assert k is not None
        ids = self.quantize.indices(self._latents(images))[:, :k].contiguous()
        b = ids.shape[0]
        lengths = torch.full((b,), k, dtype=torch.long, device=ids.device) if self.variable_length else None
        return Tokens(bits=self.rate(b, k, self.index_bits(self.vocab_size or 1)), ids=ids, lengths=lengths)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` with ``ids [B, N]`` -> float ``[B, 3, S, S]`` in ``[0, 1]``."""
        ids = tokens.ids
        if ids is None or ids.ndim != 2 or ids.shape[1] != self.max_tokens:
            shape = None if ids is None else tuple(ids.shape)
            raise ValueError(f"{self.spec}: decode needs ids [B, {self.max_tokens}], got {shape}")
        return self.render(self.quantize.lookup(ids))


@TOKENIZERS.register(
    "titok-vae",
    doc="TiTok 1D continuous (VAE) tokenizer (bytedance/1d-tokenizer), defaults: TiTok-BL-64-VAE.",
)
class TiTokVAE(_TiTokBase):
    """TiTok with a diagonal-Gaussian bottleneck: images ``[B, 3, S, S]`` in ``[0, 1]`` <->
    float16 latents ``[B, N, token_size]`` (posterior mean, or a seeded sample).

    Args:
        image_size, enc_patch_size, dec_patch_size, enc_width, enc_depth, enc_heads,
        dec_width, dec_depth, dec_heads, num_latent_tokens: as for :class:`TiTok`.
        token_size: channels per token (the encoder outputs mean and log-variance).
        sample: draw ``mean + std * eps`` instead of returning the mean.
        seed: seed of the generator for ``eps`` (each ``encode`` call restarts it).
        weights, pretrained, hub: where the release comes from.
    """

    kind: ClassVar[str] = "continuous"  # type: ignore[assignment]
    quantize_mode: ClassVar[str] = "vae"

    def __init__(
        self,
        *,
        image_size: int = 256,
        enc_patch_size: int = 16,
        dec_patch_size: int = 16,
        enc_width: int = 768,
        enc_depth: int = 12,
        enc_heads: int = 12,
        dec_width: int = 1024,
        dec_depth: int = 24,
        dec_heads: int = 16,
        num_latent_tokens: int = 64,
        token_size: int = 16,
        sample: bool = False,
        seed: int = 0,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "yucornetto/tokenizer_titok_bl64_vae_c16_imagenet",
    ) -> None:
        super().__init__()
        self._build(
            image_size=image_size, enc_patch_size=enc_patch_size, dec_patch_size=dec_patch_size,
            enc_width=enc_width, enc_depth=enc_depth, enc_heads=enc_heads, dec_width=dec_width,
            dec_depth=dec_depth, dec_heads=dec_heads, num_latent_tokens=num_latent_tokens,
            token_size=token_size, legacy=False, pixel_hidden_channels=128, pixel_channel_mult=(1,),
            pixel_num_res_blocks=0, pixel_z_channels=1, pixel_codebook_size=1,
        )  # fmt: skip
        self.sample, self.seed = sample, seed
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def posterior(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Float ``[B, 3, S, S]`` in ``[0, 1]`` -> ``(mean, std)``, each float32 ``[B, N, token_size]``
        (log-variance clamped to ``[-30, 20]`` as in the official distribution)."""
        mean, logvar = self._latents(images).float().chunk(2, dim=-1)
        return mean, torch.exp(0.5 * logvar.clamp(-30.0, 20.0))

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, S, S]`` in ``[0, 1]`` -> float16 ``latents [B, N, token_size]``,
        ``bits = 16 N token_size``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        mean, std = self.posterior(images)
        z = mean
        if self.sample:
            gen = torch.Generator(device=mean.device).manual_seed(self.seed)
            z = mean + std * torch.randn(mean.shape, generator=gen, device=mean.device, dtype=mean.dtype)
        b, n, c = z.shape
        return Tokens(bits=self.rate(b, n * c, 16), latents=z.to(torch.float16))

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` with ``latents [B, N, token_size]`` -> float ``[B, 3, S, S]`` in ``[0, 1]``."""
        z = tokens.latents
        if z is None or z.ndim != 3 or tuple(z.shape[1:]) != (self.max_tokens, self.token_size):
            shape = None if z is None else tuple(z.shape)
            raise ValueError(
                f"{self.spec}: decode needs latents [B, {self.max_tokens}, {self.token_size}], got {shape}"
            )
        return self.render(z)


# ---- the released names (configs/infer/TiTok/*.yaml) --------------------------------------------
def _vit(side: str, size: str) -> dict[str, int]:
    w, d, h = VIT_SIZES[size]
    return {f"{side}_width": w, f"{side}_depth": d, f"{side}_heads": h}


_LEGACY = (
    ("titok-l-32", "large", 32, "yucornetto/tokenizer_titok_l32_imagenet"),
    ("titok-b-64", "base", 64, "yucornetto/tokenizer_titok_b64_imagenet"),
    ("titok-s-128", "small", 128, "yucornetto/tokenizer_titok_s128_imagenet"),
)
for _name, _size, _n, _hub in _LEGACY:
    TOKENIZERS.register_variant(
        _name, "titok", **_vit("enc", _size), **_vit("dec", _size), num_latent_tokens=_n, codebook_size=4096,
        token_size=12, use_l2_norm=True, legacy=True, hub=_hub,
        doc=f"TiTok-{_size[0].upper()}-{_n} (two-stage: MaskGIT proxy codes + MaskGIT-VQGAN decoder), VQ 4096, 256x256.",
    )  # fmt: skip

_SINGLE = (
    ("titok-bl-64-vq", "base", 64, "vq", "yucornetto/tokenizer_titok_bl64_vq8k_imagenet"),
    ("titok-bl-128-vq", "base", 128, "vq", "yucornetto/tokenizer_titok_bl128_vq8k_imagenet"),
    ("titok-sl-256-vq", "small", 256, "vq", "yucornetto/tokenizer_titok_sl256_vq8k_imagenet"),
    ("titok-bl-64-vae", "base", 64, "vae", "yucornetto/tokenizer_titok_bl64_vae_c16_imagenet"),
    ("titok-bl-128-vae", "base", 128, "vae", "yucornetto/tokenizer_titok_bl128_vae_c16_imagenet"),
    ("titok-ll-32-vae", "large", 32, "vae", "yucornetto/tokenizer_titok_ll32_vae_c16_imagenet"),
)
for _name, _size, _n, _mode, _hub in _SINGLE:
    _tag = f"{_size[0].upper()}L-{_n}"
    if _mode == "vq":
        TOKENIZERS.register_variant(
            _name, "titok", **_vit("enc", _size), **_vit("dec", "large"), num_latent_tokens=_n,
            codebook_size=8192, token_size=64, use_l2_norm=False, legacy=False, hub=_hub,
            doc=f"TiTok-{_tag} VQ (single-stage, pixel decoder), 8192 codes of 64 dims, 256x256.",
        )  # fmt: skip
    else:
        TOKENIZERS.register_variant(
            _name, "titok-vae", **_vit("enc", _size), **_vit("dec", "large"), num_latent_tokens=_n,
            token_size=16, hub=_hub,
            doc=f"TiTok-{_tag} VAE (single-stage, continuous, 16 channels per token), 256x256.",
        )  # fmt: skip
