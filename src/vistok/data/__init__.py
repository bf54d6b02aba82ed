"""Image input, sample data, the protocol's geometry and token datasets.

``from vistok.data import TokenDataset`` reads a folder written by ``vistok tokenize``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TokenDataset"]


def __getattr__(name: str) -> Any:  # keep `import vistok.data.images` free of torch.utils.data
    if name == "TokenDataset":
        from vistok.data.token_dataset import TokenDataset

        return TokenDataset
    raise AttributeError(f"module 'vistok.data' has no attribute {name!r}")
