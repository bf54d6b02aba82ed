"""Process-group setup for ``torchrun``: DDP over gloo (CPU) or NCCL (GPU), one device per rank.

``torchrun --nproc_per_node=N -m vistok train ...`` sets ``RANK``/``WORLD_SIZE``/
``LOCAL_RANK``; :func:`setup` reads them, initializes the default group and picks the
device. Without them it is a no-op (one process). Only rank 0 writes files
(:attr:`DistInfo.is_main`). Quantizers synchronize their own non-gradient state through
:mod:`vistok.quantize.dist` once the group exists.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as tdist

__all__ = ["DistInfo", "barrier", "cleanup", "setup"]


@dataclass(frozen=True)
class DistInfo:
    """This process's place: ``rank`` of ``world``, its ``device``, whether it writes."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def _device(pref: str, local_rank: int) -> torch.device:
    if pref == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    if pref == "cuda":
        return torch.device(f"cuda:{local_rank}")
    return torch.device(pref)


def setup(device: str = "auto") -> DistInfo:
    """Initialize the default process group when launched by torchrun (``WORLD_SIZE > 1``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = _device(device, local_rank)
    if world > 1 and not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        tdist.init_process_group(backend=backend, rank=rank, world_size=world)
    if tdist.is_initialized():
        rank, world = tdist.get_rank(), tdist.get_world_size()
    return DistInfo(rank=rank, world=world, local_rank=local_rank, device=dev)


def barrier() -> None:
    """Wait for all ranks (no-op in one process)."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.barrier()


def cleanup() -> None:
    """Destroy the default process group if this module's :func:`setup` made one."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()
