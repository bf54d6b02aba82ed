"""Residual quantizers: stacked VQ stages, and VAR-style multi-scale residual VQ.

* :class:`ResidualVQ` -- stage ``s`` quantizes what stages ``< s`` left over; indices
  ``[..., S]``; optional quantizer dropout (SoundStream): in training, each sample
  ``x[i]`` keeps only its first ``n_i`` stages with probability ``quantizer_dropout``.
* :class:`MultiScaleResidualVQ` -- one shared codebook quantizes the residual of a 2D map
  at increasing resolutions (VAR / VAT): area-downsample the residual to ``s x s``,
  quantize, upsample bicubically (optionally refine with a 3x3 conv ``phi``), subtract.
  Indices are one sequence ``[B, sum_k h_k w_k]``, coarse to fine, row-major per scale.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.quantize.base import Quantizer, QuantizerOutput, check_positive, straight_through
from vistok.quantize.vq import VectorQuantizer
from vistok.registry import QUANTIZERS

__all__ = ["MultiScaleResidualVQ", "ResidualVQ"]


def _mean_stats(all_stats: list[dict[str, Tensor]]) -> dict[str, Tensor]:
    """Average ``perplexity``/``usage`` over stages, sum the loss terms and ``dead_codes``."""
    out: dict[str, Tensor] = {}
    for key in all_stats[0]:
        vals = torch.stack([s[key] for s in all_stats])
        out[key] = vals.mean() if key in ("perplexity", "usage") else vals.sum()
    return out


@QUANTIZERS.register(
    "rvq", doc="Residual VQ: ``num_stages`` codebooks, each quantizing the previous residual."
)
class ResidualVQ(Quantizer):
    """Residual vector quantizer with ``num_stages`` codebooks of ``codebook_size`` codes.

    Args:
        num_stages: number of stages S (``>= 1``); indices are long ``[..., S]``.
        codebook_size, dim, code_dim, distance, update, commitment_weight, codebook_weight,
            decay, kmeans_init, dead_code_threshold, rotation_trick: as
            :class:`~vistok.quantize.vq.VectorQuantizer`
            (one input/output projection shared by all stages).
        quantizer_dropout: probability that a sample (index along ``x``'s first dimension)
            keeps only a uniformly drawn number ``1..S`` of stages in training.

    ``bits_per_index = log2(codebook_size)`` per stage; a token costs ``S`` times that.
    ``codes(indices[..., :s])`` decodes the first ``s`` stages only (coarser reconstruction).
    Gradients: straight-through of the sum of stages.
    """

    def __init__(
        self,
        num_stages: int = 4,
        codebook_size: int = 1024,
        dim: int | None = None,
        *,
        code_dim: int | None = None,
        distance: Literal["euclidean", "cosine"] = "euclidean",
        update: Literal["ema", "loss"] = "ema",
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        decay: float = 0.99,
        kmeans_init: bool = True,
        dead_code_threshold: float = 0.0,
        rotation_trick: bool = False,
        quantizer_dropout: float = 0.0,
    ) -> None:
        check_positive("num_stages", num_stages)
        if not 0.0 <= quantizer_dropout <= 1.0:
            raise ValueError(f"rvq: quantizer_dropout must be in [0, 1], got {quantizer_dropout}")
        if dim is None and code_dim is None:
            raise ValueError("rvq: give dim (the model's channels) or code_dim")
        dim = dim if dim is not None else code_dim
        code_dim = code_dim if code_dim is not None else dim
        assert dim is not None and code_dim is not None
        super().__init__(dim, code_dim)
        self.stages = nn.ModuleList(
            VectorQuantizer(
                codebook_size,
                code_dim,
                distance=distance,
                update=update,
                commitment_weight=commitment_weight,
                codebook_weight=codebook_weight,
                decay=decay,
                kmeans_init=kmeans_init,
                dead_code_threshold=dead_code_threshold,
                rotation_trick=rotation_trick,
            )
            for _ in range(num_stages)
        )
        self.num_stages = num_stages
        self.codebook_size = codebook_size
        self.bits_per_index = math.log2(codebook_size)
        self.index_shape_suffix = (num_stages,)
        self.quantizer_dropout = quantizer_dropout

    def _keep_per_row(self, x: Tensor, n_rows: int) -> Tensor | None:
        """Number of stages each flattened row keeps (``None``: all of them)."""
        if not (self.training and self.quantizer_dropout > 0 and self.num_stages > 1):
            return None
        lead = x.shape[0] if x.ndim > 1 else 1
        keep = torch.full((lead,), self.num_stages, device=x.device)
        drop = torch.rand(lead, device=x.device) < self.quantizer_dropout
        keep[drop] = torch.randint(1, self.num_stages + 1, (int(drop.sum()),), device=x.device)
        return keep.repeat_interleave(n_rows // lead)

    def _forward(self, x: Tensor) -> QuantizerOutput:
        z = self.project_in(x)
        flat = z.reshape(-1, self.code_dim)
        keep = self._keep_per_row(x, flat.shape[0])
        residual, total = flat, torch.zeros_like(flat)
        indices, losses, stats = [], [], []
        for s, stage in enumerate(self.stages):
            mask = None if keep is None else (keep > s).float()
            q, idx, loss, st = stage.quantize_code_space(residual, mask=mask)
            q = q.detach() if mask is None else q.detach() * mask[:, None]
            total = total + q
            residual = residual - q
            indices.append(idx)
            losses.append(loss)
            stats.append(st)
        out = straight_through(flat, total).reshape(z.shape)
        idx = torch.stack(indices, -1).reshape(*z.shape[:-1], self.num_stages)
        return QuantizerOutput(self.project_out(out), idx, torch.stack(losses).sum(), _mean_stats(stats))

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Per stage: the ``k`` nearest other codes of each stage index in that stage's
        codebook; ``[..., s] -> [..., s, k]``."""
        return torch.stack(
            [self.stages[i].neighbours(indices[..., i], k) for i in range(indices.shape[-1])], -2
        )

    def embed(self, indices: Tensor) -> Tensor:
        """Sum of the first ``s`` stages' codes for indices ``[..., s]`` (``s <= S``)."""
        s = indices.shape[-1]
        if s > self.num_stages:
            raise ValueError(f"indices have {s} stages, this quantizer has {self.num_stages}")
        total = self.stages[0].embed(indices[..., 0])
        for i in range(1, s):
            total = total + self.stages[i].embed(indices[..., i])
        return total


@QUANTIZERS.register(
    "msvq", doc="Multi-scale residual VQ (VAR): one codebook over a 2D map at growing resolutions."
)
class MultiScaleResidualVQ(Quantizer):
    """VAR-style multi-scale residual quantizer of a ``[B, H, W, dim]`` map.

    Args:
        scales: side lengths, increasing; the map at scale ``k`` is
            ``min(s_k, H) x min(s_k, W)``. The last should equal the map size.
        codebook_size, dim, code_dim, distance, update, decay, kmeans_init,
            dead_code_threshold: as :class:`~vistok.quantize.vq.VectorQuantizer` (one
            codebook shared by all scales).
        commitment_weight: weight of ``mean_k mse(sg(f_k), z)`` where ``f_k`` is the
            reconstruction after scale ``k``.
        codebook_weight: weight of ``mean_k mse(f_k, sg(z))`` (trains ``phi`` and, in
            ``"loss"`` mode, the codebook).
        phi_ratio: mix of the 3x3 refinement conv, ``h <- (1 - r) h + r conv(h)`` (0: none).
        num_phi: convs shared across scales (VAR uses 4 for 10 scales).

    Input ``[B, H, W, dim]``; indices long ``[B, L]`` with ``L = sum_k h_k w_k`` (see
    :meth:`scale_sizes`); ``bits_per_index = log2(codebook_size)`` per position.
    """

    requires_spatial_input = True

    def __init__(
        self,
        scales: Sequence[int] = (1, 2, 3, 4, 5, 6, 8, 10, 13, 16),
        codebook_size: int = 4096,
        dim: int | None = None,
        *,
        code_dim: int | None = None,
        distance: Literal["euclidean", "cosine"] = "euclidean",
        update: Literal["ema", "loss"] = "ema",
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        decay: float = 0.99,
        kmeans_init: bool = True,
        dead_code_threshold: float = 0.0,
        phi_ratio: float = 0.5,
        num_phi: int = 4,
    ) -> None:
        scales = list(scales)
        if not scales or any(not isinstance(s, int) or s < 1 for s in scales):
            raise ValueError(f"msvq: scales must be positive integers, got {scales}")
        if any(b <= a for a, b in itertools.pairwise(scales)):
            raise ValueError(f"msvq: scales must be strictly increasing, got {scales}")
        if not 0.0 <= phi_ratio <= 1.0:
            raise ValueError(f"msvq: phi_ratio must be in [0, 1], got {phi_ratio}")
        check_positive("num_phi", num_phi)
        if dim is None and code_dim is None:
            raise ValueError("msvq: give dim (the model's channels) or code_dim")
        dim = dim if dim is not None else code_dim
        code_dim = code_dim if code_dim is not None else dim
        assert dim is not None and code_dim is not None
        super().__init__(dim, code_dim)
        self.vq = VectorQuantizer(
            codebook_size,
            code_dim,
            distance=distance,
            update=update,
            decay=decay,
            kmeans_init=kmeans_init,
            dead_code_threshold=dead_code_threshold,
        )
        self.scales = scales
        self.codebook_size = codebook_size
        self.bits_per_index = math.log2(codebook_size)
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.phi_ratio = phi_ratio
        n_phi = min(num_phi, len(scales)) if phi_ratio > 0 else 0
        self.phi = nn.ModuleList(nn.Conv2d(code_dim, code_dim, 3, padding=1) for _ in range(n_phi))

    def scale_sizes(self, h: int, w: int) -> list[tuple[int, int]]:
        """``(h_k, w_k)`` of every scale for an ``h x w`` map."""
        return [(min(s, h), min(s, w)) for s in self.scales]

    def num_tokens(self, h: int, w: int) -> int:
        """Length ``L`` of the index sequence for an ``h x w`` map."""
        return sum(a * b for a, b in self.scale_sizes(h, w))

    def _refine(self, k: int, h: Tensor, size: tuple[int, int]) -> Tensor:
        """Upsample scale ``k``'s codes ``[B, C, h_k, w_k]`` to ``size`` and apply its ``phi``."""
        if tuple(h.shape[-2:]) != size:
            h = F.interpolate(h, size=size, mode="bicubic", align_corners=False)
        if len(self.phi):
            j = round(k * (len(self.phi) - 1) / max(1, len(self.scales) - 1))
            h = h * (1 - self.phi_ratio) + self.phi[j](h) * self.phi_ratio
        return h

    def _pyramid_residuals(self, z: Tensor) -> Tensor:
        """Rows ``[M, code_dim]`` each scale would see under perfect quantization.

        The residual pyramid of ``z`` (area down, bicubic up, no codes): the k-means init
        and dead-code restarts draw from it, so the shared codebook also covers the small
        residuals of the fine scales, not only the coarse content.
        """
        _b, c, hh, ww = z.shape
        rest, rows = z, []
        for hk, wk in self.scale_sizes(hh, ww):
            r = rest if (hk, wk) == (hh, ww) else F.interpolate(rest, size=(hk, wk), mode="area")
            rows.append(r.permute(0, 2, 3, 1).reshape(-1, c))
            if (hk, wk) != (hh, ww):
                r = F.interpolate(r, size=(hh, ww), mode="bicubic", align_corners=False)
            rest = rest - r
        return torch.cat(rows)

    def _forward(self, x: Tensor) -> QuantizerOutput:
        if x.ndim != 4:
            raise ValueError(f"msvq expects a channel-last map [B, H, W, dim], got shape {tuple(x.shape)}")
        z = self.project_in(x).permute(0, 3, 1, 2)  # [B, C, H, W]
        b, c, hh, ww = z.shape
        if self.training:
            self.vq.prepare(self._pyramid_residuals(z.detach()))
        rest, f_hat = z.detach(), torch.zeros_like(z)
        indices, searched, commit, codebook = [], [], z.new_zeros(()), z.new_zeros(())
        cb = self.vq.normalized_codebook()
        for k, (hk, wk) in enumerate(self.scale_sizes(hh, ww)):
            r = rest if (hk, wk) == (hh, ww) else F.interpolate(rest, size=(hk, wk), mode="area")
            zn, idx = self.vq.search(r.permute(0, 2, 3, 1).reshape(-1, c))
            h = F.embedding(idx, cb).reshape(b, hk, wk, c).permute(0, 3, 1, 2)
            h = self._refine(k, h, (hh, ww))
            f_hat = f_hat + h
            rest = rest - h.detach()
            commit = commit + F.mse_loss(z, f_hat.detach())
            codebook = codebook + F.mse_loss(f_hat, z.detach())
            indices.append(idx.reshape(b, -1))
            searched.append((zn, idx))
        if self.training:
            self.vq.update(torch.cat([s[0] for s in searched]), torch.cat([s[1] for s in searched]))
        n = len(self.scales)
        commit, codebook = commit / n, codebook / n
        loss = self.commitment_weight * commit + self.codebook_weight * codebook
        idx = torch.cat(indices, dim=1)
        out = straight_through(z, f_hat).permute(0, 2, 3, 1)
        stats = self.usage(idx)
        stats.update(
            commit=commit.detach(), codebook=codebook.detach(), dead_codes=self.vq._dead().sum().float()
        )
        return QuantizerOutput(self.project_out(out), idx, loss, stats)

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The ``k`` nearest other codes of the shared codebook; ``[B, L] -> [B, L, k]``."""
        return self.vq.neighbours(indices, k)

    def embed(self, indices: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Code-space map ``[B, H, W, code_dim]`` of a sequence ``[B, L]``.

        Args:
            indices: long ``[B, L]``.
            size: ``(H, W)`` of the map; default ``(scales[-1], scales[-1])``.
        """
        hh, ww = size if size is not None else (self.scales[-1], self.scales[-1])
        sizes = self.scale_sizes(hh, ww)
        if indices.shape[-1] != sum(a * b for a, b in sizes):
            raise ValueError(
                f"msvq: {indices.shape[-1]} indices do not match a {hh}x{ww} map "
                f"({self.num_tokens(hh, ww)} expected); pass size=(H, W)"
            )
        cb = self.vq.normalized_codebook()
        b, c = indices.shape[0], self.code_dim
        f_hat = cb.new_zeros(b, c, hh, ww)
        start = 0
        for k, (hk, wk) in enumerate(sizes):
            idx = indices[:, start : start + hk * wk].reshape(-1).long()
            start += hk * wk
            h = F.embedding(idx, cb).reshape(b, hk, wk, c).permute(0, 3, 1, 2)
            f_hat = f_hat + self._refine(k, h, (hh, ww))
        return f_hat.permute(0, 2, 3, 1)

    def codes(self, indices: Tensor, size: tuple[int, int] | None = None) -> Tensor:
        """Input-space map ``[B, H, W, dim]`` of a sequence ``[B, L]`` (see :meth:`embed`)."""
        with torch.autocast(device_type=indices.device.type, enabled=False):
            return self.project_out(self.embed(indices, size))


QUANTIZERS.register_variant(
    "var",
    "msvq",
    codebook_size=4096,
    code_dim=32,
    doc="VAR: 10 scales 1..16 on a 16x16 map, 4096 shared 32-d codes, 4 shared phi convs",
)
