"""Score reconstructions made by external code: ``vistok bench --reconstructions DIR``.

The folder mirrors the data's relative paths (``DIR/<rel>`` with a ``.png`` suffix, or the
original suffix). A reconstruction at the **evaluation geometry** (the protocol's fitted
square, what ``vistok bench --save-reconstructions`` writes) is used as is, so the numbers
equal the in-process run exactly; one at the **original geometry** is fitted like the
original (padded, resized) first. Any other size, or a missing file, is listed and skipped.
Rates come from ``--bits-per-image`` or a rate table (JSON ``{rel: bits}`` or CSV ``rel,bits``).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
from torch import Tensor

from vistok.data.images import ImageLoadError, load_image_uint8
from vistok.data.transforms import Fit, apply_fit
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens

__all__ = ["PrecomputedReconstructions", "read_rate_table"]


def read_rate_table(path: str | Path) -> dict[str, float]:
    """``{relative path: bits}`` from a JSON object or a two-column CSV (``file,bits``)."""
    p = Path(path)
    try:
        if p.suffix.lower() == ".json":
            return {str(k): float(v) for k, v in json.loads(p.read_text()).items()}
        with p.open(newline="") as f:
            rows = [r for r in csv.reader(f) if r and not r[0].startswith("#")]
        if rows and rows[0][0].strip().lower() in {"file", "path"}:
            rows = rows[1:]
        return {r[0].strip(): float(r[1]) for r in rows}
    except (OSError, ValueError, IndexError, json.JSONDecodeError) as e:
        raise ValueError(f"{p}: cannot read the rate table ({e})") from None


class PrecomputedReconstructions(Tokenizer):
    """A stand-in 'tokenizer' whose reconstructions are files on disk (``kind = "codec"``)."""

    kind = "codec"

    def __init__(
        self,
        root: str | Path,
        *,
        bits_per_image: float | None = None,
        rates: dict[str, float] | None = None,
        stride: int = 1,
    ):
        super().__init__()
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"{self.root}: reconstructions folder not found")
        self.bits_per_image = bits_per_image
        self.rates = rates or {}
        self.stride = stride
        self.spec = self.family = self.registry_name = f"reconstructions:{self.root}"

    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        raise NotImplementedError("precomputed reconstructions are looked up by file, not encoded")

    def decode(self, tokens: Tokens) -> Tensor:
        raise NotImplementedError("precomputed reconstructions are looked up by file, not decoded")

    def _bits(self, rel: str) -> float:
        if rel in self.rates:
            return self.rates[rel]
        return self.bits_per_image if self.bits_per_image is not None else math.nan

    def lookup(self, rel: str, fit: Fit) -> tuple[np.ndarray, float] | str:
        """The reconstruction of ``rel`` at the evaluation geometry, or why it is unusable."""
        candidates = [self.root / Path(rel).with_suffix(".png"), self.root / rel]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            return f"no reconstruction found (looked for {candidates[0]})"
        try:
            rec = load_image_uint8(path)
        except ImageLoadError as e:
            return f"reconstruction unreadable: {e.reason}"
        if rec.shape[:2] == (fit.size_h, fit.size_w):
            return rec, self._bits(rel)
        if rec.shape[:2] == (fit.orig_h, fit.orig_w):
            return apply_fit(rec, fit), self._bits(rel)
        return (
            f"reconstruction {path.name} is {rec.shape[1]}x{rec.shape[0]}; expected the evaluation size "
            f"{fit.size_w}x{fit.size_h} or the original {fit.orig_w}x{fit.orig_h}"
        )

    def describe(self) -> dict[str, object]:
        d = super().describe()
        d["adapter"] = {
            "kind": "precomputed reconstructions",
            "root": str(self.root),
            "bits_per_image": self.bits_per_image,
            "rate_table_entries": len(self.rates),
        }
        return d
