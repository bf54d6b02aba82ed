"""Every number of a bench result except timings, flattened: the refactoring guard."""

from __future__ import annotations

import math
from typing import Any

TIMING_KEYS = {"wall_s", "seconds", "speed", "peak_rss_mb"}


def numbers(results: dict[str, Any]) -> dict[str, float]:
    """``{"<point index>/<key>/<key>...": value}`` for every number in ``results["points"]``
    (ints, floats and bools), timings (:data:`TIMING_KEYS`) left out; nan kept as a string."""
    out: dict[str, float] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                if k not in TIMING_KEYS:
                    walk(f"{prefix}/{k}", x)
        elif isinstance(v, list):
            for i, x in enumerate(v):
                walk(f"{prefix}/{i}", x)
        elif isinstance(v, bool | int | float):
            out[prefix] = "nan" if isinstance(v, float) and math.isnan(v) else v  # type: ignore[assignment]

    for i, p in enumerate(results["points"]):
        walk(str(i), p)
    return out
