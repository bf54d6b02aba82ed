"""Binary spherical quantization (BSQ, Zhao et al. 2024): LFQ on the unit sphere.

The code-space vector is l2-normalized to ``u`` and quantized to ``sign(u) / sqrt(bits)``,
a corner of the hypercube inscribed in the unit sphere, so ``||u - q||`` is bounded. The
entropy loss is LFQ's (see :mod:`vistok.quantize.lfq`) with the soft assignment written
in units of the code magnitude: bit logits ``a_i = 4 sqrt(bits) u_i / tau`` -- exact
per-sample entropy, grouped codebook entropy (an upper bound beyond ``group_bits``).
"""

from __future__ import annotations

import math

from vistok.quantize.lfq import LFQ
from vistok.registry import QUANTIZERS

__all__ = ["BSQ"]


@QUANTIZERS.register(
    "bsq", doc="Binary spherical quantization: l2-normalize then sign, with the entropy loss."
)
class BSQ(LFQ):
    """Binary spherical quantizer with ``2^bits`` codes ``±1/sqrt(bits)`` per channel.

    Same arguments as :class:`~vistok.quantize.lfq.LFQ` (``codebook_scale`` is fixed by the
    sphere). Index convention and neighbours (Hamming order) are LFQ's.
    """

    normalize_input = True

    def _code_scale(self, codebook_scale: float) -> float:
        return 1.0 / math.sqrt(self.bits)
