"""Real photos and real distortions for the metric tests (all offline, seeded)."""

from __future__ import annotations

import io
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from vistok.utils.threads import torch_threads

PHOTO_NAMES = ("astronaut", "chelsea", "coffee", "rocket")


def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photo as uint8 ``[H, W, 3]``."""
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)())


def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
    """JPEG round trip through Pillow (4:2:0 chroma, Pillow's default)."""
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def blur(a: np.ndarray, radius: float) -> np.ndarray:
    return np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius))).copy()


def noise(a: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(a + rng.normal(0, sigma * 255, a.shape), 0, 255).round().astype(np.uint8)


def down_up(a: np.ndarray, factor: int) -> np.ndarray:
    """Downscale by ``factor`` (box) and back up (bicubic): detail lost, size kept."""
    h, w = a.shape[:2]
    small = Image.fromarray(a).resize((max(w // factor, 1), max(h // factor, 1)), Image.Resampling.BOX)
    return np.asarray(small.resize((w, h), Image.Resampling.BICUBIC)).copy()


DISTORTIONS = {
    "jpeg20": lambda a: jpeg(a, 20),
    "blur2": lambda a: blur(a, 2.0),
    "noise5": lambda a: noise(a, 0.05),
}


def to_tensor(a: np.ndarray) -> torch.Tensor:
    """uint8 ``[H, W, 3]`` -> float ``[1, 3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(a)).permute(2, 0, 1)[None].float() / 255.0


@pytest.fixture(scope="session")
def photos_uint8() -> dict[str, np.ndarray]:
    """The four sample photos at full size, uint8 ``[H, W, 3]``."""
    return {n: load_photo(n) for n in PHOTO_NAMES}


@pytest.fixture(scope="session")
def im() -> SimpleNamespace:
    """The helpers above, for tests: ``im.jpeg(a, q)``, ``im.blur``, ``im.noise``,
    ``im.down_up``, ``im.to_tensor``, ``im.distortions[name](a)``."""
    return SimpleNamespace(
        jpeg=jpeg, blur=blur, noise=noise, down_up=down_up, to_tensor=to_tensor, distortions=DISTORTIONS
    )


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Run these tests on one torch thread, restored afterwards: on shared, oversubscribed
    CPUs a 2-thread MobileNetV2 forward measured 40x slower than a 1-thread one."""
    with torch_threads(1):
        yield
