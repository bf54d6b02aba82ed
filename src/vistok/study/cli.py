"""``vistok study NAME [NAME ...] | --all | --list [-o DIR] [--quick] [--seeds N] [--docs FILE]``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

__all__ = ["add_command"]


def cmd_study(args: argparse.Namespace) -> int:
    from vistok.cli import UsageError
    from vistok.study import FULL, QUICK, STUDIES
    from vistok.study.context import StudyContext
    from vistok.study.report import markdown, update_doc
    from vistok.study.runner import run_study

    if args.list:
        for entry in STUDIES.entries():
            study = STUDIES.create(entry.name)
            print(f"{entry.name:28s} {study.claim} ({study.paper})")
        return 0
    names = STUDIES.names() if args.all else list(args.names)
    if not names:
        raise UsageError("name one or more studies, or --all, or --list")
    if args.all and args.names:
        raise UsageError("--all runs every study; do not name studies with it")
    if args.docs and args.quick:
        raise UsageError(
            "--docs takes full runs only: quick runs are smoke tests and their numbers mean nothing"
        )
    studies = [STUDIES.create(n) for n in names]  # unknown names fail before anything trains
    ctx = StudyContext(Path(args.output), QUICK if args.quick else FULL, quick=args.quick,
                       progress=not args.no_progress)  # fmt: skip
    results = []
    for name, study in zip(names, studies):
        print(f"study {name}: {study.claim}", file=sys.stderr)
        r = run_study(study, ctx, list(range(args.seeds)))
        results.append(r)
        print(f"  -> {r['verdict']} ({r['cpu_seconds'] / 60:.1f} CPU-min); {Path(args.output) / name}/results.json",
              file=sys.stderr)  # fmt: skip
    table = markdown(results)
    from vistok.utils.io import atomic_write_text

    atomic_write_text(Path(args.output) / "mechanisms.md", table)
    atomic_write_text(Path(args.output) / "summary.json",
                      json.dumps({r["study"]: {"verdict": r["verdict"], "checks": r["checks"]} for r in results},
                                 indent=1))  # fmt: skip
    if args.docs:
        update_doc(args.docs, results)
    print(table)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("study", help="with-and-without studies of the seed mechanisms (docs/mechanisms.md)")
    p.add_argument("names", nargs="*", help="studies to run (vistok study --list)")
    p.add_argument("--all", action="store_true", help="run every registered study")
    p.add_argument("--list", action="store_true", help="list the studies and their claims")
    p.add_argument("-o", "--output", default="runs/studies", help="output folder (default runs/studies)")
    p.add_argument("--quick", action="store_true", help="smoke run: 3 steps at 32², sample images only")
    p.add_argument("--seeds", type=int, default=2, help="seeds per arm (default 2)")
    p.add_argument(
        "--docs",
        default=None,
        metavar="FILE",
        help="also rewrite, in FILE (docs/mechanisms.md), the rows and sections of the studies run (others are kept)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_study)
