"""``vit2d``: ViTok-style transformer tokenizer, one token per patch.

``[B, 3, H, W]`` -> patches of ``p x p`` (``p`` in 1..16) -> linear embedding + 2D position
embedding -> transformer encoder -> linear to ``latent_dim`` -> bottleneck -> linear ->
transformer decoder -> linear to pixels -> unpatchify.

Resolution: the position embedding is defined on the native grid
(``image_size / patch_size`` per side) and resampled for other grids (learned tables
bicubically, sin-cos tables analytically), so any ``H, W`` that are multiples of ``p``
work, at a quality that degrades gracefully away from the training size.

Tokens: ``ids`` long ``[B, H/p, W/p]`` (``[..., K]`` for multi-codebook quantizers) or
``latents`` float16 ``[B, C, H/p, W/p]``.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from vistok.models._base import LearnedTokenizer, ModelOutput
from vistok.models._patches import patchify, unpatchify
from vistok.nn.posemb import PosEmb2d
from vistok.nn.transformer import Transformer, init_weights
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens

__all__ = ["ViT2dTokenizer"]


@TOKENIZERS.register(
    "vit2d", doc="ViTok-style patch tokenizer (transformer encoder/decoder); any multiple of the patch size."
)
class ViT2dTokenizer(LearnedTokenizer):
    """Patch tokenizer with transformer encoder and decoder (see the module docstring).

    Args:
        image_size: native (training) resolution; sets the native position grid and
            ``max_tokens = (image_size / patch_size)^2``.
        patch_size: ``p`` (1..16); also the ``stride``.
        width, depth, num_heads: encoder transformer.
        decoder_width, decoder_depth, decoder_heads: decoder (``None``: as the encoder).
        mlp_ratio: MLP hidden width / width.
        pos_emb: ``"learned"`` (interpolated off the native grid) or ``"sincos"``.
        latent_dim: bottleneck width ``C``.
        quantizer: quantizer spec (bracket it when it has commas).
        latent_norm: parameter-free LayerNorm on the latents before the bottleneck (guards
            FSQ/LFQ against saturation; no weights; recorded in the config like any parameter).
    """

    def __init__(
        self,
        *,
        image_size: int = 256,
        patch_size: int = 16,
        width: int = 384,
        depth: int = 12,
        num_heads: int = 6,
        decoder_width: int | None = None,
        decoder_depth: int | None = None,
        decoder_heads: int | None = None,
        mlp_ratio: float = 4.0,
        pos_emb: Literal["learned", "sincos"] = "learned",
        latent_dim: int = 6,
        quantizer: str = "fsq:levels=8-8-8-5-5-5",
        latent_norm: bool = False,
    ):
        super().__init__(quantizer=quantizer, latent_dim=latent_dim, latent_norm=latent_norm)
        if not 1 <= patch_size <= 16:
            raise ValueError(f"patch_size must be in 1..16, got {patch_size}")
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        dw, dd, dh = decoder_width or width, decoder_depth or depth, decoder_heads or num_heads
        g = image_size // patch_size
        self.patch_size = patch_size
        pdim = 3 * patch_size * patch_size
        # encoder
        self.patch_embed = nn.Linear(pdim, width)
        self.enc_pos = PosEmb2d((g, g), width, pos_emb)
        self.encoder = Transformer(width, depth, num_heads, mlp_ratio=mlp_ratio)
        self.to_latent = nn.Linear(width, latent_dim)
        # decoder
        self.from_latent = nn.Linear(latent_dim, dw)
        self.dec_pos = PosEmb2d((g, g), dw, pos_emb)
        self.decoder = Transformer(dw, dd, dh, mlp_ratio=mlp_ratio)
        self.to_pixels = nn.Linear(dw, pdim)
        for m in (
            self.patch_embed,
            self.encoder,
            self.to_latent,
            self.from_latent,
            self.decoder,
            self.to_pixels,
        ):
            m.apply(init_weights)
        # unit-variance latents at init, so FSQ/LFQ levels and VQ k-means start spread out
        nn.init.normal_(self.to_latent.weight, std=width**-0.5)
        self.image_size = image_size
        self.input_size = None  # any multiple of patch_size (position embeddings are resampled)
        self.stride = patch_size
        self.max_tokens = g * g

    def _encode_z(self, images: Tensor) -> tuple[Tensor, Tensor, tuple[int, int]]:
        """[0, 1] images -> (latent ``[B, L, C]``, encoder tokens ``[B, L, D]``, grid ``(h, w)``)."""
        p = self.patch_size
        grid = (images.shape[-2] // p, images.shape[-1] // p)
        x = self.patch_embed(patchify(self.to_model(images), p)) + self.enc_pos(*grid)
        h = self.encoder(x)
        return self.to_latent(h), h, grid

    def _decode_z(
        self, zq: Tensor, grid: tuple[int, int], *, mid: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``[B, L, C]`` -> (image ``[B, 3, H, W]`` in ~[-1, 1], mid-decoder tokens or None)."""
        x = self.from_latent(zq) + self.dec_pos(*grid)
        feat = None
        if mid:
            x, feats = self.decoder.forward_features(x, [len(self.decoder.blocks) // 2 - 1])
            feat = feats[0] if feats else None
        else:
            x = self.decoder(x)
        return unpatchify(self.to_pixels(x), self.patch_size, grid), feat

    def forward(self, images: Tensor) -> ModelOutput:
        """Training pass: float ``[B, 3, H, W]`` in [0, 1] -> :class:`ModelOutput`."""
        z, enc_feats, grid = self._encode_z(images)
        q = self.quantize(z)
        x, dec_feats = self._decode_z(q.quantized, grid, mid=True)
        b = images.shape[0]
        idx = q.indices
        if idx is not None:
            idx = idx.reshape(b, *grid, *idx.shape[2:])
        feats = {"encoder": enc_feats}
        if dec_feats is not None:
            feats["decoder"] = dec_feats
        return ModelOutput(
            reconstruction=self.from_model(x),
            loss=q.loss,
            stats=q.stats,
            quantized=q.quantized.transpose(1, 2).reshape(b, -1, *grid),
            indices=idx,
            features=feats,
        )

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, H, W]`` in [0, 1] (``H, W`` multiples of ``p``) -> :class:`Tokens`
        with ``ids [B, H/p, W/p(, K)]`` or float16 ``latents [B, C, H/p, W/p]``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        z, _, grid = self._encode_z(images)
        b, n = images.shape[0], grid[0] * grid[1]
        ids, lat = self.to_tokens(z)
        if ids is not None:
            ids = ids.reshape(b, *grid, *ids.shape[2:])
        if lat is not None:
            lat = lat.transpose(1, 2).reshape(b, -1, *grid).contiguous()
        bits = torch.full((b,), self.token_bits(ids, lat, n) * n, dtype=torch.float64)
        return Tokens(bits=bits, ids=ids, latents=lat, meta={"size": [images.shape[-2], images.shape[-1]]})

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` from :meth:`encode` -> float ``[B, 3, p h, p w]`` in [0, 1]."""
        ids, lat = tokens.ids, tokens.latents
        if ids is not None:
            b, h, w = ids.shape[:3]
            ids = ids.reshape(b, h * w, *ids.shape[3:])
        elif lat is not None:
            b, c, h, w = lat.shape
            lat = lat.reshape(b, c, h * w).transpose(1, 2)
        else:
            raise ValueError(f"{self.spec}: tokens carry neither ids nor latents")
        x, _ = self._decode_z(self.from_tokens(ids, lat), (h, w))
        return self.from_model(x).clamp(0.0, 1.0)


# ---- registry entries: the family is the class above (its constructor); its named sizes ----
TOKENIZERS.register_variant(
    "vit2d-tiny", "vit2d", image_size=32, patch_size=4, width=64, depth=2, num_heads=2, latent_dim=4,
    quantizer="fsq:levels=8-5-5-5", doc="Tiny ViT tokenizer for tests (p4 at 32x32).",
)  # fmt: skip
TOKENIZERS.register_variant(
    "vit2d-s-p16", "vit2d", patch_size=16, width=384, depth=12, num_heads=6,
    doc="ViT-S encoder and decoder (384 wide, 12 layers, 6 heads), p16 at 256 (256 tokens).",
)  # fmt: skip
TOKENIZERS.register_variant(
    "vit2d-s-p8", "vit2d", patch_size=8, width=384, depth=12, num_heads=6,
    doc="ViT-S encoder and decoder, p8 at 256 (1024 tokens).",
)  # fmt: skip
TOKENIZERS.register_variant(
    "vit2d-b-p16", "vit2d", patch_size=16, width=768, depth=12, num_heads=12,
    doc="ViT-B encoder and decoder (768 wide, 12 layers, 12 heads), p16 at 256.",
)  # fmt: skip
TOKENIZERS.register_variant(
    "vit2d-sb-p16", "vit2d", patch_size=16, width=384, depth=12, num_heads=6,
    decoder_width=768, decoder_depth=12, decoder_heads=12,
    doc="ViTok S-B: small encoder, base decoder, p16 at 256.",
)  # fmt: skip
