"""Encode + decode time of each published family, vistok's port against the official code, side by side.

    python benchmarks/zoo_speed.py --checkout llamagen=/tmp/official/LlamaGen \
        --checkout var=/tmp/official/VAR ... [--repeats 6] [--threads 2] [--json out.json]

Each ``--checkout FAMILY=PATH`` names a fixture module of ``scripts/official_fixtures/`` and a
checkout of its official repository. The module's ``speed_models(checkout)`` builds, for each
published name, the official model and vistok's at the full official configuration with the
same random weights; both take float images ``[1, 3, 256, 256]`` in ``[0, 1]`` and return the
reconstruction. Every repetition times official and vistok back to back (interleaved, so load
changes hit both; the order alternates, so neither side always runs second on a warm cache),
after one warm-up call each. Each family runs in its own process (the checkouts' packages share
names). The table reports medians, the ratio official / vistok (> 1: vistok is faster) and the
largest absolute difference of the two reconstructions, so a speed-up that broke parity shows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
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


def _family_rows(family: str, path: Path, x: torch.Tensor, repeats: int, only: set[str]) -> list[dict]:
    """Time every speed model of one family (in this process)."""
    mod = family_module(family)
    sys.path.insert(0, str(path))
    rows = []
    for name, official, ours in mod.speed_models(path):
        if only and name not in only:
            continue
        _time(official, x)
        _time(ours, x)
        t_off, t_ours = [], []
        for i in range(repeats):  # A B, then B A: neither side always runs on a warmer cache
            pair = ((official, t_off), (ours, t_ours)) if i % 2 == 0 else ((ours, t_ours), (official, t_off))
            for fn, sink in pair:
                t, y = _time(fn, x)
                sink.append(t)
                if fn is official:
                    y_off = y
                else:
                    y_ours = y
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
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkout", action="append", default=[], metavar="FAMILY=PATH", required=True)
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated names to time (default: all)")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows here")
    ap.add_argument("--rows-to", type=Path, default=None, help=argparse.SUPPRESS)  # child process
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    only = {n for n in args.only.split(",") if n}
    x = _image()
    if args.rows_to is not None:  # one family, in a child process
        family, _, path = args.checkout[0].partition("=")
        rows = _family_rows(family, Path(path).resolve(), x, args.repeats, only)
        args.rows_to.write_text(json.dumps(rows))
        return 0
    print(f"threads={args.threads} repeats={args.repeats} torch={torch.__version__} input 1x3x256x256")
    print(
        f"{'name':24s} {'official ms':>12s} {'vistok ms':>10s} {'ratio':>6s} {'max|diff|':>10s}", flush=True
    )
    rows: list[dict] = []
    failed = []
    for item in args.checkout:
        # each family in its own process: official checkouts share package names (``modeling``
        # in 1d-tokenizer and One-D-Piece, ``models`` in VAR and MAR), and models are freed
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.json"
            cmd = [sys.executable, __file__, "--checkout", item, "--repeats", str(args.repeats)]
            cmd += ["--threads", str(args.threads), "--only", args.only, "--rows-to", str(out)]
            rc = subprocess.run(cmd, check=False).returncode
            if rc != 0 or not out.is_file():
                failed.append(item)
                print(f"{item}: failed (exit {rc})", flush=True)
                continue
            rows.extend(json.loads(out.read_text()))
    if args.json:
        doc = {"threads": args.threads, "repeats": args.repeats, "torch": torch.__version__, "rows": rows}
        args.json.write_text(json.dumps(doc, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
