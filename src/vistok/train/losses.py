"""Training losses, registered in :data:`vistok.registry.LOSSES`.

Every loss is an ``nn.Module`` called as ``loss(images, out)`` with the batch ``images``
(float ``[B, 3, H, W]`` in [0, 1]) and the model's :class:`~vistok.models._base.ModelOutput`
``out``; it returns a float32 scalar. The trainer multiplies it by the recipe's weight.

========== =====================================================================
name        what
========== =====================================================================
l1, l2      pixel losses on the (unclamped) reconstruction
perceptual  squared distance of channel-normalized frozen ImageNet MobileNetV2 features
lpips       LPIPS-VGG, with weights the user supplies (``weights=PATH``)
semantic    GigaTok / VA-VAE-style alignment: a small trainable projection of
            ``out.features["encoder"]`` matched by cosine similarity to frozen MobileNetV2
            features resampled to the encoder's grid (has parameters; trained with the model)
========== =====================================================================

The adversarial terms (PatchGAN, hinge, LeCam, adaptive weight) live in
:mod:`vistok.train.discriminator`; the quantizer's own loss is ``out.loss``.
"""

from __future__ import annotations

import math
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.models._base import ModelOutput
from vistok.registry import LOSSES
from vistok.train.perceptual import LPIPS, FrozenMobileNet, resample_to

__all__ = ["L1Loss", "L2Loss", "LPIPSLoss", "PerceptualLoss", "SemanticAlignLoss", "features_to_map"]


class L1Loss(nn.Module):
    """Mean absolute error between reconstruction and input (both in [0, 1] scale)."""

    def forward(self, images: Tensor, out: ModelOutput) -> Tensor:
        return (out.reconstruction.float() - images.float()).abs().mean()


class L2Loss(nn.Module):
    """Mean squared error between reconstruction and input (both in [0, 1] scale)."""

    def forward(self, images: Tensor, out: ModelOutput) -> Tensor:
        return (out.reconstruction.float() - images.float()).pow(2).mean()


class PerceptualLoss(nn.Module):
    """Frozen ImageNet MobileNetV2 feature distance (an offline stand-in for LPIPS).

    For each tapped layer: channel-normalize both feature maps, mean squared difference;
    summed over layers. Early layers (``1, 3, 6``: strides 2-8) are cheap and texture-aware.
    """

    def __init__(self, layers: list[int] | tuple[int, ...] = (1, 3, 6)):
        super().__init__()
        self.net = FrozenMobileNet(layers)

    def forward(self, images: Tensor, out: ModelOutput) -> Tensor:
        with torch.no_grad():
            target = self.net(images.float())
        pred = self.net(out.reconstruction.float())
        total = images.new_zeros((), dtype=torch.float32)
        for a, b in zip(pred, target):
            a = a.float() / (a.float().pow(2).sum(1, keepdim=True).sqrt() + 1e-6)
            b = b.float() / (b.float().pow(2).sum(1, keepdim=True).sqrt() + 1e-6)
            total = total + (a - b).pow(2).sum(1).mean()
        return total


class LPIPSLoss(nn.Module):
    """LPIPS-VGG (mean over the batch); needs the user's weight file (see :class:`LPIPS`)."""

    def __init__(self, weights: str | None = None):
        super().__init__()
        self.net = LPIPS(weights)

    def forward(self, images: Tensor, out: ModelOutput) -> Tensor:
        return self.net(out.reconstruction.float(), images.float()).mean()


def features_to_map(feats: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
    """Encoder features as a map: ``[B, C, h, w]`` as is; tokens ``[B, L, D]`` -> ``[B, D, g_h, g_w]``.

    ``grid`` gives ``(g_h, g_w)`` for token features; ``None`` assumes a square ``L``.
    """
    if feats.ndim == 4:
        return feats
    b, n, d = feats.shape
    if grid is None:
        g = math.isqrt(n)
        if g * g != n:
            raise ValueError(f"cannot lay {n} encoder tokens on a square grid; pass grid=")
        grid = (g, g)
    return feats.transpose(1, 2).reshape(b, d, grid[0], grid[1])


class SemanticAlignLoss(nn.Module):
    """``1 - cos`` between a projection of the encoder features and frozen MobileNetV2 features.

    Args:
        in_dim: channels ``D`` of ``out.features["encoder"]``.
        layer: MobileNetV2 ``features`` index of the target (13: 96 channels at stride 16).
        hidden: width of the 2-layer MLP projection.
        grid: token grid of transformer encoders (``None``: square).

    The target map is resampled (area/bilinear) to the encoder's grid. The projection is
    trained with the model (the trainer puts this module under DDP with it).
    """

    _CHANNELS: ClassVar[dict[int, int]] = {
        1: 16,
        2: 24,
        3: 24,
        4: 32,
        5: 32,
        6: 32,
        10: 64,
        13: 96,
        16: 160,
        17: 320,
        18: 1280,
    }

    def __init__(self, in_dim: int, layer: int = 13, hidden: int = 256, grid: tuple[int, int] | None = None):
        super().__init__()
        if layer not in self._CHANNELS:
            raise ValueError(f"semantic layer must be one of {sorted(self._CHANNELS)}, got {layer}")
        self.grid = grid
        self.net = FrozenMobileNet([layer])
        self.proj = nn.Sequential(
            nn.Conv2d(in_dim, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, self._CHANNELS[layer], 1)
        )

    def forward(self, images: Tensor, out: ModelOutput) -> Tensor:
        feats = features_to_map(out.features["encoder"], self.grid)
        pred = self.proj(feats.float())
        with torch.no_grad():
            target = resample_to(self.net(images.float())[0].float(), tuple(pred.shape[-2:]))
        return (1.0 - F.cosine_similarity(pred, target, dim=1)).mean()


@LOSSES.register("l1")
def l1() -> L1Loss:
    """Mean absolute pixel error."""
    return L1Loss()


@LOSSES.register("l2")
def l2() -> L2Loss:
    """Mean squared pixel error."""
    return L2Loss()


@LOSSES.register("perceptual")
def perceptual(*, layers: list[int] = [1, 3, 6]) -> PerceptualLoss:  # noqa: B006
    """Frozen ImageNet MobileNetV2 feature distance at ``layers``."""
    return PerceptualLoss(layers)


@LOSSES.register("lpips")
def lpips(*, weights: str | None = None) -> LPIPSLoss:
    """LPIPS-VGG from a user-supplied weight file (never downloaded)."""
    return LPIPSLoss(weights)


@LOSSES.register("semantic")
def semantic(*, in_dim: int = 128, layer: int = 13, hidden: int = 256) -> SemanticAlignLoss:
    """Cosine alignment of projected encoder features to frozen MobileNetV2 features."""
    return SemanticAlignLoss(in_dim, layer, hidden)
