"""Run a block of torch CPU work on a given number of intra-op threads."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

__all__ = ["torch_threads"]


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Set ``torch.set_num_threads(n)`` for the block; the previous count is restored after.

    On shared or oversubscribed CPUs, small ops and LAPACK calls can be many times slower with
    more threads than free cores (measured here: a 1280-d ``eigh`` 3.4 s vs 0.4 s, a tiny
    ``addmm`` 23 ms vs 0.06 ms), and one thread also fixes the reduction order.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
