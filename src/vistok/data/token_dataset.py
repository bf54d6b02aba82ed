"""`TokenDataset`: a ``vistok tokenize`` folder as a PyTorch dataset (memory-mapped shards).

One row per view of each source image that decoded (``none``: 1 view, ``flip``: 2,
``ten-crop``: 10), in source order. Layout in docs/generation.md ("Token datasets").
"""

from __future__ import annotations

import bisect
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from vistok.data.token_format import DATASET_FORMAT, MANIFEST_NAME, PLAN_NAME, memmap_tensor

__all__ = ["TokenDataset"]


class TokenDataset(Dataset):
    """Rows of a token dataset; ``ds[i]`` is a dict of one row.

    Args:
        path: a folder written by ``vistok tokenize``.

    Each row (``ds[i]``):
        ids: long, ``token_shape`` (``[h, w]`` grid, ``[N]`` sequence, ``[h, w, K]`` /
            ``[N, K]`` with K codebooks; variable-length sequences padded to ``[N_max]``
            with zeros past ``length``); discrete tokenizers only.
        latents: float32, ``token_shape``; continuous tokenizers only.
        length: valid tokens (``N`` = ``h * w`` or the sequence length when fixed).
        source: the source image's path as given to ``vistok tokenize``.
        name: its relative name (what ``vistok decode`` writes it as).
        item: index of the source image in the input list; view: which view of it.
        bits: the tokenizer's rate for this row, in bits.

    Attributes:
        manifest: the parsed ``manifest.json``.
        tokenizer: a spec that rebuilds the tokenizer (``NAME@k`` when one was used).
        token_shape, layout ("grid" | "sequence"), variable_length, max_length,
        vocab_sizes (one per codebook; [] when continuous), factors (mixed-radix digits of
        one id, least significant first, or None): see docs/generation.md.

    Raises:
        FileNotFoundError: ``path`` has no manifest (not a token dataset, or a run that
            has not finished: rerun the same ``vistok tokenize`` command).
        ValueError: a manifest of another format.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST_NAME
        if not manifest_path.exists():
            hint = (
                "an unfinished `vistok tokenize` run: rerun the same command to finish it"
                if (self.path / PLAN_NAME).exists()
                else "not a token dataset folder"
            )
            raise FileNotFoundError(f"{self.path}: no {MANIFEST_NAME} ({hint})")
        self.manifest: dict[str, Any] = json.loads(manifest_path.read_text())
        if self.manifest.get("format") != DATASET_FORMAT:
            raise ValueError(
                f"{manifest_path}: format {self.manifest.get('format')!r}, expected {DATASET_FORMAT}"
            )
        m = self.manifest
        self.tokenizer: str = m["tokenizer"]
        self.token_shape: tuple[int, ...] = tuple(m["token_shape"])
        self.layout: str = m["layout"]
        self.variable_length: bool = m["variable_length"]
        self.max_length: int = m["max_length"]
        self.vocab_sizes: list[int] = list(m["vocab_sizes"])
        self.factors: list[int] | None = m["factors"]
        self.field: str = m["field"]
        self._items = {it["index"]: it for it in m["items"]}
        self._files = [self.path / s["file"] for s in m["shards"]]
        # shards holding rows, by first row (a shard whose images all failed holds none)
        self._filled = [i for i, s in enumerate(m["shards"]) if s["rows"]]
        self._starts = [m["shards"][i]["first_row"] for i in self._filled]
        self._rows = m["rows"]
        self._cache: dict[tuple[int, str], np.ndarray] = {}

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers (spawn) get the dataset pickled: send paths, not mapped arrays
        return {**self.__dict__, "_cache": {}}

    def __len__(self) -> int:
        return self._rows

    def _column(self, shard: int, name: str) -> np.ndarray:
        key = (shard, name)
        if key not in self._cache:  # maps lazily: each DataLoader worker maps its own
            self._cache[key] = memmap_tensor(self._files[shard], name)
        return self._cache[key]

    def _locate(self, index: int) -> tuple[int, int]:
        if not -self._rows <= index < self._rows:
            raise IndexError(f"row {index} out of range for a dataset of {self._rows} rows")
        index %= self._rows
        k = bisect.bisect_right(self._starts, index) - 1
        return self._filled[k], index - self._starts[k]

    def __getitem__(self, index: int) -> dict[str, Any]:
        shard, row = self._locate(int(index))
        item = int(self._column(shard, "item")[row])
        values = torch.from_numpy(np.array(self._column(shard, self.field)[row]))
        out: dict[str, Any] = {
            self.field: values.long() if self.field == "ids" else values.float(),
            "length": int(self._column(shard, "lengths")[row]),
            "source": self._items[item]["path"],
            "name": self._items[item]["name"],
            "item": item,
            "view": int(self._column(shard, "view")[row]),
            "bits": float(self._column(shard, "bits")[row]),
        }
        return out

    def _concat(self, name: str) -> np.ndarray:
        parts = [self._column(s, name) for s in range(len(self._files))]
        return np.concatenate(parts) if parts else np.zeros(0)

    def ids(self) -> Tensor:
        """Every row's ids: long ``[len, *token_shape]`` (loaded into memory).

        Raises:
            TypeError: for continuous datasets (use :meth:`latents`).
        """
        if self.field != "ids":
            raise TypeError(f"{self.path}: continuous tokens ({self.tokenizer}); use latents()")
        return torch.from_numpy(self._concat("ids").astype(np.int64)).reshape(len(self), *self.token_shape)

    def latents(self) -> Tensor:
        """Every row's latents: float32 ``[len, *token_shape]``.

        Raises:
            TypeError: for discrete datasets (use :meth:`ids`).
        """
        if self.field != "latents":
            raise TypeError(f"{self.path}: discrete tokens ({self.tokenizer}); use ids()")
        return torch.from_numpy(self._concat("latents").astype(np.float32)).reshape(
            len(self), *self.token_shape
        )

    def lengths(self) -> Tensor:
        """Valid tokens of every row: long ``[len]``."""
        return torch.from_numpy(self._concat("lengths").astype(np.int64))

    def items(self) -> Tensor:
        """Source-image index of every row: long ``[len]`` (rows of one image share it)."""
        return torch.from_numpy(self._concat("item").astype(np.int64))

    def views(self) -> Tensor:
        """View index of every row: long ``[len]``."""
        return torch.from_numpy(self._concat("view").astype(np.int64))

    def item_record(self, item: int) -> dict[str, Any]:
        """The manifest's record of source image ``item`` (path, name, sha256, size, fit)."""
        return self._items[item]

    def __repr__(self) -> str:
        return (
            f"TokenDataset({str(self.path)!r}, rows={len(self)}, tokenizer={self.tokenizer!r}, "
            f"token_shape={self.token_shape}, layout={self.layout!r})"
        )
