"""Quantizers: one contract, one registry (``vistok.registry.QUANTIZERS``).

``q = QUANTIZERS.create("fsq:levels=[8,8,8,5,5,5]", dim=C)``; ``out = q(x)`` with ``x``
channel-last ``[..., C]`` (or ``quantize_bchw(q, x)`` for ``[B, C, H, W]``) returns a
:class:`QuantizerOutput` ``(quantized, indices, loss, stats)``; ``q.codes(indices)``
inverts the lookup. See ``docs/quantizers.md``.
"""

from vistok.quantize._search import kmeans, nearest_code, topk_codes
from vistok.quantize.base import Quantizer, QuantizerOutput, quantize_bchw, straight_through, usage_stats
from vistok.quantize.bsq import BSQ
from vistok.quantize.factorized import FactorizedVQ
from vistok.quantize.fsq import FSQ
from vistok.quantize.gaussian import GaussianBottleneck
from vistok.quantize.lfq import LFQ, binary_entropy_terms
from vistok.quantize.post_training import PostTrainingQuantizer
from vistok.quantize.residual import MultiScaleResidualVQ, ResidualVQ
from vistok.quantize.vq import VectorQuantizer, rotation_trick
from vistok.registry import QUANTIZERS

__all__ = [
    "BSQ",
    "FSQ",
    "LFQ",
    "QUANTIZERS",
    "FactorizedVQ",
    "GaussianBottleneck",
    "MultiScaleResidualVQ",
    "PostTrainingQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "ResidualVQ",
    "VectorQuantizer",
    "binary_entropy_terms",
    "kmeans",
    "nearest_code",
    "quantize_bchw",
    "rotation_trick",
    "straight_through",
    "topk_codes",
    "usage_stats",
]
