"""Fixtures for token-dataset tests: tiny saved tokenizers and a folder with good and bad images."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vistok


@pytest.fixture(scope="session")
def tiny_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved conv2d-tiny (fsq 8-5-5-5, stride 8): a spec that rebuilds the same weights."""
    torch.manual_seed(0)
    return vistok.create("conv2d-tiny").save_pretrained(tmp_path_factory.mktemp("ckpt") / "conv2d-tiny")


@pytest.fixture(scope="session")
def tiny_1d_ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A saved latent1d-tiny: variable-length 1D tokens (1..8), fixed 32x32 input."""
    torch.manual_seed(0)
    return vistok.create("latent1d-tiny").save_pretrained(tmp_path_factory.mktemp("ckpt") / "latent1d-tiny")


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory, photo: np.ndarray) -> Path:
    """Seven decodable images of several shapes and three bad files, sorted names interleaved."""
    d = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    shapes = [(60, 90), (48, 48), (100, 40), (33, 71), (64, 64), (80, 50), (41, 41)]
    for i, (h, w) in enumerate(shapes):
        y, x = rng.integers(0, photo.shape[0] - h), rng.integers(0, photo.shape[1] - w)
        Image.fromarray(photo[y : y + h, x : x + w]).save(d / f"img{i:02d}.png")
    buf = io.BytesIO()
    Image.fromarray(photo).save(buf, format="JPEG")
    (d / "img02b_truncated.jpg").write_bytes(buf.getvalue()[:1500])
    (d / "img04b_empty.png").write_bytes(b"")
    (d / "img05b_text.png").write_text("not an image\n")
    return d
