"""``vistok train CONFIG [--set a.b=c ...] [--resume] [--out DIR]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_command"]


def cmd_train(args: argparse.Namespace) -> int:
    from vistok.cli import UsageError
    from vistok.registry import SpecError
    from vistok.train.config import ConfigError, load_config
    from vistok.train.trainer import TrainingDiverged, train

    try:
        cfg = load_config(args.config, args.set or [])
    except ConfigError as e:
        raise UsageError(str(e)) from None
    out = Path(args.out) if args.out else Path("runs") / Path(args.config).stem
    try:
        summary = train(cfg, out, resume=args.resume)
    except (SpecError, FileNotFoundError, ValueError) as e:  # bad spec, data or option: usage error
        raise UsageError(str(e)) from None
    except TrainingDiverged as e:  # NaN/Inf: the message names the step and term
        print(f"vistok train: {e}", file=sys.stderr)
        return 1
    finally:
        from vistok.train.dist import cleanup

        cleanup()
    if summary["model"] is not None:
        note = " (stopped at schedule.max_minutes)" if summary["stopped_early"] else ""
        print(
            f"trained {summary['step']} steps{note}; model: {summary['model']} (vistok.load / vistok bench -t)"
        )
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("train", help="train a tokenizer from a YAML recipe (torchrun for DDP)")
    p.add_argument("config", help="recipe YAML (see configs/ and docs/training.md)")
    p.add_argument(
        "--set", action="append", metavar="SECTION.KEY=VALUE", help="override a recipe key (repeatable)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in --out")
    p.add_argument("--out", default=None, help="run folder (default: runs/<recipe name>)")
    p.set_defaults(func=cmd_train)
