"""`Tokens`: what every tokenizer's ``encode`` returns and ``decode`` takes back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vistok.utils.io import atomic_write_bytes

__all__ = ["BATCH_META", "Tokens"]

_FORMAT = "vistok.tokens/1"

# ``meta`` keys that describe the whole batch: never sliced by ``tokens[i]``, even when their
# list happens to be as long as the batch (``size = [H, W]`` of a batch of two). Every other
# list as long as the batch holds one entry per image (``payloads``, ``over_budget``, ...).
BATCH_META = frozenset({"size", "format"})


@dataclass
class Tokens:
    """Tokens of a batch of images.

    Attributes:
        ids: discrete indices, long ``[B, N]`` (1D), ``[B, h, w]`` (2D) or ``[..., K]``
            (K codebooks); ``None`` for continuous tokenizers and codecs.
        latents: continuous latents, float ``[B, N, C]`` or ``[B, C, h, w]``; ``None``
            for discrete tokenizers and codecs.
        lengths: long ``[B]`` number of kept tokens per image for variable-length
            sequences (entries past the length are padding); ``None`` when fixed.
        bits: float64 ``[B]``: the rate of each image in bits (see docs/protocol.md).
        meta: anything else the decoder needs (original size, codec payloads as
            ``bytes`` under ``"payloads"``). JSON-serializable apart from ``bytes``.
    """

    bits: Tensor
    ids: Tensor | None = None
    latents: Tensor | None = None
    lengths: Tensor | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ids is None and self.latents is None and "payloads" not in self.meta:
            raise ValueError("Tokens need ids, latents or codec payloads")
        self.bits = torch.as_tensor(self.bits, dtype=torch.float64).reshape(-1)

    @property
    def batch_size(self) -> int:
        return int(self.bits.shape[0])

    def bits_per_pixel(self, height: int, width: int) -> Tensor:
        """float64 ``[B]``: bits per pixel of an ``height`` x ``width`` original image."""
        return self.bits / float(height * width)

    def to(self, device: torch.device | str) -> Tokens:
        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return Tokens(
            bits=self.bits,
            ids=mv(self.ids),
            latents=mv(self.latents),
            lengths=mv(self.lengths),
            meta=dict(self.meta),
        )

    def __getitem__(self, index: int | slice) -> Tokens:
        """The tokens of a sub-batch (``tokens[i]`` keeps a batch dimension of 1)."""
        sl = slice(index, index + 1) if isinstance(index, int) else index

        def cut(t: Tensor | None) -> Tensor | None:
            return None if t is None else t[sl]

        meta = {
            k: (v[sl] if isinstance(v, list) and len(v) == self.batch_size and k not in BATCH_META else v)
            for k, v in self.meta.items()
        }
        return Tokens(
            bits=self.bits[sl],
            ids=cut(self.ids),
            latents=cut(self.latents),
            lengths=cut(self.lengths),
            meta=meta,
        )

    # ---- files --------------------------------------------------------------------------
    def save(self, path: str | Path, *, tokenizer: str) -> None:
        """Write a ``.vtok`` file (safetensors; metadata JSON) atomically.

        Args:
            path: target file.
            tokenizer: spec or checkpoint path that rebuilds the tokenizer for decoding.
        """
        from safetensors.torch import save

        tensors: dict[str, Tensor] = {"bits": self.bits}
        for name in ("ids", "latents", "lengths"):
            t = getattr(self, name)
            if t is not None:
                tensors[name] = t.detach().cpu().contiguous()
        meta = dict(self.meta)
        payloads = meta.pop("payloads", None)
        if payloads is not None:
            for i, p in enumerate(payloads):
                tensors[f"payload.{i}"] = (
                    torch.frombuffer(bytearray(p), dtype=torch.uint8)
                    if p
                    else torch.zeros(0, dtype=torch.uint8)
                )
            meta["num_payloads"] = len(payloads)
        header = {"format": _FORMAT, "tokenizer": tokenizer, "meta": json.dumps(meta)}
        atomic_write_bytes(Path(path), save(tensors, metadata=header))

    @classmethod
    def load(cls, path: str | Path) -> tuple[Tokens, str]:
        """Read a ``.vtok`` file; returns the tokens and the tokenizer spec/path it names.

        Raises:
            ValueError: naming the file when it is not a vistok tokens file.
        """
        from safetensors import safe_open

        path = Path(path)
        try:
            with safe_open(str(path), framework="pt") as f:
                header = f.metadata() or {}
                tensors = {k: f.get_tensor(k) for k in f.keys()}
        except Exception as e:  # safetensors raises several types for bad files
            raise ValueError(f"{path}: not a vistok tokens file ({e})") from None
        if header.get("format") != _FORMAT:
            raise ValueError(f"{path}: not a vistok tokens file (format {header.get('format')!r})")
        meta = json.loads(header["meta"])
        n = meta.pop("num_payloads", None)
        if n is not None:
            meta["payloads"] = [tensors[f"payload.{i}"].numpy().tobytes() for i in range(n)]
        tok = cls(
            bits=tensors["bits"],
            ids=tensors.get("ids"),
            latents=tensors.get("latents"),
            lengths=tensors.get("lengths"),
            meta=meta,
        )
        return tok, header["tokenizer"]
