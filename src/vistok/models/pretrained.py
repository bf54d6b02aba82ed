"""Shipped default tokenizers ``vistok-f8`` and ``vistok-1d`` and the ``vistok-pca`` baseline, loaded offline.

Each lives in ``vistok/weights/<name>/`` as a vistok checkpoint (``config.json`` +
``model.safetensors``, written by ``vistok train``'s export). The entry rebuilds the
architecture the config names and loads the weights; nothing is downloaded. How they were
trained, on what data (with licences) and how they measure: ``docs/shipped_models.md``.

* ``vistok-f8``: conv2d, f8 grid, FSQ 8-8-8-5-5-5 (16 bits per token, 0.25 bpp at any size).
* ``vistok-1d``: latent1d-grid over vistok-f8's grid at 128x128, 1..256 tokens of FSQ 8-8-8-5-5-5
  (variable length; the backbone's weights are inside its checkpoint).
* ``vistok-pca``: ordered PCA tokens (2 coefficients x 8 bits each), 1..128, fitted on the corpus.
"""

from __future__ import annotations

from pathlib import Path

from vistok.registry import TOKENIZERS
from vistok.tokenizer import Tokenizer

__all__ = ["SHIPPED", "weights_dir"]

SHIPPED = ("vistok-f8", "vistok-1d", "vistok-pca")


def weights_dir(name: str) -> Path:
    """Folder of shipped model ``name`` inside the installed package."""
    return Path(__file__).resolve().parent.parent / "weights" / name


def _missing(name: str) -> str | None:
    d = weights_dir(name)
    if not (d / "config.json").is_file() or not (d / "model.safetensors").is_file():
        return f"shipped weights not found in {d} (a source checkout without them, or a broken install)"
    return None


def _load_shipped(name: str) -> Tokenizer:
    """Build the architecture recorded in ``weights/<name>/config.json`` and load its weights."""
    from vistok.hub import load

    d = weights_dir(name)
    reason = _missing(name)
    if reason:
        raise FileNotFoundError(f"{name}: {reason}")
    return load(d)  # the registry then sets ``spec`` to the shipped name, which rebuilds it anywhere


@TOKENIZERS.register("vistok-f8", available=lambda: _missing("vistok-f8"))
def vistok_f8() -> Tokenizer:
    """Shipped default: conv2d f8 + FSQ 8-8-8-5-5-5 (0.25 bpp), trained on CPU (docs/shipped_models.md)."""
    return _load_shipped("vistok-f8")


@TOKENIZERS.register("vistok-1d", available=lambda: _missing("vistok-1d"))
def vistok_1d() -> Tokenizer:
    """Shipped default: 1D tokens (1..128, FSQ, 16 bits each) over vistok-f8's grid at 128x128 (docs/shipped_models.md)."""
    return _load_shipped("vistok-1d")


@TOKENIZERS.register("vistok-pca", available=lambda: _missing("vistok-pca"))
def vistok_pca() -> Tokenizer:
    """Shipped baseline: ordered PCA tokens (16 bits/token, 1..128) fitted on the photo corpus (docs/shipped_models.md)."""
    return _load_shipped("vistok-pca")
