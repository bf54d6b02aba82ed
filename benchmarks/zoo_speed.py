"""Encode + decode time of each published family, vistok's port against the official code, side by side.

    python benchmarks/zoo_speed.py --checkout llamagen=/tmp/official/LlamaGen \
        --checkout var=/tmp/official/VAR ... [--repeats 5] [--threads 2] [--json out.json]

Each ``--checkout FAMILY=PATH`` names a fixture module of ``scripts/official_fixtures/`` and a
checkout of its official repository. The module's ``speed_models(checkout)`` builds, for each
published name, the official model and vistok's at the full official configuration with the
same random weights; both take float images ``[1, 3, 256, 256]`` in ``[0, 1]`` and return the
reconstruction. Every repetition times official and vistok back to back (interleaved, so load
changes hit both), after one warm-up call each; the table reports medians, the ratio
official / vistok (> 1: vistok is faster) and the largest absolute difference of the two
reconstructions, so a speed-up that broke parity shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from make_official_fixtures import family_module  # noqa: E402


def _image(size: int = 256) -> torch.Tensor:
    """astronaut, centre-cropped to a square and resized: float ``[1, 3, size, size]`` in [0, 1]."""
    from PIL import Image
    from skimage import data

    img = data.astronaut()
    s = min(img.shape[:2])
    img = Image.fromarray(np.ascontiguousarray(img[:s, :s])).resize((size, size), Image.BICUBIC)
    return torch.from_numpy(np.asarray(img)).permute(2, 0, 1)[None].float() / 255.0


def _time(fn, x: torch.Tensor) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    with torch.no_grad():
        y = fn(x)
    return time.perf_counter() - t0, y


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkout", action="append", default=[], metavar="FAMILY=PATH", required=True)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated names to time (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    only = {n for n in args.only.split(",") if n}
    x = _image()
    rows = []
    print(f"threads={args.threads} repeats={args.repeats} torch={torch.__version__} input 1x3x256x256")
    print(f"{'name':24s} {'official ms':>12s} {'vistok ms':>10s} {'ratio':>6s} {'max|diff|':>10s}")
    for item in args.checkout:
        family, _, path = item.partition("=")
        mod = family_module(family)
        sys.path.insert(0, str(Path(path).resolve()))
        for name, official, ours in mod.speed_models(Path(path).resolve()):
            if only and name not in only:
                continue
            _time(official, x)
            _time(ours, x)
            t_off, t_ours = [], []
            for _ in range(args.repeats):
                t, y_off = _time(official, x)
                t_off.append(t)
                t, y_ours = _time(ours, x)
                t_ours.append(t)
            diff = float((y_off.float() - y_ours.float()).abs().max())
            m_off, m_ours = statistics.median(t_off) * 1e3, statistics.median(t_ours) * 1e3
            row = {
                "name": name,
                "official_ms": round(m_off, 1),
                "vistok_ms": round(m_ours, 1),
                "ratio": round(m_off / m_ours, 2),
                "max_abs_diff": diff,
            }
            rows.append(row)
            print(f"{name:24s} {m_off:12.1f} {m_ours:10.1f} {m_off / m_ours:6.2f} {diff:10.2e}", flush=True)
    if args.json:
        args.json.write_text(
            json.dumps({"threads": args.threads, "repeats": args.repeats, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
