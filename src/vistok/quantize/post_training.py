"""Post-training dimension-wise quantization of a frozen continuous latent (TokenBridge).

Each channel is quantized on its own into ``2^bits`` bins fitted to the data: bin edges at
the channel's empirical quantiles ``j / 2^bits`` (equal-mass bins, so every index is used
equally often on the fitting data) and each bin reconstructed at the mean of the samples
that fall in it (the MSE-optimal value for those bins). Optional Lloyd-Max iterations then
trade equal usage for lower MSE (heavy-tailed channels gain most). Nothing is trained: call
:meth:`PostTrainingQuantizer.fit` on latents of the frozen encoder (or let the first
training-mode forward fit itself), then encode/decode. Values outside the fitted range
go to the outer bins.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vistok.quantize import dist
from vistok.quantize.base import Quantizer, QuantizerOutput, check_positive, straight_through
from vistok.registry import QUANTIZERS

__all__ = ["PostTrainingQuantizer"]


@QUANTIZERS.register(
    "ptq", doc="Post-training per-channel quantile quantization of a frozen latent (TokenBridge)."
)
class PostTrainingQuantizer(Quantizer):
    """Per-channel quantile quantizer with ``2^bits`` levels per channel.

    Args:
        dim: channels of the latent (required; no projection).
        bits: bits per channel, 1..16; ``codebook_size = 2^bits`` per index element.
        lloyd_iters: Lloyd-Max refinements after the quantile init (0 = equal-mass bins,
            best usage/entropy; more = lower MSE, bins follow the density less evenly).
        max_fit_samples: rows kept (per fit, over all ranks) to estimate the bins.

    Indices are long ``[..., dim]`` (one per channel); ``bits_per_index = bits``.
    Gradients: straight-through. ``loss`` is zero. ``stats``: ``perplexity`` (mean over
    channels of ``exp`` of the bin-usage entropy), ``usage`` (fraction of (channel, bin)
    pairs used), ``mse``.
    """

    def __init__(
        self, dim: int | None = None, bits: int = 6, *, lloyd_iters: int = 0, max_fit_samples: int = 1 << 20
    ) -> None:
        if dim is None:
            raise ValueError("ptq: dim (the latent's channel count) is required")
        check_positive("bits", bits)
        if bits > 16:
            raise ValueError(f"ptq: bits must be <= 16, got {bits}")
        super().__init__(dim, dim)
        self.bits = bits
        self.codebook_size = 1 << bits
        self.bits_per_index = float(bits)
        self.index_shape_suffix = (dim,)
        self.max_fit_samples = max_fit_samples
        if lloyd_iters < 0:
            raise ValueError(f"ptq: lloyd_iters must be >= 0, got {lloyd_iters}")
        self.lloyd_iters = lloyd_iters
        levels = self.codebook_size
        # Placeholder bins (standard-normal-ish) until fit(): edges [dim, L-1], centers [dim, L].
        grid = torch.linspace(-3, 3, levels + 1)
        self.register_buffer("edges", grid[1:-1].repeat(dim, 1).contiguous())
        self.register_buffer("centers", ((grid[1:] + grid[:-1]) / 2).repeat(dim, 1).contiguous())
        self.register_buffer("fitted", torch.tensor(False))

    @torch.no_grad()
    def fit(self, x: Tensor) -> PostTrainingQuantizer:
        """Fit the bins to latents ``x`` ``[..., dim]`` (all ranks call it; rank 0 fits).

        Returns ``self``.
        """
        flat = x.detach().reshape(-1, self.dim).float()
        cap = max(1, self.max_fit_samples // dist.world_size())
        if flat.shape[0] > cap:
            flat = flat[torch.randperm(flat.shape[0], device=flat.device)[:cap]]
        pool = dist.gather_rows(flat)
        if dist.rank() == 0:
            self._fit_local(pool)
        dist.broadcast_(self.edges)
        dist.broadcast_(self.centers)
        self.fitted.fill_(True)
        return self

    def _fit_local(self, x: Tensor) -> None:
        n, levels = x.shape[0], self.codebook_size
        srt = x.t().sort(dim=1).values  # [dim, n]
        pos = torch.arange(1, levels, device=x.device) / levels * (n - 1)
        lo = pos.floor().long()
        hi = (lo + 1).clamp_max(n - 1)
        frac = pos - lo
        edges = srt[:, lo] * (1 - frac) + srt[:, hi] * frac  # [dim, L-1] linear-interpolated quantiles
        srt = srt.contiguous()
        centers = self._bin_means(srt, edges.contiguous(), None)
        for _ in range(self.lloyd_iters):  # Lloyd-Max: edges at midpoints, centers at bin means
            edges = (centers[:, 1:] + centers[:, :-1]) / 2
            centers = self._bin_means(srt, edges, centers)
        self.edges.copy_(edges)
        self.centers.copy_(centers)

    def _bin_means(self, srt: Tensor, edges: Tensor, previous: Tensor | None) -> Tensor:
        """Mean of the sorted samples ``[dim, n]`` in each bin; empty bins keep ``previous``
        (or the midpoint of their edges, clamped to the data range)."""
        levels = self.codebook_size
        bins = torch.searchsorted(edges, srt)  # [dim, n]
        sums = torch.zeros(self.dim, levels, device=srt.device).scatter_add_(1, bins, srt)
        counts = torch.zeros(self.dim, levels, device=srt.device).scatter_add_(1, bins, torch.ones_like(srt))
        if previous is None:
            lower = torch.cat([srt[:, :1], edges], dim=1)
            upper = torch.cat([edges, srt[:, -1:]], dim=1)
            previous = (lower + upper) / 2
        return torch.where(counts > 0, sums / counts.clamp_min(1), previous)

    def encode(self, x: Tensor) -> Tensor:
        """Bin indices ``[..., dim]`` (long, in ``[0, 2^bits)``) of latents ``[..., dim]``."""
        flat = x.reshape(-1, self.dim).float().t().contiguous()
        return torch.searchsorted(self.edges, flat).t().reshape(x.shape)

    def embed(self, indices: Tensor) -> Tensor:
        """Bin centers ``[..., dim]`` of indices ``[..., dim]``."""
        flat = indices.reshape(-1, self.dim).long().t()
        return self.centers.gather(1, flat).t().reshape(indices.shape)

    decode = embed

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """Per channel: the ``k`` bins whose centers are nearest to each bin's center;
        ``[..., dim] -> [..., dim, k]`` (centers are sorted, so they lie within ``k`` bins)."""
        if not 1 <= k < self.codebook_size:
            raise ValueError(f"k must be in [1, {self.codebook_size - 1}], got {k}")
        offsets = torch.cat([torch.arange(-k, 0), torch.arange(1, k + 1)]).to(indices.device)
        idx = indices.long().unsqueeze(-1)
        cand = idx + offsets  # [..., dim, 2k]
        valid = (cand >= 0) & (cand < self.codebook_size)
        cand_c = cand.clamp(0, self.codebook_size - 1)
        centers = self.centers.t()  # [L, dim]
        ch = torch.arange(self.dim, device=indices.device).unsqueeze(-1)
        dist = (centers[cand_c, ch] - centers[idx, ch]).abs()
        dist = torch.where(valid, dist + offsets.abs() * 1e-12, torch.full_like(dist, float("inf")))
        return cand_c.gather(-1, dist.topk(k, dim=-1, largest=False).indices)

    def _forward(self, x: Tensor) -> QuantizerOutput:
        if not bool(self.fitted):
            if not self.training:
                raise RuntimeError("ptq: call fit(latents) (or one training-mode forward) before encoding")
            self.fit(x)
        indices = self.encode(x)
        q = straight_through(x, self.embed(indices))
        flat = indices.reshape(-1, self.dim)
        counts = torch.zeros(self.dim, self.codebook_size, device=x.device)
        counts.scatter_add_(1, flat.t(), torch.ones_like(flat.t(), dtype=counts.dtype))
        p = counts / counts.sum(1, keepdim=True).clamp_min(1)
        entropy = -(p * p.clamp_min(1e-30).log()).sum(1)
        stats = {
            "perplexity": entropy.exp().mean(),
            "usage": (counts > 0).float().mean(),
            "mse": (q.detach() - x.detach()).pow(2).mean(),
        }
        return QuantizerOutput(q, indices, x.new_zeros(()), stats)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, bits={self.bits}, fitted={bool(self.fitted)}"
