"""The token space a prior models: geometry, vocabularies, and ids <-> digits.

A prior sees every dataset as ``L`` *positions* (raster order for a 2D grid, sequence order
for 1D tokens), each holding ``M`` small categorical *digits*:

* ``K`` codebooks per position (``token_shape`` ends in ``K``) give ``K`` groups of digits;
* a codebook whose id is a mixed-radix number (FSQ levels, LFQ/BSQ bits: ``factors``,
  first factor least significant, as :func:`vistok.quantize._grid.mixed_radix_basis`) is
  split into digits, consecutive factors merged while their product stays ``<= max_digit``.
  vistok-f8's FSQ 8-8-8-5-5-5 (64,000 codes) becomes two digits of 512 and 125 values;
* a codebook without factors is one digit of its full vocabulary (a VQ codebook).

The heads (:mod:`vistok.prior.heads`) predict the digits of a position one after another,
each conditioned on the previous ones, so the probability of an id is the exact product of
digit conditionals -- a normalized distribution over the full vocabulary with no
``vocab``-way softmax.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

__all__ = ["TokenSpace", "group_factors"]


def group_factors(factors: list[int], max_digit: int) -> list[int]:
    """Merge consecutive mixed-radix factors while the product stays ``<= max_digit``.

    ``group_factors([8, 8, 8, 5, 5, 5], 1024) == [512, 125]``; a factor larger than
    ``max_digit`` stays alone.
    """
    out: list[int] = []
    for f in factors:
        if out and out[-1] * f <= max_digit:
            out[-1] *= f
        else:
            out.append(f)
    return out


@dataclass(frozen=True)
class TokenSpace:
    """What a prior generates.

    Attributes:
        token_shape: one item's ids: ``(h, w)`` / ``(N,)`` / ``(h, w, K)`` / ``(N, K)``.
        layout: ``"grid"`` (the first two dims are rows x columns, raster order) or
            ``"sequence"`` (the first dim is the 1D order, coarse to fine).
        vocab_sizes: codes per codebook (``K`` entries).
        factors: mixed-radix digits of one id (first least significant), shared by every
            codebook whose vocabulary equals their product; ``None``: no factorization.
        variable_length: items may hold fewer than ``N`` tokens (1D only).
        max_digit: the largest digit after merging factors (the widest softmax).
    """

    token_shape: tuple[int, ...]
    layout: Literal["grid", "sequence"]
    vocab_sizes: tuple[int, ...]
    factors: tuple[int, ...] | None = None
    variable_length: bool = False
    max_digit: int = 1024

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_shape", tuple(int(s) for s in self.token_shape))
        object.__setattr__(self, "vocab_sizes", tuple(int(v) for v in self.vocab_sizes))
        if self.factors is not None:
            object.__setattr__(self, "factors", tuple(int(f) for f in self.factors))
        nd = 2 if self.layout == "grid" else 1
        if self.layout not in ("grid", "sequence"):
            raise ValueError(f"token layout must be 'grid' or 'sequence', got {self.layout!r}")
        if len(self.token_shape) not in (nd, nd + 1):
            raise ValueError(f"{self.layout} tokens need {nd} or {nd + 1} dims, got shape {self.token_shape}")
        k = self.token_shape[nd] if len(self.token_shape) == nd + 1 else 1
        if len(self.vocab_sizes) != k:
            raise ValueError(
                f"token shape {self.token_shape} has {k} codebook(s), got vocab_sizes {self.vocab_sizes}"
            )
        if any(v < 2 for v in self.vocab_sizes) or self.max_digit < 2:
            raise ValueError(
                f"vocabularies and max_digit must be >= 2, got {self.vocab_sizes}, {self.max_digit}"
            )
        if self.variable_length and self.layout != "sequence":
            raise ValueError("variable-length tokens must use the 'sequence' layout")

    # ---- geometry --------------------------------------------------------------------
    @property
    def spatial(self) -> tuple[int, ...]:
        """``(h, w)`` or ``(N,)``."""
        return self.token_shape[: 2 if self.layout == "grid" else 1]

    @property
    def positions(self) -> int:
        """``L``: positions per item (``h * w`` or ``N``)."""
        return math.prod(self.spatial)

    @property
    def multi_codebook(self) -> bool:
        return len(self.token_shape) > len(self.spatial)

    def codebook_digits(self, k: int) -> list[int]:
        """Digit sizes of codebook ``k`` (their product is ``vocab_sizes[k]``)."""
        v = self.vocab_sizes[k]
        if self.factors is not None and math.prod(self.factors) == v:
            return group_factors(list(self.factors), self.max_digit)
        return [v]

    @property
    def digit_sizes(self) -> list[int]:
        """Sizes of the ``M`` digits of one position, codebook by codebook."""
        return [d for k in range(len(self.vocab_sizes)) for d in self.codebook_digits(k)]

    @property
    def bits_per_position(self) -> float:
        """``log2`` of the number of distinct values of one position (the raw rate)."""
        return sum(math.log2(v) for v in self.vocab_sizes)

    # ---- conversion ------------------------------------------------------------------
    def to_digits(self, ids: Tensor) -> Tensor:
        """long ``[B, *token_shape]`` (a 1D sequence may be shorter) -> digits ``[B, L', M]``."""
        b = ids.shape[0]
        k = len(self.vocab_sizes)
        flat = ids.reshape(b, -1, k).long()
        out = []
        for c in range(k):
            x = flat[..., c]
            if x.min() < 0 or x.max() >= self.vocab_sizes[c]:
                raise ValueError(
                    f"token ids of codebook {c} must lie in [0, {self.vocab_sizes[c]}), "
                    f"got [{int(x.min())}, {int(x.max())}]"
                )
            for d in self.codebook_digits(c):
                out.append(x % d)
                x = torch.div(x, d, rounding_mode="floor")
        return torch.stack(out, dim=-1)

    def from_digits(self, digits: Tensor) -> Tensor:
        """Inverse of :meth:`to_digits`: ``[B, L', M]`` -> ids ``[B, *token_shape]`` (``L'``
        replacing ``N`` for a shorter 1D sequence)."""
        b, n = digits.shape[:2]
        cols, j = [], 0
        for c in range(len(self.vocab_sizes)):
            x = torch.zeros(b, n, dtype=torch.long, device=digits.device)
            place = 1
            for d in self.codebook_digits(c):
                x = x + digits[..., j].long() * place
                place *= d
                j += 1
            cols.append(x)
        ids = torch.stack(cols, dim=-1)
        if n == self.positions:
            return ids.reshape(b, *self.token_shape)
        tail = self.token_shape[1:] if self.layout == "sequence" else ()
        return ids.reshape(b, n, *tail)

    # ---- persistence -----------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["token_shape"] = list(self.token_shape)
        d["vocab_sizes"] = list(self.vocab_sizes)
        d["factors"] = None if self.factors is None else list(self.factors)
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> TokenSpace:
        return cls(
            token_shape=tuple(d["token_shape"]),
            layout=d["layout"],
            vocab_sizes=tuple(d["vocab_sizes"]),
            factors=None if d.get("factors") is None else tuple(d["factors"]),
            variable_length=bool(d.get("variable_length", False)),
            max_digit=int(d.get("max_digit", 1024)),
        )

    @classmethod
    def from_dataset(cls, ds: Any, *, max_digit: int = 1024) -> TokenSpace:
        """From a :class:`vistok.data.TokenDataset` (its ``token_shape``, ``layout``,
        ``vocab_sizes``, ``factors``, ``variable_length``)."""
        return cls(
            token_shape=tuple(ds.token_shape),
            layout=ds.layout,
            vocab_sizes=tuple(ds.vocab_sizes),
            factors=None if ds.factors is None else tuple(ds.factors),
            variable_length=bool(ds.variable_length),
            max_digit=max_digit,
        )
