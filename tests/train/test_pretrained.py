"""The shipped defaults load offline from the package and beat their untrained architecture."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import vistok
from vistok.models.pretrained import SHIPPED, weights_dir
from vistok.registry import TOKENIZERS


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.clamp(0, 1) * 255).round() / 255 - b).pow(2).mean()
    return float(-10 * torch.log10(mse))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_loads_offline_and_beats_untrained(name: str, photo: np.ndarray) -> None:
    if not (weights_dir(name) / "model.safetensors").is_file():
        pytest.skip(f"{name}: weights not in this checkout")
    model = vistok.create(name)
    assert model.registry_name == name and not model.training
    size = model.input_size or 256
    x = torch.from_numpy(photo[:300, :300].copy()).permute(2, 0, 1)[None].float() / 255
    x = torch.nn.functional.interpolate(
        x, size=(size, size), mode="bilinear", antialias=True, align_corners=False
    )
    with torch.no_grad():
        trained = _psnr(model.reconstruct(x), x)
        cfg = json.loads((weights_dir(name) / "config.json").read_text())
        torch.manual_seed(0)
        if getattr(
            model, "baseline", False
        ):  # a fitted baseline (pca) has no untrained state: its mean image
            b = model.basis_size
            mean = model.mean.view(1, 3, b, b)
            untrained = _psnr(torch.nn.functional.interpolate(mean, size=(size, size), mode="bicubic"), x)
        else:
            untrained = _psnr(TOKENIZERS.create(cfg["name"], **cfg["config"]).eval().reconstruct(x), x)
    assert trained > untrained + 3.0, (trained, untrained)
    if model.variable_length:  # fewer tokens decode too
        assert model.reconstruct(x, num_tokens=1).shape == x.shape
