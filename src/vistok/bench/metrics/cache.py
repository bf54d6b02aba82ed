"""Features of the *originals*, computed once per run instead of once per point.

Every point of a bench run scores its reconstructions against the same originals, so the
originals' side of a feature metric (FD's pooled features, DFD's feature maps) is the same
at every point. :data:`ORIGINALS` keeps those per image, keyed by a digest of the image's
exact values (so a changed image, size or protocol is a miss, never a stale hit) and by a
namespace naming the network, its preprocessing and the device.

The cache is bounded in bytes (:data:`MAX_BYTES`): once full it keeps what it holds and
stores nothing more (a run over more images than fit still reuses the first ones; an LRU
would reuse none of a scan longer than itself). ``vistok bench`` clears it at the start and
the end of a run. Results are the same with or without it: a hit returns the tensors the
same computation produced.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable, Sequence

import torch
from torch import Tensor

__all__ = ["MAX_BYTES", "ORIGINALS", "FeatureCache", "image_digest"]

MAX_BYTES = 256 * 2**20


def image_digest(image: Tensor) -> bytes:
    """A digest of one image's exact values, dtype and shape (``[C, H, W]``, any dtype)."""
    x = image.detach().contiguous().cpu()
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{x.dtype}{tuple(x.shape)}".encode())
    h.update(x.view(torch.uint8).numpy().tobytes() if x.numel() else b"")
    return h.digest()


class FeatureCache:
    """Per-image tensors keyed by ``(namespace, image digest)``, at most ``max_bytes`` in all."""

    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.hits = self.misses = 0
        self._items: dict[tuple[Hashable, bytes], tuple[Tensor, ...]] = {}

    def clear(self) -> None:
        self._items.clear()
        self.nbytes = self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def rows(
        self, namespace: Hashable, images: Tensor, compute: Callable[[Tensor], Sequence[Tensor]]
    ) -> list[Tensor]:
        """``compute(images)`` — a list of tensors, each ``[B, ...]`` — with cached images skipped.

        Args:
            namespace: what, besides the image, the result depends on (network, preprocessing,
                device).
            images: ``[B, C, H, W]``.
            compute: the batched computation; called once, on the images not cached (if any).

        Returns:
            The same list ``compute(images)`` would return, each tensor ``[B, ...]``.
        """
        keys = [(namespace, image_digest(im)) for im in images]
        missing = [i for i, k in enumerate(keys) if k not in self._items]
        self.hits += len(keys) - len(missing)
        self.misses += len(missing)
        fresh: dict[int, tuple[Tensor, ...]] = {}
        if missing:
            out = compute(images[missing] if len(missing) < len(keys) else images)
            for j, i in enumerate(missing):
                fresh[i] = tuple(t[j] for t in out)
                self._store(keys[i], fresh[i])
        per_image = [fresh[i] if i in fresh else self._items[k] for i, k in enumerate(keys)]
        return [torch.stack([row[n] for row in per_image]) for n in range(len(per_image[0]))]

    def _store(self, key: tuple[Hashable, bytes], row: tuple[Tensor, ...]) -> None:
        size = sum(t.numel() * t.element_size() for t in row)
        if self.nbytes + size > self.max_bytes:
            return
        # clone: a view would keep the whole batch's storage alive
        self._items[key] = tuple(t.clone() for t in row)
        self.nbytes += size


ORIGINALS = FeatureCache()
