"""Flat images keep their level: the conv2d normalization fix and the shipped ``vistok-f8``."""

from __future__ import annotations

import pytest
import torch

import vistok

FLAT = {"white": (1.0, 1.0, 1.0), "mid-grey": (0.5, 0.5, 0.5), "saturated red": (0.9, 0.05, 0.1)}


def _flat(rgb: tuple[float, float, float], size: int = 64) -> torch.Tensor:
    return torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, size, size).contiguous()


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(-10 * torch.log10((a - b).pow(2).mean().clamp_min(1e-12)))


def test_legacy_checkpoints_load_with_group_norm(tmp_path) -> None:
    import json

    tok = vistok.create("conv2d-tiny:norm=group")
    tok.save_pretrained(tmp_path / "m")
    cfg_path = tmp_path / "m" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    del cfg["config"]["norm"]  # as written by vistok 0.1
    cfg_path.write_text(json.dumps(cfg))
    again = vistok.load(tmp_path / "m")
    assert again.config["norm"] == "group"
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(again.reconstruct(x), tok.eval().reconstruct(x))


# measured for the shipped v2 weights at 64² and 256² (docs/shipped_models.md): the v1 model gave 15 dB on white
FLOOR = {"white": 40.0, "black": 40.0, "mid-grey": 26.0, "saturated red": 26.0}
FLAT["black"] = (0.0, 0.0, 0.0)


@pytest.mark.parametrize("name", list(FLOOR))
def test_shipped_f8_keeps_the_level_of_flat_images(name: str) -> None:
    tok = vistok.create("vistok-f8")
    for size in (64, 256):
        x = _flat(FLAT[name], size)
        assert _psnr(tok.reconstruct(x), x) >= FLOOR[name], f"{name} at {size}²"


@pytest.mark.xfail(
    strict=True, reason="issue target (35 dB on every flat colour) not reached: grey/red at ~27 dB"
)
@pytest.mark.parametrize("name", ["mid-grey", "saturated red"])
def test_shipped_f8_flat_images_reach_35_db(name: str) -> None:
    tok = vistok.create("vistok-f8")
    x = _flat(FLAT[name], 256)
    assert _psnr(tok.reconstruct(x), x) >= 35.0
