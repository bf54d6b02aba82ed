"""Prior tests run on one intra-op thread: tiny ops are many times faster than with two on a
shared CPU, and one thread fixes the reduction order."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vistok.utils.threads import torch_threads


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    with torch_threads(1):
        yield
