"""Shared fixtures for the model tests: small crops of real photos, tiny model names."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vistok.utils.threads import torch_threads


def photo_crops(n: int = 8, size: int = 32, seed: int = 0) -> torch.Tensor:
    """``n`` crops ``[n, 3, size, size]`` in [0, 1] of scikit-image's sample photos,
    downsampled 4x first so a small crop still holds edges and texture."""
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        im = torch.from_numpy(np.ascontiguousarray(photos[i % len(photos)])).permute(2, 0, 1).float() / 255.0
        im = torch.nn.functional.avg_pool2d(im[None], 4)[0]
        y = int(rng.integers(0, im.shape[1] - size))
        x = int(rng.integers(0, im.shape[2] - size))
        out.append(im[:, y : y + size, x : x + size])
    return torch.stack(out).clamp(0, 1)


def resized_photo_crops(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """``n`` random squares of scikit-image's sample photos (side from ``2 size`` to the
    photo's short side) resized to ``size``: float ``[n, 3, size, size]`` in [0, 1]."""
    from PIL import Image
    from skimage import data

    photos = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        img = photos[i % len(photos)]
        h, w = img.shape[:2]
        s = int(rng.integers(size * 2, min(h, w)))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        out.append(
            np.asarray(Image.fromarray(img[y : y + s, x : x + s]).resize((size, size), Image.Resampling.BOX))
        )
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0


@pytest.fixture(scope="session")
def crops_of():
    """The :func:`resized_photo_crops` factory, as a fixture."""
    return resized_photo_crops


@pytest.fixture(scope="session")
def photos() -> torch.Tensor:
    return photo_crops()


@pytest.fixture
def one_thread():
    """Run a test on one intra-op thread: the tiny models' ops are too small to gain from
    more, and on a shared machine extra threads spin against other jobs."""
    with torch_threads(1):
        yield
