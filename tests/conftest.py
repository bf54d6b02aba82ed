"""Shared fixtures: sample data cached once per session in a temporary folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session", autouse=True)
def _cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Point vistok's cache at a session folder unless the caller set one."""
    if not os.environ.get("VISTOK_CACHE"):
        path = tmp_path_factory.mktemp("vistok-cache")
        os.environ["VISTOK_CACHE"] = str(path)
    return Path(os.environ["VISTOK_CACHE"])


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photo: skimage's chelsea, uint8 [300, 451, 3]."""
    import skimage.data

    return skimage.data.chelsea()
