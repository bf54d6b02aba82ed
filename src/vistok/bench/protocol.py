"""The benchmark protocol, versioned and recorded in every result (docs/protocol.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vistok.data.transforms import PadMode

__all__ = ["PROTOCOL_VERSION", "Protocol"]

PROTOCOL_VERSION = "vistok-protocol/1"


@dataclass(frozen=True)
class Protocol:
    """Geometry and rounding of the protocol.

    Attributes:
        size: evaluation size: images are padded to square, resized to ``size`` x ``size``,
            reconstructed, resized back and cropped (TokBench). A tokenizer with a fixed
            native size sees the evaluation square resized to its size and back, so every
            tokenizer is scored on the same square (recorded per point).
        pad_mode: how the square padding is filled.
    """

    size: int = 256
    pad_mode: PadMode = "reflect"

    def describe(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "pad_mode": self.pad_mode,
            "inputs": "decoded to 8-bit sRGB (vistok.data.images policy), float in [0, 1]",
            "geometry": "pad to square (centred) -> resize to size (Pillow bicubic, antialiased) -> "
            "[resize to a fixed-size model's input and back] -> reconstruct -> resize back -> crop the padding",
            "rounding": "reconstructions rounded to 8 bits before any metric",
            "pixel_metrics_at": "the evaluation square (size x size, padding included)",
            "text_face_at": "the original geometry (annotation coordinates)",
            "rate_axis": "bpp = bits / (size * size); bpp_original = bits / original pixels",
            "equal_bytes": "a codec at a learned point's bytes: per-image budget ceil(bits / 8); its rate is "
            "its true file size, headers included (over-budget files counted, never clipped)",
        }
