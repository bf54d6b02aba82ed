"""Adversarial training parts: PatchGAN discriminator, hinge losses, LeCam, adaptive weight.

* :class:`PatchDiscriminator`: the pix2pix/VQGAN "NLayer" PatchGAN (4x4 strided convs,
  LeakyReLU) with GroupNorm instead of BatchNorm (no batch statistics to sync under DDP);
  ``[B, 3, H, W]`` in [0, 1] -> logits ``[B, 1, H/2^n - 2, W/2^n - 2]`` (one per patch).
* :func:`hinge_d_loss` / :func:`hinge_g_loss`: the hinge GAN objectives.
* :class:`LeCam`: LeCam regularization (Tseng et al. 2021): EMAs of the real/fake logits
  anchor the discriminator's outputs, which stabilizes GANs on little data.
* :func:`adaptive_weight`: VQGAN's balance ``||grad_L(rec)|| / ||grad_L(gan)||`` at the
  decoder's last layer, so the GAN term never dominates the reconstruction.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.nn.conv import group_norm
from vistok.quantize.dist import all_reduce_sum, world_size

__all__ = ["LeCam", "PatchDiscriminator", "adaptive_weight", "hinge_d_loss", "hinge_g_loss", "last_layer"]


class PatchDiscriminator(nn.Module):
    """PatchGAN with ``layers`` stride-2 4x4 convs of widths ``width * 2^i`` (capped at 8x)."""

    def __init__(self, width: int = 64, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(3, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for i in range(1, layers + 1):
            nxt = width * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [nn.Conv2d(ch, nxt, 4, stride, 1, bias=False), group_norm(nxt), nn.LeakyReLU(0.2)]
            ch = nxt
        mods.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, images: Tensor) -> Tensor:
        """Float ``[B, 3, H, W]`` in [0, 1] -> patch logits ``[B, 1, h, w]``."""
        return self.net(images * 2.0 - 1.0)


def hinge_d_loss(real: Tensor, fake: Tensor) -> Tensor:
    """Discriminator hinge loss: ``mean(relu(1 - real)) + mean(relu(1 + fake))``, halved."""
    return 0.5 * (F.relu(1.0 - real).mean() + F.relu(1.0 + fake).mean())


def hinge_g_loss(fake: Tensor) -> Tensor:
    """Generator hinge loss: ``-mean(D(fake))``."""
    return -fake.mean()


class LeCam(nn.Module):
    """LeCam regularizer with EMAs of the mean real and fake logits (identical on every rank)."""

    def __init__(self, decay: float = 0.999):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, real: Tensor, fake: Tensor) -> Tensor:
        """Update the EMAs with this batch, return ``mean(relu(real - ema_fake)^2) + mean(relu(ema_real - fake)^2)``."""
        with torch.no_grad():
            # the batch means averaged over ranks, so every rank's EMAs stay identical
            means = all_reduce_sum(torch.stack([real.float().mean(), fake.float().mean()])) / world_size()
            self.ema_real.mul_(self.decay).add_(means[0], alpha=1 - self.decay)
            self.ema_fake.mul_(self.decay).add_(means[1], alpha=1 - self.decay)
        return F.relu(real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake).pow(2).mean()


def last_layer(model: nn.Module) -> Tensor:
    """The weight of the layer that writes pixels (``decoder.out`` for conv2d, ``to_pixels`` for
    transformer families; else the last conv/linear of ``model.decoder`` or of ``model``)."""
    for path in ("decoder.out", "to_pixels", "decoder.to_pixels", "decoder.proj_out"):
        m: nn.Module | None = model
        for part in path.split("."):
            m = getattr(m, part, None)
            if m is None:
                break
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            return m.weight
    root = getattr(model, "decoder", model)
    layers = [m for m in root.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    if not layers:
        raise ValueError(f"{type(model).__name__}: no conv/linear layer found for the adaptive GAN weight")
    return layers[-1].weight


def adaptive_weight(rec_loss: Tensor, gan_loss: Tensor, layer: Tensor, max_weight: float = 1e4) -> Tensor:
    """VQGAN's ``||d rec / d layer|| / (||d gan / d layer|| + 1e-4)``, clamped, detached."""
    g_rec = torch.autograd.grad(rec_loss, layer, retain_graph=True)[0]
    g_gan = torch.autograd.grad(gan_loss, layer, retain_graph=True)[0]
    w = g_rec.norm() / (g_gan.norm() + 1e-4)
    return w.clamp(0.0, max_weight).detach()
