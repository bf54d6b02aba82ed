"""Cost of `vistok bench`: wall time and peak RSS of single points, the default run and `--full`.

Targets (docs/protocol.md, "Cost"): the default run (`vistok bench`, no arguments) in
<= 4 minutes and <= 1.5 GB peak RSS on 2 CPU cores, on a quiet machine; `--full` has no
target (it is reported). Each case runs in a fresh subprocess, so its peak RSS is that run's
own (the child records its ``ru_maxrss`` in results.json), and one at a time.

    python benchmarks/bench_cost.py                  # points, the default run, --full
    python benchmarks/bench_cost.py --skip-full      # without the ~10-minute full sweep
    python benchmarks/bench_cost.py -t jpeg:quality=50 -t vistok-f8   # only these points
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_WALL_S = 240.0
DEFAULT_RSS_MB = 1536.0
POINTS = ["jpeg:quality=50", "vistok-f8", "vistok-1d@32"]


def run_case(args: list[str]) -> tuple[float, float, int, int]:
    """``vistok bench ARGS`` in a fresh process: (wall s, peak RSS MB, points, exit code)."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "vistok", "bench", *args, "-o", out, "--name", "cost"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return wall, float("nan"), 0, proc.returncode
        res = json.loads((Path(out) / "cost" / "results.json").read_text())
        return wall, float(res["peak_rss_mb"]), len(res["points"]), 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", "--tokenizer", action="append", default=None, help="time only these points")
    ap.add_argument("--skip-full", action="store_true", help="leave out `vistok bench --full`")
    args = ap.parse_args()
    cases: list[tuple[str, list[str], bool]] = [
        (f"one point: {s}", ["-t", s, "--no-sweep"], False) for s in (args.tokenizer or POINTS)
    ]
    if not args.tokenizer:
        cases.append(("the default run: vistok bench", [], True))
        if not args.skip_full:
            cases.append(("the full sweep: vistok bench --full", ["--full"], False))
    print(f"{'run':<44} {'points':>6} {'wall s':>8} {'peak RSS MB':>12}  target")
    failed = False
    for name, argv, has_target in cases:
        wall, peak, n, rc = run_case(argv)
        note = f"exit {rc}" if rc else ""
        if has_target and not rc:
            ok = wall <= DEFAULT_WALL_S and peak <= DEFAULT_RSS_MB
            note = f"<= {DEFAULT_WALL_S:.0f} s and <= {DEFAULT_RSS_MB:.0f} MB: {'yes' if ok else 'NO'}"
            failed |= not ok
        failed |= bool(rc)
        print(f"{name:<44} {n:>6} {wall:8.1f} {peak:12.0f}  {note}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
