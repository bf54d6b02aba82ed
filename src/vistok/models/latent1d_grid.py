"""``latent1d-grid``: a two-stage 1D tokenizer over a frozen 2D tokenizer (TiTok / FlexTok recipe).

A 1D tokenizer that reads pixels must learn to render them, which takes tens of thousands of
GPU steps. TiTok's stage 1 instead predicts a frozen 2D VQGAN's codes, and FlexTok tokenizes
a frozen VAE's latent grid; a 1D model over an ``f``-times smaller grid sees ``f^2`` fewer
positions, which is what makes it trainable on a CPU. This family does that:

* **Backbone** (frozen): any vistok 2D tokenizer with a latent grid (``conv2d``, ``vit2d``,
  the shipped ``vistok-f8``), or a published continuous one that declares
  :class:`~vistok.models._grid.ContinuousGrid` (``taesd`` ... ``taef2``, ``mar-kl16``,
  ``cosmos-ci8``/``16``; e.g. ``backbone=taef2:weights=PATH``: FlexTok's frozen-VAE set-up). Its encoder turns the image into a grid ``[h, w, C]``; its
  decoder renders a grid back to pixels. Its weights are stored inside this model's
  checkpoint, and its config records the backbone's full architecture spec, so loading
  resolves offline and never depends on the backbone's original files.
* **1D encoder**: the backbone's (quantized) grid, in ``g x g`` patches (``grid_patch``) with
  2D position embeddings, followed by ``N`` learned latent tokens, goes through a
  transformer; the latent-token outputs are projected to ``latent_dim`` and quantized by
  this model's own quantizer (the 1D tokens).
* **1D decoder**: one mask token per grid patch plus the ``N`` token embeddings (positions
  at or past the kept length are replaced by a learned null token) go through a
  transformer, whose patch outputs predict the backbone grid:

  - FSQ backbone: per-channel logits over the FSQ levels, trained with cross-entropy
    against the backbone's codes (TiTok's stage 1: no pixel loss);
  - VQ / other discrete backbones: logits over the backbone codebook (cross-entropy);
  - continuous backbones: the latents, by mean-squared error.

  Decoding turns the prediction into backbone decoder input: ``decode_mode="mean"`` takes
  the expected code value under the predicted distribution (the MMSE estimate; the
  default for FSQ), ``"argmax"`` the most likely level or code. The frozen backbone decoder
  renders pixels.
* **Flow decoder** (``decoder="flow"``, FlexTok): instead of one regression of the grid, the
  decoder transformer is a rectified flow: it reads the noisy grid ``x_t = (1 - t) noise +
  t grid`` (in patches, plus a sinusoidal embedding of ``t``) with the kept tokens, and
  predicts the velocity ``grid - noise`` (MSE on the backbone's grid values). Decoding
  integrates ``flow_steps`` Euler steps from one fixed noise grid (``flow_seed``), so it is
  deterministic and independent of the batch. Where few tokens leave the grid uncertain, the
  flow samples a plausible grid instead of the blurry mean a regression gives. No
  classifier-free guidance (FlexTok uses it; a later option). Training reconstructions
  (for monitoring) are the one-step estimate ``x_t + (1 - t) v``.
* **Variable length**: ``nested="pow2"`` (FlexTok) or ``"uniform"`` with
  ``nested_prob < 1`` (One-D-Piece's tail drop) train every prefix ``k`` of the ``N``
  tokens to decode, as in :mod:`vistok.models.latent1d`.
* **Stage 2** (optional, ``stage=2``): the 1D encoder and decoder are frozen and the
  backbone decoder is fine-tuned on pixels (the recipe's L1/L2/perceptual/GAN losses)
  from the 1D model's predicted grids. Use ``model.init_from`` with the stage-1 checkpoint.

Resolution: fixed (``image_size``); the benchmark resizes to it, like ``latent1d``.

Tokens: ``ids`` long ``[B, k]`` (``[B, k, K]`` for multi-codebook quantizers) or float16
``latents [B, k, C]``; ``lengths`` long ``[B]``; ``bits = k x bits per token``.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models._base import LearnedTokenizer, ModelOutput
from vistok.models._grid import ContinuousGrid
from vistok.models._patches import patchify, unpatchify
from vistok.models.latent1d import Nested, sample_lengths
from vistok.nn.posemb import PosEmb2d
from vistok.nn.transformer import Transformer, init_weights
from vistok.quantize.fsq import FSQ
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens

__all__ = ["Latent1dGridTokenizer", "architecture_spec"]


def _time_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding ``[B, dim]`` of flow times ``t`` ``[B]`` in [0, 1]."""
    half = dim // 2
    freqs = torch.exp(
        -torch.arange(half, device=t.device, dtype=torch.float32) * (torch.log(torch.tensor(1e4)) / half)
    )
    ang = 1000.0 * t.float()[:, None] * freqs[None]
    emb = torch.cat([ang.sin(), ang.cos()], dim=-1)
    return F.pad(emb, (0, dim - emb.shape[-1]))


def architecture_spec(tok: Any) -> str:
    """A spec that rebuilds ``tok``'s architecture from the registry alone (no files): its
    class's registered name and constructor arguments, less where weights came from."""
    from vistok.configurable import architecture_spec as spec_of

    return spec_of(tok, exclude=tok.source_keys)


class _Target:
    """How the 1D decoder's output maps to the backbone grid (FSQ, codebook or continuous)."""

    def __init__(self, backbone: LearnedTokenizer | ContinuousGrid):
        q = backbone.quantizer if isinstance(backbone, LearnedTokenizer) else None
        self.quantizer = q
        if q is None:  # a published continuous grid (ContinuousGrid)
            self.kind = "continuous"
            self.width = 0
        elif backbone.kind == "discrete" and isinstance(q, FSQ):
            self.kind = "fsq"
            self.levels = [int(n) for n in q.levels]
            self.width = sum(self.levels)
        elif backbone.kind == "discrete":
            if backbone.num_codebooks != 1:
                raise ValueError("latent1d-grid: multi-codebook discrete backbones are not supported")
            self.kind = "codebook"
            self.width = int(q.codebook_size)
        else:
            self.kind = "continuous"
            self.width = 0  # set from the grid's channels


@TOKENIZERS.register(
    "latent1d-grid",
    doc="Two-stage 1D tokenizer: N tokens over a frozen 2D tokenizer's latent grid (TiTok/FlexTok).",
)
class Latent1dGridTokenizer(LearnedTokenizer):
    """1D tokens over a frozen 2D tokenizer's latent grid (see the module docstring).

    Args:
        backbone: the 2D tokenizer: a registered name (``vistok-f8``), a spec, or a
            checkpoint folder. Its architecture spec is recorded in the config.
        image_size: the square size the model reads (a multiple of the backbone stride).
        grid_patch: ``g``: the grid is read and predicted in ``g x g`` patches.
        tokens: ``N`` latent tokens (``max_tokens``).
        width, depth, num_heads: encoder transformer; ``decoder_*``: decoder (``None``: same).
        mlp_ratio: MLP hidden width / width.
        latent_dim, quantizer, latent_norm: the 1D tokens' bottleneck.
        nested, nested_prob: prefix-length sampling in training (see ``latent1d``).
        decode_mode: ``mean`` (expected code value) or ``argmax`` for discrete backbones.
        decoder: ``regression`` (the head predicts the grid, as above) or ``flow``
            (FlexTok's rectified-flow decoder: the same transformer, conditioned on the kept
            tokens, the noisy grid and the flow time, predicts a velocity; decoding runs
            ``flow_steps`` Euler steps from a fixed noise grid seeded by ``flow_seed``).
        stage: 1 (train the 1D model; backbone frozen) or 2 (fine-tune the backbone
            decoder; 1D model frozen).
    """

    variable_length = True

    def __init__(
        self,
        *,
        backbone: str = "vistok-f8",
        image_size: int = 128,
        grid_patch: int = 2,
        tokens: int = 64,
        width: int = 256,
        depth: int = 4,
        num_heads: int = 4,
        decoder_width: int | None = None,
        decoder_depth: int | None = None,
        decoder_heads: int | None = None,
        mlp_ratio: float = 4.0,
        latent_dim: int = 6,
        quantizer: str = "fsq:levels=8-8-8-5-5-5",
        latent_norm: bool = False,
        nested: Nested = "pow2",
        nested_prob: float = 1.0,
        decode_mode: Literal["mean", "argmax"] = "mean",
        stage: Literal[1, 2] = 1,
        linear: bool = False,
        pixel_loss: bool = False,
        decoder: Literal["regression", "flow"] = "regression",
        flow_steps: int = 8,
        flow_seed: int = 0,
    ):
        super().__init__(quantizer=quantizer, latent_dim=latent_dim, latent_norm=latent_norm)
        from vistok.hub import create

        bb = create(backbone)
        # vistok's own 2D families, or a published continuous one that declares its grid
        self._published = not isinstance(bb, LearnedTokenizer) and isinstance(bb, ContinuousGrid)
        own = isinstance(bb, LearnedTokenizer) and hasattr(bb, "_encode_z") and not bb.variable_length
        if not (own or (self._published and bb.kind == "continuous")):
            raise ValueError(
                f"latent1d-grid: backbone {backbone!r} is not a 2D tokenizer with a latent grid (a vistok 2D "
                "family, or a published continuous one: taesd/taef1/taef2/..., mar-kl16, cosmos-ci8/16)"
            )
        if image_size % (bb.stride * grid_patch):
            raise ValueError(
                f"image_size {image_size} must be a multiple of the backbone stride x grid_patch "
                f"({bb.stride} x {grid_patch})"
            )
        if tokens < 1:
            raise ValueError(f"tokens must be >= 1, got {tokens}")
        self.backbone_arch = architecture_spec(bb)
        self.backbone = bb
        self.target = _Target(bb)
        g = image_size // bb.stride
        self.grid_size = (g, g)  # backbone grid
        self.grid = (g // grid_patch, g // grid_patch)  # 1D model's patch grid
        self.grid_patch, self.num_latent = grid_patch, tokens
        self.nested, self.nested_prob = nested, nested_prob
        self.decode_mode, self.stage = decode_mode, int(stage)
        self.linear, self.pixel_loss = linear, pixel_loss
        with torch.no_grad():  # transformer backbones (vit2d) give [B, h*w, C]; the grid's channel count
            self._sequence_backbone = (
                not self._published and bb._encode_z(torch.zeros(1, 3, image_size, image_size))[0].ndim == 3
            )
            c = self._grid(torch.zeros(1, 3, image_size, image_size))[0].shape[-1]
        self.grid_channels = c
        if self.target.kind == "continuous" or linear:
            if linear and self.target.kind == "codebook":
                raise ValueError("latent1d-grid: linear=true needs an FSQ or continuous backbone")
            self.target.kind = "continuous" if self.target.kind == "continuous" else "fsq-values"
            self.target.width = c
        dw, dd, dh = decoder_width or width, decoder_depth or depth, decoder_heads or num_heads
        p2 = grid_patch * grid_patch
        self.flow = decoder == "flow"
        if self.flow and (linear or pixel_loss or int(stage) != 1):
            raise ValueError("latent1d-grid: decoder=flow trains stage 1 only, without linear or pixel_loss")
        if flow_steps < 1:
            raise ValueError(f"flow_steps must be >= 1, got {flow_steps}")
        self.flow_steps, self.flow_seed = flow_steps, flow_seed
        self.grid_embed = nn.Linear(c * p2, width)
        self.enc_pos = PosEmb2d(self.grid, width, "learned")
        self.latent_tokens = nn.Parameter(torch.zeros(tokens, width))
        self.encoder = Transformer(width, depth, num_heads, mlp_ratio=mlp_ratio)
        self.to_latent = nn.Linear(width, latent_dim)
        self.from_latent = nn.Linear(latent_dim, dw)
        self.mask_token = nn.Parameter(torch.zeros(dw))
        self.null_token = nn.Parameter(torch.zeros(dw))
        self.dec_pos = PosEmb2d(self.grid, dw, "learned")
        self.latent_pos = nn.Parameter(torch.zeros(tokens, dw))
        self.decoder = Transformer(dw, dd, dh, mlp_ratio=mlp_ratio)
        self.out_channels = c if self.flow else self.target.width  # flow: a velocity on the grid values
        self.head = nn.Linear(dw, self.out_channels * p2)
        if self.flow:  # the noisy grid (in patches) and the flow time condition the decoder's grid tokens
            self.flow_in = nn.Linear(c * p2, dw)
            self.flow_time = nn.Sequential(nn.Linear(dw, dw), nn.SiLU(), nn.Linear(dw, dw))
        if linear:
            # the PCA path (set by warm_start): tokens = whitened principal coefficients of the
            # grid, prediction = least-squares reconstruction from the quantized tokens
            dim = g * g * c
            n_coef = tokens * latent_dim
            if n_coef > dim:
                raise ValueError(
                    f"linear=true: tokens x latent_dim = {n_coef} exceeds the grid's {dim} values"
                )
            self.lin_enc = nn.Linear(dim, n_coef, bias=True)
            self.lin_dec = nn.Linear(n_coef, dim, bias=True)
            self.register_buffer("warm_started", torch.zeros((), dtype=torch.bool))
        for m in (self.grid_embed, self.encoder, self.to_latent, self.from_latent, self.decoder, self.head):
            m.apply(init_weights)
        if self.flow:
            self.flow_in.apply(init_weights)
            self.flow_time.apply(init_weights)
            nn.init.normal_(self.flow_in.weight, std=self.flow_in.in_features**-0.5)
        with torch.no_grad():
            self.enc_pos.table.normal_(0.0, width**-0.5)
            self.latent_tokens.normal_(0.0, 0.02)  # small: what a token carries is what it reads
            for t in (self.mask_token, self.null_token, self.latent_pos, self.dec_pos.table):
                t.normal_(0.0, dw**-0.5)
        nn.init.normal_(self.to_latent.weight, std=width**-0.5)
        # The content must dominate the learned (image-independent) token and position
        # tables at init, or every image gets the same 1D tokens after rounding, no gradient
        # reaches the encoder through the identical codes, and the decoder learns the mean
        # grid (the failure of a flat colour at every token count): unit-gain input
        # projections on both sides of the bottleneck.
        nn.init.normal_(self.grid_embed.weight, std=self.grid_embed.in_features**-0.5)
        nn.init.normal_(self.from_latent.weight, std=self.from_latent.in_features**-0.5)
        if linear:  # the transformers start as exact zero corrections to the linear path
            for m in (self.to_latent, self.head):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
            for m in (self.lin_enc, self.lin_dec):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)
        self.image_size = image_size
        self.input_size = image_size
        self.stride = bb.stride
        self.max_tokens = tokens
        self._set_stage()

    # ---- config: record the backbone's architecture, not its name ------------------------
    def normalize_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """The captured config with ``backbone`` as its architecture spec (no files needed)."""
        return {**config, "backbone": self.backbone_arch}

    def _set_stage(self) -> None:
        """Freeze what the current stage does not train."""
        self.requires_grad_(self.stage == 1)
        self.backbone.requires_grad_(False)
        if self.linear:  # the PCA path stays fixed: AdamW steps would wash out its small weights
            self.lin_enc.requires_grad_(False)
            self.lin_dec.requires_grad_(False)
        if self.stage == 2:
            self.backbone.decoder.requires_grad_(True)

    def train(self, mode: bool = True) -> Latent1dGridTokenizer:
        super().train(mode)
        self.backbone.eval()  # frozen statistics (and no quantizer updates) in the backbone
        if mode and self.stage == 2:
            self.backbone.decoder.train()
        return self

    # ---- grid <-> backbone ----------------------------------------------------------------
    @torch.no_grad()
    def _grid(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """[0, 1] images -> (grid values ``[B, h, w, C]`` the backbone decoder reads, targets).

        Targets: FSQ digits long ``[B, h, w, d]``, codebook ids long ``[B, h, w]``, or the
        continuous latents ``[B, h, w, C]``.
        """
        bb = self.backbone
        if self._published:  # a continuous grid: the 1D model predicts the latents themselves
            z = bb.encode_grid(images).float().permute(0, 2, 3, 1)
            return z, z
        z = bb._encode_z(images)[0]
        if self._sequence_backbone:  # transformer backbones (vit2d): [B, h*w, C] -> [B, h, w, C]
            z = z.reshape(z.shape[0], *self.grid_size, z.shape[-1])
        q = bb.quantize(z)
        if self.target.kind == "fsq-values":
            return q.quantized.float(), q.quantized.float()
        if self.target.kind == "fsq":
            qz = self.target.quantizer
            digits = torch.div(q.indices.long().unsqueeze(-1), qz._basis, rounding_mode="floor") % qz._levels
            return q.quantized.float(), digits
        if self.target.kind == "codebook":
            return q.quantized.float(), q.indices.long()
        ids, lat = bb.to_tokens(z)
        grid = bb.from_tokens(ids, lat).float()
        return grid, grid

    def _render(self, grid: Tensor) -> Tensor:
        """Backbone decoder input ``[B, h, w, C]`` -> image ``[B, 3, H, W]`` in ~[-1, 1]."""
        bb = self.backbone
        if self._published:
            return self.to_model(bb.decode_grid(grid.permute(0, 3, 1, 2)))
        if self._sequence_backbone:
            return bb._decode_z(grid.reshape(grid.shape[0], -1, grid.shape[-1]), self.grid_size)[0]
        return bb._decode_z(grid)[0]

    def _prediction_to_grid(self, out: Tensor, *, soft: bool) -> Tensor:
        """Decoder head output ``[B, h, w, width]`` -> backbone decoder input ``[B, h, w, C]``."""
        t = self.target
        if t.kind in ("continuous", "fsq-values"):
            return out
        if t.kind == "codebook":
            if soft:
                p = out.softmax(-1)
                return p @ self.backbone.embed(torch.arange(t.width, device=out.device))
            return self.backbone.embed(out.argmax(-1))
        q = t.quantizer
        hw = q._consts(1, out.device)["hw"]
        vals = []
        for i, part in enumerate(out.split(t.levels, dim=-1)):
            levels = (torch.arange(t.levels[i], device=out.device, dtype=out.dtype) - hw[i]) / hw[i]
            if soft:
                vals.append(part.softmax(-1) @ levels)
            else:
                vals.append(levels[part.argmax(-1)])
        codes = torch.stack(vals, -1)
        return q.project_out(codes) if getattr(q, "dim", None) != getattr(q, "code_dim", None) else codes

    def _loss(self, out: Tensor, target: Tensor) -> Tensor:
        t = self.target
        if t.kind in ("continuous", "fsq-values"):
            return F.mse_loss(out.float(), target.float())
        if t.kind == "codebook":
            return F.cross_entropy(out.reshape(-1, t.width).float(), target.reshape(-1))
        losses = [
            F.cross_entropy(part.reshape(-1, n).float(), target[..., i].reshape(-1))
            for i, (part, n) in enumerate(zip(out.split(t.levels, dim=-1), t.levels, strict=True))
        ]
        return torch.stack(losses).mean()

    # ---- 1D halves --------------------------------------------------------------------------
    def _encode_tokens(self, grid: Tensor) -> Tensor:
        """Grid ``[B, h, w, C]`` -> latent tokens ``[B, N, latent_dim]`` (before the bottleneck)."""
        b = grid.shape[0]
        x = patchify(grid.permute(0, 3, 1, 2), self.grid_patch)
        x = self.grid_embed(x) + self.enc_pos(*self.grid)
        x = torch.cat([x, self.latent_tokens.expand(b, -1, -1).to(x.dtype)], dim=1)
        h = self.encoder(x)
        z = self.to_latent(h[:, -self.num_latent :])
        if self.linear:
            z = z + self.lin_enc(grid.flatten(1)).reshape(b, self.num_latent, -1)
        return z

    def _decode_tokens(
        self, zq: Tensor, lengths: Tensor | None, noisy: Tensor | None = None, t: Tensor | None = None
    ) -> Tensor:
        """``zq [B, n, C]`` + kept lengths -> head output ``[B, h, w, width]`` on the backbone grid.

        Flow decoder: ``noisy`` is the grid ``x_t`` ``[B, h, w, C]`` at flow time ``t`` ``[B]``
        and the output is the velocity ``[B, h, w, C]``.
        """
        b, n = zq.shape[:2]
        lat = self.from_latent(zq)
        if n < self.num_latent:
            lat = torch.cat([lat, lat.new_zeros(b, self.num_latent - n, lat.shape[-1])], dim=1)
        kept = (
            torch.full((b,), n, device=lat.device) if lengths is None else lengths.to(lat.device).clamp(max=n)
        )
        keep = torch.arange(self.num_latent, device=lat.device)[None, :] < kept[:, None]
        lat = torch.where(keep[..., None], lat, self.null_token.to(lat.dtype)) + self.latent_pos
        masks = (self.mask_token + self.dec_pos(*self.grid)).expand(b, -1, -1).to(lat.dtype)
        if self.flow:
            if noisy is None or t is None:
                raise ValueError("the flow decoder needs the noisy grid and the flow time")
            temb = self.flow_time(_time_embedding(t.to(lat.device), lat.shape[-1]).to(lat.dtype))
            noisy_p = patchify(noisy.permute(0, 3, 1, 2).to(lat.dtype), self.grid_patch)
            masks = masks + self.flow_in(noisy_p) + temb[:, None]
        x = self.decoder(torch.cat([masks, lat], dim=1))
        out = self.head(x[:, : masks.shape[1]])  # [B, L, width * g * g]
        out = unpatchify(out, self.grid_patch, self.grid, channels=self.out_channels)  # [B, width, h, w]
        out = out.permute(0, 2, 3, 1)
        if self.linear:  # dropped tokens contribute nothing to the linear reconstruction
            kept_codes = (zq[:, :n] * keep[:, :n, None]).flatten(1)
            if n < self.num_latent:
                kept_codes = torch.cat(
                    [kept_codes, kept_codes.new_zeros(b, (self.num_latent - n) * zq.shape[-1])], 1
                )
            out = out + self.lin_dec(kept_codes).reshape(out.shape)
        return out

    # ---- PCA warm start ----------------------------------------------------------------------
    @torch.no_grad()
    def warm_start(self, images: Tensor) -> None:
        """Fit the linear path on float ``[M, 3, S, S]`` training images (``linear=true``).

        ``lin_enc`` projects the flattened grid on its principal components in order of
        variance, whitened (unit-variance coefficients: the bottleneck's FSQ levels are
        spread over them), ``latent_dim`` per token; ``lin_dec`` is the least-squares map
        from the *quantized* tokens back to the grid; a prefix decodes with the dropped
        tokens' codes at zero. With the transformers at zero
        this is nested dropout's linear solution (PCA) on the backbone grid.
        """
        if not self.linear:
            return
        grids = torch.cat([self._grid(images[i : i + 64])[0] for i in range(0, len(images), 64)])
        x = grids.flatten(1).double()
        mean = x.mean(0)
        xc = x - mean
        n_coef = self.lin_enc.out_features
        _, sv, vh = torch.linalg.svd(xc, full_matrices=False)
        comps = vh[:n_coef]
        std = (sv[:n_coef] / max(1, x.shape[0] - 1) ** 0.5).clamp_min(1e-8)
        w = comps / std[:, None]
        self.lin_enc.weight.copy_(w.float())
        self.lin_enc.bias.copy_((-(w @ mean)).float())
        # quantized codes of the warm-start images (transformer corrections are zero)
        b, d = x.shape[0], self.latent_dim
        codes = self.quantize(self.lin_enc(grids.flatten(1)).reshape(b, self.num_latent, d)).quantized
        codes = codes.reshape(b, -1).double()
        # least squares from the full codes (whitened PCA coefficients are nearly uncorrelated,
        # so dropping a tail of tokens, i.e. zeroing their codes, stays close to optimal)
        a = torch.cat([codes, torch.ones(b, 1, dtype=codes.dtype)], 1)
        sol = torch.linalg.lstsq(a, x, driver="gelsd").solution  # [n_coef + 1, dim]
        self.lin_dec.weight.copy_(sol[:-1].T.float())
        self.lin_dec.bias.copy_(sol[-1].float())
        self.warm_started.fill_(True)

    # ---- public -----------------------------------------------------------------------------
    def forward(self, images: Tensor, *, num_tokens: int | None = None) -> ModelOutput:
        """Training pass on float ``[B, 3, S, S]`` in [0, 1].

        Stage 1: ``loss`` is the quantizer loss plus the grid-prediction loss (cross-entropy
        or MSE); ``reconstruction`` is rendered without gradient (for monitoring). Stage 2:
        ``reconstruction`` carries gradients into the backbone decoder.
        """
        b = images.shape[0]
        grid, target = self._grid(images)
        if num_tokens is not None:
            k = self.check_num_tokens(num_tokens) or self.num_latent
            lengths = torch.full((b,), k, dtype=torch.long)
        elif self.training:
            lengths = sample_lengths(b, self.num_latent, self.nested, prob=self.nested_prob)
        else:
            lengths = torch.full((b,), self.num_latent, dtype=torch.long)
        lengths = lengths.to(images.device)
        soft = self.decode_mode == "mean"
        if self.stage == 2:
            with torch.no_grad():
                q = self.quantize(self._encode_tokens(grid))
                pred = self._decode_tokens(q.quantized, lengths)
                loss = torch.zeros((), device=images.device)
            x = self._render(self._prediction_to_grid(pred, soft=soft))
        elif self.flow:  # rectified flow: x_t = (1 - t) noise + t grid, velocity target grid - noise
            q = self.quantize(self._encode_tokens(grid))
            noise = torch.randn_like(grid)
            t = torch.rand(b, device=grid.device)
            xt = (1 - t)[:, None, None, None] * noise + t[:, None, None, None] * grid
            v = self._decode_tokens(q.quantized, lengths, xt, t)
            loss = q.loss + F.mse_loss(v.float(), grid - noise)
            with torch.no_grad():  # monitoring: the one-step estimate of the grid from x_t
                x = self._render(xt + (1 - t)[:, None, None, None] * v.detach())
        else:
            q = self.quantize(self._encode_tokens(grid))
            pred = self._decode_tokens(q.quantized, lengths)
            loss = q.loss + self._loss(pred, target)
            if self.pixel_loss:  # gradients reach the 1D model through the frozen decoder
                x = self._render(self._prediction_to_grid(pred, soft=soft))
            else:
                with torch.no_grad():
                    x = self._render(self._prediction_to_grid(pred.detach(), soft=soft))
        return ModelOutput(
            reconstruction=self.from_model(x),
            loss=loss,
            stats=q.stats,
            quantized=q.quantized,
            indices=q.indices,
            lengths=lengths,
            features={},
        )

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Float ``[B, 3, S, S]`` in [0, 1] -> :class:`Tokens` with the first ``k`` tokens."""
        self.check_input(images)
        k = self.check_num_tokens(num_tokens) or self.num_latent
        grid, _ = self._grid(images)
        ids, lat = self.to_tokens(self._encode_tokens(grid))
        ids = None if ids is None else ids[:, :k].contiguous()
        lat = None if lat is None else lat[:, :k].contiguous()
        b = images.shape[0]
        lengths = torch.full((b,), k, dtype=torch.long, device=images.device)
        bits = lengths.cpu().double() * self.token_bits(ids, lat, k)
        return Tokens(bits=bits, ids=ids, latents=lat, lengths=lengths)

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` with ``n <= N`` tokens -> float ``[B, 3, S, S]`` in [0, 1]."""
        zq = self.from_tokens(tokens.ids, tokens.latents)
        n = zq.shape[1]
        if not 1 <= n <= self.num_latent:
            raise ValueError(f"{self.spec}: decodes 1..{self.num_latent} tokens, got {n}")
        if self.flow:
            return self.from_model(self._render(self._sample_grid(zq, tokens.lengths))).clamp(0.0, 1.0)
        pred = self._decode_tokens(zq, tokens.lengths)
        x = self._render(self._prediction_to_grid(pred, soft=self.decode_mode == "mean"))
        return self.from_model(x).clamp(0.0, 1.0)

    def _sample_grid(self, zq: Tensor, lengths: Tensor | None) -> Tensor:
        """The flow decoder's grid ``[B, h, w, C]``: ``flow_steps`` Euler steps from t = 0 to 1,
        starting from one fixed noise grid (seeded by ``flow_seed``, the same for every image,
        so a decode does not depend on the batch it is in)."""
        gen = torch.Generator().manual_seed(self.flow_seed)
        shape = (1, *self.grid_size, self.grid_channels)
        x = torch.randn(shape, generator=gen).to(zq.device).expand(zq.shape[0], -1, -1, -1)
        dt = 1.0 / self.flow_steps
        for i in range(self.flow_steps):
            t = torch.full((zq.shape[0],), i * dt, device=zq.device)
            x = x + dt * self._decode_tokens(zq, lengths, x, t).float()
        return x
