"""Quantizer tests run single-threaded.

The tests use small tensors; on a shared 2-core machine an OpenMP parallel region over a
tiny matmul can wait tens of milliseconds for a descheduled thread (measured: 23 ms vs
0.06 ms for a 4096x8 @ 8x64 addmm under load). One thread keeps the suite fast and its
timing stable; the previous thread count is restored after each test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vistok.utils.threads import torch_threads


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    with torch_threads(1):
        yield
