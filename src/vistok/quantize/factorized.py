"""Factorized VQ (FQGAN, Bai et al. 2024): K independent sub-codebooks over split channels.

The ``dim`` input channels are split into ``num_factors`` equal groups; group ``k`` is
projected to its own code space and quantized by its own codebook. A disentanglement
regularizer keeps the sub-codebooks from encoding the same thing: the mean over tokens
and over pairs ``i < j`` of ``(q_i . q_j)^2`` with ``q`` the l2-normalized code-space
outputs (zero when the factors' codes are orthogonal).
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.quantize.base import Quantizer, QuantizerOutput, check_positive
from vistok.quantize.residual import _mean_stats
from vistok.quantize.vq import VectorQuantizer
from vistok.registry import QUANTIZERS

__all__ = ["FactorizedVQ"]


@QUANTIZERS.register(
    "fvq", doc="Factorized VQ (FQGAN): independent sub-codebooks over split channels; indices [..., K]."
)
class FactorizedVQ(Quantizer):
    """``num_factors`` sub-codebooks, each of ``codebook_size`` codes of ``code_dim`` channels.

    Args:
        num_factors: number of sub-codebooks K (``>= 1``; must divide ``dim``).
        codebook_size: codes per sub-codebook.
        dim: input channels; ``None`` means ``num_factors * code_dim``.
        code_dim: channels of each sub-codebook (each factor projects ``dim/K -> code_dim``
            when they differ).
        distance, update, commitment_weight, decay, kmeans_init, dead_code_threshold: as
            :class:`~vistok.quantize.vq.VectorQuantizer`, for every factor.
        disentangle_weight: weight of the disentanglement regularizer (``stats["disentangle"]``).

    Indices are long ``[..., K]``; ``bits_per_index = log2(codebook_size)`` per factor.
    """

    def __init__(
        self,
        num_factors: int = 2,
        codebook_size: int = 16384,
        dim: int | None = None,
        *,
        code_dim: int = 8,
        distance: Literal["euclidean", "cosine"] = "cosine",
        update: Literal["ema", "loss"] = "loss",
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        kmeans_init: bool = True,
        dead_code_threshold: float = 0.0,
        disentangle_weight: float = 0.1,
    ) -> None:
        check_positive("num_factors", num_factors)
        check_positive("code_dim", code_dim)
        dim = dim if dim is not None else num_factors * code_dim
        if dim % num_factors:
            raise ValueError(f"fvq: dim={dim} is not divisible by num_factors={num_factors}")
        super().__init__(dim, dim)
        self.split = dim // num_factors
        self.factors = nn.ModuleList(
            VectorQuantizer(
                codebook_size,
                self.split,
                code_dim=code_dim,
                distance=distance,
                update=update,
                commitment_weight=commitment_weight,
                decay=decay,
                kmeans_init=kmeans_init,
                dead_code_threshold=dead_code_threshold,
            )
            for _ in range(num_factors)
        )
        self.num_factors = num_factors
        self.sub_code_dim = code_dim
        self.codebook_size = codebook_size
        self.bits_per_index = math.log2(codebook_size)
        self.index_shape_suffix = (num_factors,)
        self.disentangle_weight = disentangle_weight

    def _forward(self, x: Tensor) -> QuantizerOutput:
        outs, codes, indices, losses, stats = [], [], [], [], []
        for part, f in zip(x.split(self.split, dim=-1), self.factors):
            q, idx, loss, st = f.quantize_code_space(f.project_in(part))
            codes.append(q)
            outs.append(f.project_out(q))
            indices.append(idx)
            losses.append(loss)
            stats.append(st)
        dis = x.new_zeros(())
        if self.num_factors > 1:
            unit = [F.normalize(c.reshape(-1, self.sub_code_dim), dim=-1) for c in codes]
            pairs = list(itertools.combinations(range(self.num_factors), 2))
            dis = sum((unit[i] * unit[j]).sum(-1).pow(2).mean() for i, j in pairs) / len(pairs)
        loss = torch.stack(losses).sum() + self.disentangle_weight * dis
        st = _mean_stats(stats)
        st["disentangle"] = torch.as_tensor(dis).detach()
        return QuantizerOutput(torch.cat(outs, dim=-1), torch.stack(indices, dim=-1), loss, st)

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Per factor: the ``k`` nearest other codes in that factor's codebook;
        ``[..., K] -> [..., K, k]``."""
        return torch.stack([f.neighbours(indices[..., j], k) for j, f in enumerate(self.factors)], -2)

    def embed(self, indices: Tensor) -> Tensor:
        """Code-space vectors ``[..., K, code_dim]`` of indices ``[..., K]``."""
        return torch.stack([f.embed(indices[..., k]) for k, f in enumerate(self.factors)], dim=-2)

    def codes(self, indices: Tensor) -> Tensor:
        """Input-space vectors ``[..., dim]`` of indices ``[..., K]``."""
        with torch.autocast(device_type=indices.device.type, enabled=False):
            return torch.cat([f.codes(indices[..., k]) for k, f in enumerate(self.factors)], dim=-1)
