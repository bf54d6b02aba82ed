"""Run a tokenizer on 8-bit images of any size: fit, encode, decode, undo the fit.

The geometry comes from :func:`vistok.data.transforms.fit_for`, the one place where
"which size does this tokenizer take?" is answered, shared by the CLI, the benchmark and
:func:`vistok.data.transforms.fit_to` (docs/protocol.md). ``fit_for`` is re-exported here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from vistok.data.transforms import Fit, PadMode, apply_fit, fit_for, undo_fit
from vistok.models.codecs import from_uint8, to_uint8
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens

__all__ = ["Reconstruction", "decode_array", "encode_array", "fit_for", "reconstruct_array"]


def encode_array(
    tokenizer: Tokenizer,
    image: np.ndarray,
    *,
    size: int | None = None,
    num_tokens: int | None = None,
    pad_mode: PadMode = "reflect",
    device: str | torch.device = "cpu",
) -> Tokens:
    """uint8 ``[H, W, 3]`` -> :class:`Tokens` (batch of one) with the fit in ``meta["fit"]``."""
    fit = fit_for(tokenizer, *image.shape[:2], size=size, pad_mode=pad_mode)
    x = from_uint8(apply_fit(image, fit)[None]).to(device)
    tokens = tokenizer.encode(x, num_tokens=num_tokens)
    tokens.meta["fit"] = fit.to_dict()
    return tokens


def decode_array(tokenizer: Tokenizer, tokens: Tokens) -> np.ndarray:
    """:class:`Tokens` of one image (from :func:`encode_array`) -> uint8 ``[H, W, 3]``."""
    recon = tokenizer.decode(tokens).clamp(0, 1)
    out = to_uint8(recon)[0]
    fit = tokens.meta.get("fit")
    return undo_fit(out, Fit.from_dict(fit)) if fit else out


@dataclass
class Reconstruction:
    image: np.ndarray  # uint8 [H, W, 3], the original geometry
    bits: float
    num_tokens: int | None


@torch.no_grad()
def reconstruct_array(
    tokenizer: Tokenizer,
    image: np.ndarray,
    *,
    size: int | None = None,
    num_tokens: int | None = None,
    pad_mode: PadMode = "reflect",
    device: str | torch.device = "cpu",
) -> Reconstruction:
    """Encode and decode one uint8 image; the result is rounded to 8 bits like a saved file."""
    tokens = encode_array(
        tokenizer, image, size=size, num_tokens=num_tokens, pad_mode=pad_mode, device=device
    )
    n = int(tokens.lengths[0]) if tokens.lengths is not None else tokenizer.max_tokens
    return Reconstruction(decode_array(tokenizer, tokens), float(tokens.bits[0]), n)
