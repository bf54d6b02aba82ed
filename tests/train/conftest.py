"""Fixtures for the trainer tests: a handful of small real images in a folder (cheap to load)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def image_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 64x80 crops of skimage photos, plus one corrupt file that must be skipped."""
    import skimage.data

    root = tmp_path_factory.mktemp("train-images")
    photos = [skimage.data.chelsea(), skimage.data.coffee(), skimage.data.astronaut()]
    for i, arr in enumerate(photos):
        for j in range(2):
            crop = np.ascontiguousarray(arr[40 * j : 40 * j + 128, 60 * j : 60 * j + 160, :3])
            Image.fromarray(crop).resize((80, 64)).save(root / f"img{i}{j}.png")
    (root / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    return root


def _tiny_overrides(image_dir: Path, **extra: object) -> list[str]:
    """Dotted overrides for a seconds-long run on ``image_dir``."""
    base = {
        "model.spec": "conv2d-tiny",
        "data.sources": f"[{image_dir}]",
        "data.size": 32,
        "data.batch_size": 2,
        "data.resize_short": 64,
        "schedule.steps": 4,
        "schedule.warmup": 1,
        "log.every": 1,
        "log.grid_every": 2,
        "log.ckpt_every": 2,
        "log.grid_images": 2,
        "log.progress": False,
        "log.tensorboard": False,
        "run.threads": 1,
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture
def tiny(image_dir: Path) -> Callable[..., list[str]]:
    """``tiny(**extra)`` -> dotted overrides of a seconds-long run on :func:`image_dir`."""
    return lambda **extra: _tiny_overrides(image_dir, **extra)
