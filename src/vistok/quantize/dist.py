"""Rank synchronization for state that quantizers learn outside the gradient.

EMA codebook statistics, k-means initialization, dead-code restarts and post-training
bin fitting must leave every rank with bit-identical buffers, otherwise the replicas of a
data-parallel model drift apart. The rules used throughout :mod:`vistok.quantize`:

* sums and counts are combined with :func:`all_reduce_sum` (the reduced tensor is the
  same on every rank, so the identical arithmetic that follows stays identical);
* anything random or data-dependent (k-means++, picking restart inputs, quantile fits)
  is computed on rank 0 from :func:`gather_rows` and sent to all with :func:`broadcast_`.

Every helper is a no-op (and makes no collective call) when ``torch.distributed`` is
unavailable or not initialized, so single-process code pays nothing.
"""

from __future__ import annotations

import torch
import torch.distributed as tdist
from torch import Tensor

__all__ = ["all_reduce_sum", "broadcast_", "gather_rows", "is_distributed", "rank", "world_size"]


def is_distributed() -> bool:
    """True when a default process group is initialized (and has more than one rank)."""
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return tdist.get_rank() if is_distributed() else 0


def world_size() -> int:
    """Number of ranks (1 when not distributed)."""
    return tdist.get_world_size() if is_distributed() else 1


def all_reduce_sum(t: Tensor) -> Tensor:
    """Sum ``t`` over ranks in place and return it; unchanged when not distributed."""
    if is_distributed():
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
    return t


def broadcast_(t: Tensor, src: int = 0) -> Tensor:
    """Overwrite ``t`` on every rank with rank ``src``'s values (in place); returns ``t``.

    ``t`` may be a parameter or buffer; the copy bypasses autograd.
    """
    if is_distributed():
        buf = t.detach().contiguous()
        tdist.broadcast(buf, src=src)
        if buf.data_ptr() != t.data_ptr():
            with torch.no_grad():
                t.copy_(buf)
    return t


def gather_rows(x: Tensor) -> Tensor:
    """Concatenate the rows of ``x`` ([n_r, ...], n_r may differ by rank) from all ranks.

    Returns the same ``[sum_r n_r, ...]`` tensor, in rank order, on every rank; ``x``
    itself when not distributed.
    """
    if not is_distributed():
        return x
    x = x.detach().contiguous()
    n = torch.tensor([x.shape[0]], dtype=torch.long, device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    tdist.all_gather(sizes, n)
    counts = [int(s.item()) for s in sizes]
    most = max(counts)
    padded = x.new_zeros((most, *x.shape[1:]))
    padded[: x.shape[0]] = x
    parts = [torch.empty_like(padded) for _ in counts]
    tdist.all_gather(parts, padded)
    return torch.cat([p[:c] for p, c in zip(parts, counts)], dim=0)
