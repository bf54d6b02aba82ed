"""Diagonal-Gaussian (KL) bottleneck, so continuous tokenizers share the quantizer path.

A Linear head maps the ``dim`` input channels to a mean and a log-variance of
``latent_dim`` channels; training samples ``z = mean + exp(logvar / 2) * eps``
(reparameterized), eval uses the mean. ``quantized`` is ``z`` mapped back to ``dim``
channels (``project_out``, identity when ``latent_dim == dim``); ``indices`` is ``None``
and :meth:`GaussianBottleneck.codes` does not apply (there is no codebook) -- store the
latent from :meth:`GaussianBottleneck.latent` and decode with :meth:`decode_latent`.

``loss = kl_weight * KL``, with ``KL`` the KL divergence to ``N(0, I)`` summed over the
latent channels and averaged over tokens.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from vistok.quantize.base import Quantizer, QuantizerOutput
from vistok.registry import QUANTIZERS

__all__ = ["GaussianBottleneck"]


@QUANTIZERS.register(
    "gaussian", doc="Diagonal-Gaussian (KL) bottleneck for continuous tokenizers (indices None)."
)
class GaussianBottleneck(Quantizer):
    """Continuous bottleneck with a diagonal Gaussian posterior.

    Args:
        dim: input channels.
        latent_dim: channels of the latent; ``None`` means ``dim``.
        kl_weight: weight of the KL term.
        logvar_range: clamp of the log-variance (numerical safety).

    ``codebook_size = 0``, ``is_discrete = False``; ``bits_per_index = 32`` is the storage
    cost of one float32 latent channel, ``index_shape_suffix = (latent_dim,)``.
    """

    is_discrete = False

    def __init__(
        self,
        dim: int | None = None,
        latent_dim: int | None = None,
        *,
        kl_weight: float = 1e-6,
        logvar_range: tuple[float, float] = (-30.0, 20.0),
    ) -> None:
        if dim is None:
            raise ValueError("gaussian: dim (the model's channel count) is required")
        latent_dim = latent_dim if latent_dim is not None else dim
        super().__init__(dim, latent_dim)
        self.project_in = nn.Linear(dim, 2 * latent_dim)  # mean and log-variance
        with torch.no_grad():  # start as mean = x (when square), small variance
            self.project_in.weight.zero_()
            self.project_in.bias.zero_()
            eye = torch.eye(min(dim, latent_dim))
            self.project_in.weight[: eye.shape[0], : eye.shape[1]] = eye
            self.project_in.bias[latent_dim:] = -4.0
        self.codebook_size = 0
        self.bits_per_index = 32.0
        self.index_shape_suffix = (latent_dim,)
        self.kl_weight = kl_weight
        self.logvar_range = logvar_range

    def moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(mean, logvar)``, each ``[..., latent_dim]``, of input ``[..., dim]``."""
        mean, logvar = self.project_in(x.float()).chunk(2, dim=-1)
        return mean, logvar.clamp(*self.logvar_range)

    def latent(self, x: Tensor) -> Tensor:
        """The latent to store: the sampled ``z`` in training, the mean in eval."""
        mean, logvar = self.moments(x)
        if self.training:
            return mean + torch.randn_like(mean) * (0.5 * logvar).exp()
        return mean

    def decode_latent(self, z: Tensor) -> Tensor:
        """Latent ``[..., latent_dim]`` -> input space ``[..., dim]``."""
        return self.project_out(z.float())

    def _forward(self, x: Tensor) -> QuantizerOutput:
        mean, logvar = self.moments(x)
        z = mean + torch.randn_like(mean) * (0.5 * logvar).exp() if self.training else mean
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum(-1).mean()
        # No perplexity/usage: there are no codes (NaNs would poison averaged logs).
        stats = {"kl": kl.detach(), "std": (0.5 * logvar).exp().mean().detach()}
        return QuantizerOutput(self.project_out(z), None, self.kl_weight * kl, stats)

    def codes(self, indices: Tensor) -> Tensor:
        raise NotImplementedError("gaussian: a continuous bottleneck has no codes; use decode_latent(z)")
