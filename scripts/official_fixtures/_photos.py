"""Real photo inputs the fixture modules share (skimage's bundled photos, cropped and resized).

Not a family module (the leading underscore): the dispatcher puts this folder on ``sys.path``,
so a family module imports it as ``_photos``.
"""

from __future__ import annotations

import numpy as np
import torch


def crop(img: np.ndarray, top: int, left: int, size: tuple[int, int], out: tuple[int, int]) -> torch.Tensor:
    """``img[top:top+h, left:left+w]`` resized (Pillow bicubic) to ``out = (H, W)``: float ``[3, H, W]`` in [0, 1]."""
    from PIL import Image

    part = img[top : top + size[0], left : left + size[1]]
    pil = Image.fromarray(np.ascontiguousarray(part)).resize((out[1], out[0]), Image.BICUBIC)
    return torch.from_numpy(np.asarray(pil).copy()).permute(2, 0, 1).float() / 255.0


def small_images() -> tuple[torch.Tensor, torch.Tensor]:
    """Two 32x32 crops (astronaut's face, chelsea's head) and one 32x48 (coffee): ``[2, 3, 32, 32]``, ``[1, 3, 32, 48]``."""
    from skimage import data

    a = crop(data.astronaut(), 40, 150, (200, 200), (32, 32))
    c = crop(data.chelsea(), 20, 100, (240, 240), (32, 32))
    wide = crop(data.coffee(), 50, 50, (200, 300), (32, 48))[None]
    return torch.stack([a, c]), wide


def image_256() -> torch.Tensor:
    """astronaut, square crop resized to 256x256: ``[1, 3, 256, 256]`` in [0, 1]."""
    from skimage import data

    img = data.astronaut()
    s = min(img.shape[:2])
    return crop(img, 0, 0, (s, s), (256, 256))[None]
