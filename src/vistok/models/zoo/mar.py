"""MAR's KL-16 VAE (Li et al., "Autoregressive Image Generation without Vector Quantization", 2024).

Name: ``mar-kl16``, the continuous tokenizer MAR models generate in: an LDM-style KL
autoencoder, stride 16, 16 latent channels (16x16x16 latents at 256x256); ``mar-kl``: the
architecture with its hyper-parameters as spec keys.

Official source: ``LTH14/mar``, ``models/vae.py`` (``AutoencoderKL(embed_dim=16,
ch_mult=(1, 1, 2, 2, 4))``, as ``main_mar.py`` builds it). The encoder and decoder are
:mod:`vistok.models.zoo._taming_codec` (``ch=128``, ``num_res_blocks=2``, ``resolution=256``,
``double_z=True``); the encoder attends at resolution 16, the decoder only in its middle
(``vae.py``'s ``Decoder`` default ``attn_resolutions=()``, which ``AutoencoderKL`` keeps).
``quant_conv`` maps the ``2 * 16`` encoder channels to the posterior's mean and log-variance,
``post_quant_conv`` maps 16 -> 16 before the decoder.

Checkpoint: ``kl16.ckpt``, a ``torch.save`` of ``{"model": {name: tensor}}`` holding the VAE
only (no loss or discriminator tensors); the safetensors copy on the Hugging Face Hub
(``jadechoghari/mar/kl16.safetensors``, the flat state dict) reads the same. The key map is
the identity.

Latents: the posterior mean (``sample=False``, the default), or ``mean + exp(logvar / 2) *
noise`` with ``logvar`` clamped to ``[-30, 20]`` and the noise drawn from a CPU generator
seeded with ``seed`` at every call (``sample=True``: the same draw as ``torch.manual_seed(seed);
posterior.sample()`` in the official code on the CPU). They are returned as float16 ``[B, 16,
h, w]`` and not scaled: MAR multiplies them by 0.2325 before its generator, which is the
generator's business, not the tokenizer's. Images ``[0, 1]`` are mapped to the ``[-1, 1]``
MAR trains on.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from vistok.models.zoo._base import PublishedTokenizer
from vistok.models.zoo._taming_codec import Decoder, Encoder
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens

__all__ = ["MarKL"]


@TOKENIZERS.register(
    "mar-kl",
    doc="MAR's KL VAE (Li et al. 2024): LDM-style continuous autoencoder, posterior mean latents; reads kl16.ckpt",
)
class MarKL(PublishedTokenizer):
    """MAR ``AutoencoderKL``: images ``[B, 3, H, W]`` in ``[0, 1]`` <-> latents float16 ``[B, embed_dim, H/s, W/s]``.

    ``s = 2 ** (len(ch_mult) - 1)`` (16 for the release). Rate: 16 bits per latent value.

    Args:
        embed_dim: latent channels (16).
        ch, ch_mult, num_res_blocks, resolution, dropout, resamp_with_conv: the encoder's and
            decoder's configuration (``vae.py`` defaults; see :class:`~._taming_codec.Encoder`).
        attn_resolutions: where the encoder attends (``(16,)``).
        decoder_attn_resolutions: where the decoder attends besides its middle (``()``).
        groups: GroupNorm groups (32 in the release; the parity fixtures use fewer to stay small).
        sample: encode to a posterior sample instead of the mean.
        seed: seed of the sampling noise (used when ``sample``).
        weights: ``kl16.ckpt`` (or the flat ``kl16.safetensors``) to load.
        pretrained: fetch ``hub`` with huggingface_hub instead.
        hub: ``ORG/REPO/FILE`` of the release on the Hugging Face Hub.
    """

    kind = "continuous"
    variable_length = False
    formats = "torch .ckpt ({'model': state dict}, MAR's kl16.ckpt), or the flat kl16.safetensors"
    official = "LTH14/mar models/vae.py"
    state_keys: ClassVar[tuple[str, ...]] = ("model",)
    ignore_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        embed_dim: int = 16,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        decoder_attn_resolutions: tuple[int, ...] = (),
        resolution: int = 256,
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        groups: int = 32,
        sample: bool = False,
        seed: int = 0,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "jadechoghari/mar/kl16.safetensors",
    ) -> None:
        super().__init__()
        if not ch_mult:
            raise ValueError("ch_mult needs at least one level")
        common = dict(
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            resolution=resolution,
            z_channels=embed_dim,
            dropout=dropout,
            resamp_with_conv=resamp_with_conv,
            groups=groups,
        )
        self.encoder = Encoder(**common, attn_resolutions=tuple(attn_resolutions), double_z=True)
        self.decoder = Decoder(**common, attn_resolutions=tuple(decoder_attn_resolutions))
        self.quant_conv = nn.Conv2d(2 * embed_dim, 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, embed_dim, 1)
        self.embed_dim = embed_dim
        self.sample = sample
        self.seed = seed
        self.stride = 2 ** (len(ch_mult) - 1)
        self.max_tokens = (resolution // self.stride) ** 2
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    def posterior(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, logvar)``, each float ``[B, embed_dim, h, w]``, of images ``[B, 3, H, W]`` in ``[0, 1]``.

        ``logvar`` is clamped to ``[-30, 20]`` as the official ``DiagonalGaussianDistribution`` does.
        """
        moments = self.quant_conv(self.encoder(self.to_model(images)))
        mean, logvar = torch.chunk(moments, 2, dim=1)
        return mean, torch.clamp(logvar, -30.0, 20.0)

    def encode_grid(self, images: Tensor) -> Tensor:
        """The posterior mean ``[B, embed_dim, H/s, W/s]`` (:class:`~vistok.models._grid.ContinuousGrid`)."""
        return self.posterior(images)[0]

    def decode_grid(self, grid: Tensor) -> Tensor:
        """Latents ``[B, embed_dim, h, w]`` -> images ``[B, 3, h s, w s]`` on the ``[0, 1]`` scale,
        unclamped (:class:`~vistok.models._grid.ContinuousGrid`)."""
        x = self.decoder(self.post_quant_conv(grid.to(self.post_quant_conv.weight.dtype)))
        return (x.float() + 1.0) * 0.5

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ``Tokens(latents=float16 [B, embed_dim, H/s, W/s])``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        mean, logvar = self.posterior(images)
        z = mean
        if self.sample:
            g = torch.Generator(device="cpu").manual_seed(self.seed)
            noise = torch.randn(mean.shape, generator=g).to(device=mean.device, dtype=mean.dtype)
            z = mean + torch.exp(0.5 * logvar) * noise
        b, c, h, w = z.shape
        return Tokens(latents=z.half(), bits=self.rate(b, c * h * w, 16))

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """``Tokens(latents=[B, embed_dim, h, w])`` (any float dtype) -> images ``[B, 3, h*s, w*s]`` in ``[0, 1]``."""
        if tokens.latents is None:
            raise ValueError(f"{self.spec}: decode needs latents")
        return self.decode_grid(tokens.latents).clamp(0.0, 1.0)


TOKENIZERS.register_variant(
    "mar-kl16",
    "mar-kl",
    doc="MAR KL-16 VAE (ImageNet, stride 16, 16 channels: 16x16x16 float16 latents at 256x256); jadechoghari/mar",
    embed_dim=16,
    hub="jadechoghari/mar/kl16.safetensors",
)
