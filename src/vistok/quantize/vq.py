"""Vector quantization (VQ-VAE / VQGAN / ViT-VQGAN as in Parti).

Options: euclidean or cosine codes (inputs and codes l2-normalized), a low-dimensional
code space through ``code_dim < dim`` (ViT-VQGAN's factorized codes), codebook learned by
the codebook loss or by EMA, k-means++ initialization on the first training batch,
dead-code restarts from the current batch, and the rotation-trick gradient.

State learned outside the gradient (``codebook`` under EMA, ``embed_sum``,
``cluster_size``, ``initialized``) is synchronized across ranks (see
:mod:`vistok.quantize.dist`): EMA sums and counts are all-reduced, k-means runs on rank 0
on a sample gathered from all ranks and is broadcast, restart inputs are picked on rank 0
and broadcast. Out-of-gradient writes go through ``.data``.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vistok.quantize import dist
from vistok.quantize._search import code_neighbours, kmeans, nearest_code
from vistok.quantize.base import Quantizer, QuantizerOutput, check_positive, straight_through
from vistok.registry import QUANTIZERS

__all__ = ["VectorQuantizer", "rotation_trick"]

_DEAD_FOR_STATS = 0.01  # relative usage below which a code counts as dead in stats when restarts are off


def rotation_trick(z: Tensor, q: Tensor) -> Tensor:
    """Forward value ``q``; gradient to ``z`` through the rotation that maps ``z`` onto ``q``.

    ``q~ = sg(|q|/|z| R) z`` with ``R = I - 2 w w^T + 2 v u^T``, ``u = z/|z|``, ``v = q/|q|``,
    ``w = (u + v)/|u + v|`` (Fifty et al. 2024). Shapes ``[..., D]``.
    """
    if not (torch.is_grad_enabled() and z.requires_grad):
        return q.detach()
    zn = z.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    qn = q.norm(dim=-1, keepdim=True)
    u = (z / zn).detach()
    v = (q / qn.clamp_min(1e-12)).detach()
    w = F.normalize(u + v, dim=-1).detach()
    rz = z - 2 * (z * w).sum(-1, keepdim=True) * w + 2 * (z * u).sum(-1, keepdim=True) * v
    return (qn / zn).detach() * rz


def _masked_mse(a: Tensor, b: Tensor, mask: Tensor | None) -> Tensor:
    """Mean squared error over rows ``[N, D]``, counting only rows with ``mask`` 1."""
    if mask is None:
        return F.mse_loss(a, b)
    per_row = (a - b).pow(2).mean(-1)
    return (per_row * mask).sum() / mask.sum().clamp_min(1)


@QUANTIZERS.register(
    "vq", doc="Vector quantization: nearest of ``codebook_size`` codes (EMA or loss, cosine option)."
)
class VectorQuantizer(Quantizer):
    """Nearest-neighbour vector quantizer with a ``codebook_size x code_dim`` codebook.

    Args:
        codebook_size: number of codes K (``>= 2``).
        dim: input channels; ``None`` means ``code_dim``.
        code_dim: codebook channels; ``None`` means ``dim``. A smaller ``code_dim`` gives
            ViT-VQGAN's low-dimensional (factorized) codes via Linear projections.
        distance: ``"euclidean"`` or ``"cosine"`` (inputs and codes l2-normalized; the
            quantized output is the unit-norm code).
        update: ``"ema"`` (codebook buffer updated by exponential moving averages; only the
            commitment loss) or ``"loss"`` (codebook parameter trained by the codebook loss).
        commitment_weight: weight of ``mean((z - sg(q))^2)`` (``stats["commit"]``).
        codebook_weight: weight of ``mean((sg(z) - q)^2)`` in ``"loss"`` mode.
        decay: EMA decay of the codebook statistics and of the usage counts.
        eps: Laplace smoothing of the EMA cluster sizes.
        kmeans_init: initialize the codebook by k-means++ and ``kmeans_iters`` Lloyd steps
            on the first training batch (otherwise: random normal codes).
        dead_code_threshold: a code whose EMA usage falls below this fraction of the mean
            usage is restarted at a random input of the current batch (0 disables).
        rotation_trick: rotation-trick gradient instead of the straight-through estimator.
        chunk_size: most distance scores held at once by the nearest-code search.

    Indices are long ``[...]`` in ``[0, K)``; ``bits_per_index = log2(K)``.
    """

    def __init__(
        self,
        codebook_size: int = 1024,
        dim: int | None = None,
        *,
        code_dim: int | None = None,
        distance: Literal["euclidean", "cosine"] = "euclidean",
        update: Literal["ema", "loss"] = "ema",
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        decay: float = 0.99,
        eps: float = 1e-5,
        kmeans_init: bool = True,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 0.0,
        rotation_trick: bool = False,
        chunk_size: int = 1 << 19,
        kmeans_max_samples: int = 1 << 16,
    ) -> None:
        check_positive("codebook_size", codebook_size, 2)
        if dim is None and code_dim is None:
            raise ValueError("vq: give dim (the model's channels) or code_dim (the codebook's)")
        if distance not in ("euclidean", "cosine"):
            raise ValueError(f"vq: distance must be 'euclidean' or 'cosine', got {distance!r}")
        if update not in ("ema", "loss"):
            raise ValueError(f"vq: update must be 'ema' or 'loss', got {update!r}")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"vq: decay must be in (0, 1), got {decay}")
        if dead_code_threshold < 0:
            raise ValueError(f"vq: dead_code_threshold must be >= 0, got {dead_code_threshold}")
        check_positive("chunk_size", chunk_size)
        dim = dim if dim is not None else code_dim
        code_dim = code_dim if code_dim is not None else dim
        assert dim is not None and code_dim is not None
        super().__init__(dim, code_dim)
        self.codebook_size = codebook_size
        self.bits_per_index = math.log2(codebook_size)
        self.cosine = distance == "cosine"
        self.ema = update == "ema"
        self.commitment_weight = commitment_weight
        self.codebook_weight = codebook_weight
        self.decay = decay
        self.eps = eps
        self.kmeans_init = kmeans_init
        self.kmeans_iters = kmeans_iters
        self.dead_code_threshold = dead_code_threshold
        self.use_rotation_trick = rotation_trick
        self.chunk_size = chunk_size
        self.kmeans_max_samples = kmeans_max_samples
        init = torch.randn(codebook_size, code_dim)
        if self.cosine:
            init = F.normalize(init, dim=1)
        if self.ema:
            self.register_buffer("codebook", init)
            self.register_buffer("embed_sum", init.clone())
        else:
            self.codebook = nn.Parameter(init)
        # EMA of assignments per step (summed over ranks): usage for restarts and EMA sizes.
        self.register_buffer("cluster_size", torch.ones(codebook_size))
        self.register_buffer("initialized", torch.tensor(False))

    # -- lookups -------------------------------------------------------------------------

    def normalized_codebook(self) -> Tensor:
        """The codebook as used for search and lookup, ``[K, code_dim]`` (unit rows if cosine)."""
        return F.normalize(self.codebook, dim=1) if self.cosine else self.codebook

    def embed(self, indices: Tensor) -> Tensor:
        """Code-space vectors ``[..., code_dim]`` of long ``indices`` ``[...]``."""
        return F.embedding(indices.long(), self.normalized_codebook())

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The ``k`` nearest other codes in code space (chunked; ``generator`` unused)."""
        return code_neighbours(
            self.normalized_codebook(), indices, k, cosine=self.cosine, chunk_size=self.chunk_size
        )

    def search(self, flat: Tensor) -> tuple[Tensor, Tensor]:
        """Nearest codes of code-space rows ``[N, code_dim]``.

        Returns:
            ``(zn, indices)``: the rows as compared (l2-normalized if cosine, keeping their
            gradient) and long ``[N]`` indices.
        """
        zn = F.normalize(flat, dim=1) if self.cosine else flat
        cb = self.normalized_codebook().detach()
        return zn, nearest_code(zn.detach(), cb, cosine=self.cosine, chunk_size=self.chunk_size)

    # -- forward -------------------------------------------------------------------------

    def _forward(self, x: Tensor) -> QuantizerOutput:
        z = self.project_in(x)
        q, indices, loss, stats = self.quantize_code_space(z)
        return QuantizerOutput(self.project_out(q), indices, loss, stats)

    def quantize_code_space(
        self, z: Tensor, *, update: bool = True, mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor, dict[str, Tensor]]:
        """Quantize code-space ``z`` ``[..., code_dim]`` (no projections).

        Args:
            z: float32 code-space input.
            update: in training, run initialization, restarts and the EMA/usage update
                (composite quantizers pass ``False`` and call :meth:`prepare` and
                :meth:`update` themselves).
            mask: optional float ``[prod(z.shape[:-1])]``; rows with 0 are left out of the
                losses and the statistics.

        Returns:
            ``(quantized [..., code_dim], indices [...], loss, stats)``.
        """
        flat = z.reshape(-1, self.code_dim)
        if self.training and update:
            self.prepare(flat)
        zn, indices = self.search(flat)
        q = F.embedding(indices, self.normalized_codebook())
        commit = _masked_mse(zn, q.detach(), mask)
        codebook = zn.new_zeros(()) if self.ema else _masked_mse(q, zn.detach(), mask)
        loss = self.commitment_weight * commit + self.codebook_weight * codebook
        out = rotation_trick(zn, q) if self.use_rotation_trick else straight_through(zn, q)
        if self.training and update:
            self.update(zn, indices, mask)
        stats = self.usage(indices, mask)
        stats.update(
            commit=commit.detach(), codebook=codebook.detach(), dead_codes=self._dead().sum().float()
        )
        return out.reshape(z.shape), indices.reshape(z.shape[:-1]), loss, stats

    # -- learning outside the gradient ---------------------------------------------------

    def _dead(self) -> Tensor:
        rel = self.dead_code_threshold if self.dead_code_threshold > 0 else _DEAD_FOR_STATS
        return self.cluster_size < rel * self.cluster_size.mean()

    @torch.no_grad()
    def prepare(self, flat: Tensor) -> None:
        """Training-time step before the search: first-batch init, else dead-code restarts.

        Args:
            flat: this rank's code-space inputs ``[N, code_dim]`` (not yet normalized).
        """
        data = F.normalize(flat.detach(), dim=1) if self.cosine else flat.detach()
        if not bool(self.initialized):
            self.init_codebook(data)
        elif self.dead_code_threshold > 0:
            self.restart_dead_codes(data)

    @torch.no_grad()
    def init_codebook(self, data: Tensor) -> None:
        """Initialize from ``data`` ``[N, code_dim]`` (all ranks call it; rank 0 decides)."""
        n_total = dist.all_reduce_sum(torch.tensor([float(data.shape[0])], device=data.device))
        if self.kmeans_init:
            cap = max(1, self.kmeans_max_samples // dist.world_size())
            if data.shape[0] > cap:
                data = data[torch.randperm(data.shape[0], device=data.device)[:cap]]
            pool = dist.gather_rows(data)
            if dist.rank() == 0:
                centers = kmeans(
                    pool,
                    self.codebook_size,
                    iters=self.kmeans_iters,
                    cosine=self.cosine,
                    chunk_size=self.chunk_size,
                )
                self.codebook.data.copy_(centers)
        dist.broadcast_(self.codebook.data)
        self.cluster_size.fill_(float(n_total) / self.codebook_size)
        if self.ema:
            self.embed_sum.copy_(self.codebook * self.cluster_size[:, None])
        self.initialized.fill_(True)

    @torch.no_grad()
    def restart_dead_codes(self, data: Tensor) -> int:
        """Move codes whose usage is below the threshold onto random inputs of ``data``.

        Returns the number of restarted codes (identical on every rank).
        """
        dead = self.cluster_size < self.dead_code_threshold * self.cluster_size.mean()
        n_dead = int(dead.sum())
        if n_dead == 0:
            return 0
        pool = dist.gather_rows(data[torch.randperm(data.shape[0], device=data.device)[:n_dead]])
        new = self.codebook.data.clone()
        if dist.rank() == 0:
            if pool.shape[0] >= n_dead:
                pick = pool[torch.randperm(pool.shape[0], device=pool.device)[:n_dead]]
            else:
                pick = pool[torch.randint(pool.shape[0], (n_dead,), device=pool.device)]
            new[dead] = pick
        dist.broadcast_(new)
        self.codebook.data.copy_(new)
        self.cluster_size[dead] = self.cluster_size.mean()
        if self.ema:
            self.embed_sum[dead] = new[dead] * self.cluster_size[dead, None]
        return n_dead

    @torch.no_grad()
    def update(self, zn: Tensor, indices: Tensor, mask: Tensor | None = None) -> None:
        """EMA of usage (and, in ``"ema"`` mode, of the codebook) from one batch.

        Args:
            zn: code-space inputs as searched (normalized if cosine) ``[N, code_dim]``.
            indices: long ``[N]`` their codes.
            mask: optional float ``[N]``, rows with 0 are ignored.
        """
        zn, indices = zn.detach().reshape(-1, self.code_dim), indices.reshape(-1)
        counts = torch.bincount(indices, weights=mask, minlength=self.codebook_size).float()
        if self.ema:
            rows = zn if mask is None else zn * mask[:, None]
            sums = torch.zeros_like(self.codebook).index_add_(0, indices, rows)
            packed = dist.all_reduce_sum(torch.cat([counts[:, None], sums], dim=1))
            counts, sums = packed[:, 0], packed[:, 1:]
        else:
            dist.all_reduce_sum(counts)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        if self.ema:
            self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
            total = self.cluster_size.sum()
            smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
            new = self.embed_sum / smoothed[:, None]
            self.codebook.copy_(F.normalize(new, dim=1) if self.cosine else new)

    def extra_repr(self) -> str:
        kind = "cosine" if self.cosine else "euclidean"
        upd = "ema" if self.ema else "loss"
        return f"{super().extra_repr()}, distance={kind}, update={upd}"


QUANTIZERS.register_variant(
    "vq-vitvqgan",
    "vq",
    codebook_size=8192,
    code_dim=32,
    distance="cosine",
    update="loss",
    doc="ViT-VQGAN / Parti: 8192 l2-normalized 32-d codes, codebook loss",
)
QUANTIZERS.register_variant(
    "vq-llamagen",
    "vq",
    codebook_size=16384,
    code_dim=8,
    distance="cosine",
    update="loss",
    doc="LlamaGen: 16384 l2-normalized 8-d codes, codebook loss",
)
