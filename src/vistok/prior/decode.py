"""Sampled ids back to images through the tokenizer a token dataset records."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from vistok.prior.space import TokenSpace
from vistok.tokens import Tokens

__all__ = ["decode_ids"]


@torch.no_grad()
def decode_ids(
    tokenizer: Any, ids: Tensor, space: TokenSpace, meta: dict[str, Any], *, batch_size: int = 16
) -> np.ndarray:
    """Decode ids ``[n, *token_shape]`` (a 1D sequence may be shorter) -> uint8 ``[n, H, W, 3]``.

    Args:
        tokenizer: the :class:`~vistok.tokenizer.Tokenizer` the ids came from.
        space: their token space (for the rate recorded in the :class:`~vistok.tokens.Tokens`).
        meta: the dataset's ``tokens_meta`` (e.g. the image size a codec-style decoder needs).
    """
    from vistok.models.codecs import to_uint8

    out = []
    for i in range(0, ids.shape[0], batch_size):
        chunk = ids[i : i + batch_size]
        n = chunk.shape[0]
        kept = chunk.shape[1] if space.layout == "sequence" else space.positions
        lengths = torch.full((n,), kept, dtype=torch.long) if space.variable_length else None
        bits = torch.full((n,), kept * space.bits_per_position, dtype=torch.float64)
        tokens = Tokens(bits=bits, ids=chunk, lengths=lengths, meta=dict(meta))
        out.append(to_uint8(tokenizer.decode(tokens).float().clamp(0, 1)))
    return np.concatenate(out) if out else np.zeros((0, 1, 1, 3), np.uint8)
