"""Cost of the default `vistok bench` run for one tokenizer: wall time and peak RSS.

Target (issue 6): <= 4 minutes and <= 2 GB peak RSS on 2 CPU cores for one tokenizer on
the built-in samples with every suite. Each case runs in a fresh subprocess so the peak
RSS is that run's own (the child records its ``ru_maxrss`` in results.json).

    python benchmarks/bench_cost.py [-t SPEC ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run_case(spec: str, extra: list[str]) -> tuple[float, float, int]:
    with tempfile.TemporaryDirectory() as out:
        cmd = [
            sys.executable,
            "-m",
            "vistok",
            "bench",
            "-t",
            spec,
            "--no-sweep",
            "-o",
            out,
            "--name",
            "cost",
            *extra,
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            print(proc.stdout[-2000:], proc.stderr[-2000:], file=sys.stderr)
            return wall, float("nan"), proc.returncode
        # the child's own peak RSS (ru_maxrss of its process), recorded in its results
        peak = json.loads((Path(out) / "cost" / "results.json").read_text())["peak_rss_mb"]
        return wall, float(peak), proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-t", "--tokenizer", action="append", default=None)
    args = ap.parse_args()
    specs = args.tokenizer or ["jpeg:quality=50", "webp:quality=50"]
    print(f"{'tokenizer':<24} {'wall s':>8} {'peak RSS MB':>12} {'<=240 s':>8} {'<=2048 MB':>10}")
    for spec in specs:
        wall, peak, rc = run_case(spec, [])
        status = "" if rc == 0 else f"  (exit {rc})"
        print(
            f"{spec:<24} {wall:8.1f} {peak:12.0f} {'yes' if wall <= 240 else 'NO':>8} "
            f"{'yes' if peak <= 2048 else 'NO':>10}{status}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
