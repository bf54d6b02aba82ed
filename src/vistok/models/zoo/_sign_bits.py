"""Ids whose bit ``c`` is the sign of channel ``c``: the LFQ codes of Open-MAGVIT2 and MaskBit.

A mixin for published LFQ families (before the family's base class): ``bit_values`` is the
buffer ``2 ** arange(K)`` the family registers; ``embed`` is ``{-1, +1}^K``, ids are
``sum_c [z_c > 0] 2**c``, and the nearest other codes are the fewest bit flips.
"""

from __future__ import annotations

from torch import Tensor

from vistok.quantize._grid import bit_flip_neighbours

__all__ = ["SignBits"]


class SignBits:
    """LFQ ids <-> sign vectors; neighbours by bit flips (the robustness suite's swaps)."""

    bit_values: Tensor  # long [K]: 2 ** arange(K), a non-persistent buffer of the family

    @property
    def index_factors(self) -> list[int]:
        """``[2] * K``: bit ``c`` of an id is the sign of channel ``c`` (least significant first)."""
        return [2] * int(self.bit_values.numel())

    def signs_to_ids(self, z: Tensor) -> Tensor:
        """Channel-first ``z [B, K, h, w]`` -> long ids ``[B, h, w]``: ``sum_c [z_c > 0] 2**c``."""
        return ((z > 0).long() * self.bit_values.view(1, -1, 1, 1)).sum(1)

    def embed(self, ids: Tensor) -> Tensor:
        """Long ids ``[...]`` -> the code vectors ``[..., K]`` in ``{-1, +1}`` (float32)."""
        bits = (ids.long().unsqueeze(-1) & self.bit_values) != 0
        return bits.float() * 2.0 - 1.0

    @property
    def has_neighbours(self) -> bool:
        return True

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes (fewest flipped bits first, the euclidean order of the
        ``{-1, +1}`` code vectors): long ``[...] -> [..., k]``."""
        return bit_flip_neighbours(ids, int(self.bit_values.numel()), k)
