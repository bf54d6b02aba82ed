"""Token reduction: wall-clock speed-up, analytic FLOPs, exactness and fidelity of every method.

The same measurement as ``vistok reduce-bench`` (see :mod:`vistok.reduce.bench` and
docs/reduction.md), runnable as a script:

    python benchmarks/reduction.py                              # all methods, keep 0.75/0.5/0.25 + ToMe r=13
    python benchmarks/reduction.py --methods tome --keeps 0.5 --batch 8 --rounds 5
    python benchmarks/reduction.py --weights ./my-clip-folder   # + cosine fidelity on trained weights

Speed-ups are ratios measured side by side in one run (interleaved rounds after a
warm-up, best round each) on ``--threads`` CPU threads (2 by default).
"""

from __future__ import annotations

import argparse
import sys

from vistok.reduce.bench import add_command

if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="reduction.py")
    sub = parser.add_subparsers()
    add_command(sub)
    args = parser.parse_args(["reduce-bench", *sys.argv[1:]])
    sys.exit(args.func(args))
