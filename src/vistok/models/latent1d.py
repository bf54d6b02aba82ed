"""``latent1d``: TiTok-style 1D tokenizer, ``N`` latent tokens per image, fixed or variable length.

Encoder: image patches (``p x p``, 2D position embedding) followed by ``N`` learned latent
tokens go through one transformer; the outputs at the latent positions are projected to
``latent_dim`` and quantized. Decoder: one learned mask token per patch (plus position
embedding) followed by the ``N`` projected latent tokens go through a transformer; the
outputs at the patch positions become pixels.

Variable length. Decoding works for any prefix length ``k`` in ``1..N``: the latent
positions ``>= k`` are replaced by a learned *null token* (plus their position embedding)
before the decoder. Training teaches the prefix to carry the coarse content:

* ``nested="uniform"``: FlexTok-style nested dropout, ``k ~ U{1..N}`` per image;
* ``nested="pow2"``: FlexTok's power-of-two variant, ``k ~ U{1, 2, 4, ..., N}``;
* ``nested_prob < 1`` applies the drop to that fraction of images only; with
  ``nested="uniform"`` this is One-D-Piece's tail-token drop (the other images keep all
  ``N`` tokens).

``encode(images, num_tokens=k)`` returns the first ``k`` tokens and ``lengths = k``.

Resolution: fixed. The model reads exactly ``image_size x image_size`` images (``input_size``);
a 1D token budget describes a whole image at the size it was trained on, so the benchmark
protocol resizes to it.

Tokens: ``ids`` long ``[B, k]`` (``[B, k, K]`` for multi-codebook quantizers) or ``latents``
float16 ``[B, k, C]``; ``lengths`` long ``[B]`` (positions past ``lengths[b]`` are padding).
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

__all__ = ["Latent1dTokenizer", "sample_lengths"]

Nested = Literal["none", "uniform", "pow2"]


def sample_lengths(
    batch: int, n: int, mode: Nested, *, prob: float = 1.0, generator: torch.Generator | None = None
) -> Tensor:
    """Draw kept-prefix lengths: long ``[batch]`` in ``1..n``.

    Args:
        mode: ``"none"`` (all ``n``), ``"uniform"`` (``U{1..n}``) or ``"pow2"``
            (``U{1, 2, 4, ..., n}``, ``n`` included when it is not a power of two).
        prob: fraction of images that are truncated at all (the rest keep ``n``).
    """
    full = torch.full((batch,), n, dtype=torch.long)
    if mode == "none" or n <= 1:
        return full
    if mode == "uniform":
        k = torch.randint(1, n + 1, (batch,), generator=generator)
    elif mode == "pow2":
        choices = sorted({2**i for i in range(n.bit_length()) if 2**i <= n} | {n})
        pick = torch.randint(0, len(choices), (batch,), generator=generator)
        k = torch.tensor(choices, dtype=torch.long)[pick]
    else:
        raise ValueError(f"nested must be one of none|uniform|pow2, got {mode!r}")
    if prob < 1.0:
        keep_all = torch.rand(batch, generator=generator) >= prob
        k = torch.where(keep_all, full, k)
    return k


@TOKENIZERS.register(
    "latent1d",
    doc="TiTok-style 1D tokenizer: N latent tokens; decodes any prefix (nested dropout / tail drop).",
)
class Latent1dTokenizer(LearnedTokenizer):
    """TiTok-style 1D latent-token tokenizer (see the module docstring).

    Args:
        image_size: the resolution it reads (square).
        patch_size: patch side ``p``.
        tokens: number of latent tokens ``N`` (``max_tokens``).
        width, depth, num_heads: encoder transformer.
        decoder_width, decoder_depth, decoder_heads: decoder (``None``: as the encoder).
        mlp_ratio: MLP hidden width / width.
        latent_dim: bottleneck width ``C`` per token.
        quantizer: quantizer spec (bracket it when it has commas).
        latent_norm: parameter-free LayerNorm on the latents before the bottleneck (guards
            FSQ/LFQ against saturation; no weights; recorded in the config like any parameter).
        nested: training-time prefix-length sampling (``none``, ``uniform``, ``pow2``).
        nested_prob: fraction of training images truncated.
    """

    variable_length = True  # decode accepts any prefix 1..N (quality depends on `nested` training)

    def __init__(
        self,
        *,
        image_size: int = 256,
        patch_size: int = 16,
        tokens: int = 128,
        width: int = 512,
        depth: int = 8,
        num_heads: int = 8,
        decoder_width: int | None = None,
        decoder_depth: int | None = None,
        decoder_heads: int | None = None,
        mlp_ratio: float = 4.0,
        latent_dim: int = 12,
        quantizer: str = "vq:codebook_size=4096",
        latent_norm: bool = False,
        nested: Nested = "none",
        nested_prob: float = 1.0,
    ):
        super().__init__(quantizer=quantizer, latent_dim=latent_dim, latent_norm=latent_norm)
        if image_size % patch_size:
            raise ValueError(f"image_size {image_size} is not a multiple of patch_size {patch_size}")
        if tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {tokens}")
        if not 0.0 <= nested_prob <= 1.0:
            raise ValueError(f"nested_prob must be in [0, 1], got {nested_prob}")
        dw, dd, dh = decoder_width or width, decoder_depth or depth, decoder_heads or num_heads
        g = image_size // patch_size
        self.grid = (g, g)
        self.patch_size, self.num_latent = patch_size, tokens
        self.nested, self.nested_prob = nested, nested_prob
        pdim = 3 * patch_size * patch_size
        # encoder: patches (+2D pos) then N learned latent tokens (each its own vector)
        self.patch_embed = nn.Linear(pdim, width)
        self.enc_pos = PosEmb2d(self.grid, width, "learned")
        self.latent_tokens = nn.Parameter(torch.randn(tokens, width) * 0.02)
        self.encoder = Transformer(width, depth, num_heads, mlp_ratio=mlp_ratio)
        self.to_latent = nn.Linear(width, latent_dim)
        # decoder: one mask token per patch (+2D pos) then the N latents (+1D pos)
        self.from_latent = nn.Linear(latent_dim, dw)
        self.mask_token = nn.Parameter(torch.randn(dw) * 0.02)
        self.null_token = nn.Parameter(torch.randn(dw) * 0.02)
        self.dec_pos = PosEmb2d(self.grid, dw, "learned")
        self.latent_pos = nn.Parameter(torch.randn(tokens, dw) * 0.02)
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
        # TiTok's init: tokens and position tables ~ N(0, 1/width), large enough that
        # position-dependent attention (patch <-> latent) forms early in training
        with torch.no_grad():
            for t, w in ((self.latent_tokens, width), (self.enc_pos.table, width)):
                t.normal_(0.0, w**-0.5)
            for t in (self.mask_token, self.null_token, self.latent_pos, self.dec_pos.table):
                t.normal_(0.0, dw**-0.5)
        # unit-variance latents at init, so FSQ/LFQ levels and VQ k-means start spread out
        nn.init.normal_(self.to_latent.weight, std=width**-0.5)
        self.image_size = image_size
        self.input_size = image_size
        self.stride = patch_size
        self.max_tokens = tokens

    # ---- halves ----------------------------------------------------------------------------
    def _encode_z(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``[B, 3, H, W]`` in [0, 1] -> (latent tokens ``[B, N, C]``, patch features ``[B, L, D]``)."""
        b = images.shape[0]
        x = self.patch_embed(patchify(self.to_model(images), self.patch_size)) + self.enc_pos(*self.grid)
        x = torch.cat([x, self.latent_tokens.expand(b, -1, -1).to(x.dtype)], dim=1)
        h = self.encoder(x)
        n_patch = h.shape[1] - self.num_latent
        return self.to_latent(h[:, n_patch:]), h[:, :n_patch]

    def _decode_z(
        self, zq: Tensor, lengths: Tensor | None, *, mid: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """``zq [B, n, C]`` (``n <= N``) + kept lengths ``[B]`` -> (image in ~[-1, 1], mid features)."""
        b, n = zq.shape[:2]
        lat = self.from_latent(zq)
        if n < self.num_latent:  # pad the missing tail; it is replaced by the null token below
            lat = torch.cat([lat, lat.new_zeros(b, self.num_latent - n, lat.shape[-1])], dim=1)
        kept = (
            torch.full((b,), n, device=lat.device) if lengths is None else lengths.to(lat.device).clamp(max=n)
        )
        keep = torch.arange(self.num_latent, device=lat.device)[None, :] < kept[:, None]  # [B, N]
        lat = torch.where(keep[..., None], lat, self.null_token.to(lat.dtype)) + self.latent_pos
        masks = (self.mask_token + self.dec_pos(*self.grid)).expand(b, -1, -1).to(lat.dtype)
        x = torch.cat([masks, lat], dim=1)
        feat = None
        if mid:
            x, feats = self.decoder.forward_features(x, [len(self.decoder.blocks) // 2 - 1])
            feat = feats[0][:, : masks.shape[1]] if feats else None
        else:
            x = self.decoder(x)
        pix = self.to_pixels(x[:, : masks.shape[1]])
        return unpatchify(pix, self.patch_size, self.grid), feat

    # ---- public ----------------------------------------------------------------------------
    def forward(self, images: Tensor, *, num_tokens: int | None = None) -> ModelOutput:
        """Training pass: float ``[B, 3, H, W]`` in [0, 1] -> :class:`ModelOutput`.

        In training mode, without ``num_tokens``, each image keeps a prefix drawn by
        ``nested``/``nested_prob``; ``num_tokens`` fixes the prefix for all images.
        ``ModelOutput.lengths`` says what was kept.
        """
        b = images.shape[0]
        z, enc_feats = self._encode_z(images)
        q = self.quantize(z)
        if num_tokens is not None:
            k = self.check_num_tokens(num_tokens) or self.num_latent
            lengths = torch.full((b,), k, dtype=torch.long)
        elif self.training:
            lengths = sample_lengths(b, self.num_latent, self.nested, prob=self.nested_prob)
        else:
            lengths = torch.full((b,), self.num_latent, dtype=torch.long)
        lengths = lengths.to(images.device)
        x, dec_feats = self._decode_z(q.quantized, lengths, mid=True)
        feats = {"encoder": enc_feats}
        if dec_feats is not None:
            feats["decoder"] = dec_feats
        return ModelOutput(
            reconstruction=self.from_model(x),
            loss=q.loss,
            stats=q.stats,
            quantized=q.quantized,
            indices=q.indices,
            lengths=lengths,
            features=feats,
        )

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, S, S]`` in [0, 1] (``S = image_size``) -> :class:`Tokens` with the
        first ``k = num_tokens or N`` tokens: ``ids [B, k(, K)]`` or float16
        ``latents [B, k, C]``, ``lengths [B] = k``, ``bits = k x bits per token``."""
        self.check_input(images)
        k = self.check_num_tokens(num_tokens) or self.num_latent
        z, _ = self._encode_z(images)
        ids, lat = self.to_tokens(z)
        ids = None if ids is None else ids[:, :k].contiguous()
        lat = None if lat is None else lat[:, :k].contiguous()
        b = images.shape[0]
        per_token = self.token_bits(ids, lat, k)
        lengths = torch.full((b,), k, dtype=torch.long, device=images.device)
        bits = lengths.cpu().double() * per_token
        return Tokens(bits=bits, ids=ids, latents=lat, lengths=lengths)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` with ``n <= N`` tokens (and optional per-image ``lengths``) ->
        float ``[B, 3, S, S]`` in [0, 1]. Positions at or past ``lengths[b]`` (or ``n``) are
        decoded as the learned null token."""
        zq = self.from_tokens(tokens.ids, tokens.latents)
        n = zq.shape[1]
        if not 1 <= n <= self.num_latent:
            raise ValueError(f"{self.spec}: decodes 1..{self.num_latent} tokens, got {n}")
        x, _ = self._decode_z(zq, tokens.lengths)
        return self.from_model(x).clamp(0.0, 1.0)


# ---- registry entries: the family is the class above (its constructor); its named sizes ----
# TiTok sizes (patch 16 at 256x256, VQ 4096 with 12-d codes): S = 512/8/8, B = 768/12/12, L = 1024/24/16.
_TITOK = {
    "s": {"width": 512, "depth": 8, "num_heads": 8},
    "b": {"width": 768, "depth": 12, "num_heads": 12},
    "l": {"width": 1024, "depth": 24, "num_heads": 16},
}
for _size, _dims in _TITOK.items():
    TOKENIZERS.register_variant(
        f"latent1d-{_size}",
        "latent1d",
        **_dims,
        doc=f"latent1d at TiTok-{_size.upper()} sizes (vistok-native, not the official TiTok), p16 at 256.",
    )
for _name, _size, _n in (
    ("latent1d-s-128", "s", 128),
    ("latent1d-b-64", "b", 64),
    ("latent1d-l-32", "l", 32),
):
    TOKENIZERS.register_variant(
        _name, f"latent1d-{_size}", tokens=_n, doc=f"TiTok-{_size.upper()} with {_n} tokens."
    )
TOKENIZERS.register_variant(
    "latent1d-s-256-nested", "latent1d-s", tokens=256, nested="pow2", quantizer="fsq:levels=8-8-8-5-5-5", latent_dim=6,
    doc="TiTok-S, 256 tokens, FlexTok-style power-of-two nested dropout, FSQ 8-8-8-5-5-5: any prefix decodes.",
)  # fmt: skip
TOKENIZERS.register_variant(
    "latent1d-s-256-taildrop", "latent1d-s", tokens=256, nested="uniform", nested_prob=0.5,
    doc="TiTok-S, 256 tokens, One-D-Piece-style tail-token drop (half the images keep a uniform prefix).",
)  # fmt: skip
TOKENIZERS.register_variant(
    "latent1d-tiny", "latent1d", image_size=32, patch_size=8, tokens=8, width=64, depth=2, num_heads=2,
    latent_dim=4, quantizer="fsq:levels=8-5-5-5", nested="uniform",
    doc="Tiny 1D tokenizer for tests: 8 tokens at 32x32, nested dropout.",
)  # fmt: skip
