"""``vistok bench`` and ``vistok report`` subcommands."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

__all__ = ["DEFAULT_EQUAL_BYTES", "DEFAULT_TOKENIZERS", "FULL_TOKENIZERS", "add_command"]

# The default run (``vistok bench``), sized for a newcomer's first look (about 3 minutes on
# 2 cores, docs/protocol.md "Cost"): the two shipped tokenizers — vistok-1d at a short, a
# middle and its full prefix — JPEG and WebP at low, middle and high quality, and the
# protocol's own upper bound (lossless PNG: only the resize remains).
DEFAULT_TOKENIZERS = [
    "vistok-f8",
    "vistok-1d@8",
    "vistok-1d@32",
    "vistok-1d@256",
    "jpeg:quality=15",
    "jpeg:quality=50",
    "jpeg:quality=90",
    "webp:quality=10",
    "webp:quality=50",
    "webp:quality=90",
    "png",
]
# ``vistok bench --full``: the complete sweep — vistok-1d at 1, 2, 4, ... 256 tokens, the
# vistok-pca baseline at every token count, JPEG and WebP at six qualities each.
FULL_TOKENIZERS = ["vistok-f8", "vistok-1d", "vistok-pca", "jpeg", "webp", "png"]
# ... and, in both, at each learned point's own per-image bytes, a thumbnail (the only codec
# that reaches the rates of a few 1D tokens) and full-size WebP (docs/protocol.md, "Equal bytes").
DEFAULT_EQUAL_BYTES = ["thumbnail", "webp"]


def _default_specs(full: bool = False) -> list[str]:
    """The default run's specs whose tokenizer is registered here (a family another package
    provides may be absent)."""
    import vistok

    names = set(vistok.list())
    specs = FULL_TOKENIZERS if full else DEFAULT_TOKENIZERS
    return [s for s in specs if s.split(":")[0].split("@")[0] in names]


def cmd_bench(args: argparse.Namespace) -> int:
    from vistok.bench.data import load_data
    from vistok.bench.protocol import Protocol
    from vistok.bench.report import write_report
    from vistok.bench.runner import BenchConfig, run_bench
    from vistok.cli import UsageError
    from vistok.registry import SpecError

    default_run = not args.tokenizer and not args.reconstructions
    if args.full and not default_run:
        raise UsageError("--full is the default run's complete sweep: give it without -t/--reconstructions")
    specs = args.tokenizer or ([] if args.reconstructions else _default_specs(args.full))
    equal_bytes = args.equal_bytes if args.equal_bytes is not None else []
    if args.equal_bytes is None and default_run:
        equal_bytes = list(DEFAULT_EQUAL_BYTES)
    equal_bytes = [s for s in equal_bytes if s.lower() != "none"]
    suites = (
        tuple(n.strip() for n in args.suites.split(",") if n.strip()) if args.suites else BenchConfig.suites
    )
    cfg = BenchConfig(
        protocol=Protocol(size=args.size, pad_mode=args.pad),
        suites=suites,
        fd_features=args.features,
        seed=args.seed,
        device=args.device,
    )
    try:
        cfg.validate()  # unknown suites or feature networks: "did you mean", before any work
        data = load_data(args.data, args.annotations).subset(args.limit)
    except (ValueError, FileNotFoundError) as e:  # SpecError is a ValueError
        raise UsageError(str(e)) from None
    out = Path(args.output) / (args.name or time.strftime("run-%Y%m%d-%H%M%S"))
    import vistok

    create = vistok.create
    if args.reconstructions:
        from vistok.bench.precomputed import PrecomputedReconstructions, read_rate_table

        try:
            rates = read_rate_table(args.rates) if args.rates else None
            pre = PrecomputedReconstructions(
                args.reconstructions, bits_per_image=args.bits_per_image, rates=rates
            )
        except ValueError as e:
            raise UsageError(str(e)) from None
        specs = [pre.spec, *specs]

        def create(spec: str) -> object:  # type: ignore[misc]
            return pre if spec == pre.spec else vistok.create(spec)

    try:
        results = run_bench(
            specs,
            data,
            cfg,
            out,
            sweep=not args.no_sweep,
            create=create,  # type: ignore[arg-type]
            save_reconstructions=args.save_reconstructions,
            equal_bytes=equal_bytes,
        )
    except SpecError as e:
        raise UsageError(str(e)) from None
    if results is None:  # a non-zero rank of a sharded run
        return 0
    md, html_path = write_report(results, out)
    print(md.read_text())
    print(f"results: {out / 'results.json'}\nreport:  {html_path}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from vistok.bench.report import leaderboard, load_results, write_report
    from vistok.cli import UsageError

    try:
        if len(args.runs) == 1 and not args.output:
            res = load_results(args.runs[0])
            md, html_path = write_report(res, Path(args.runs[0]))
            print(f"wrote {md} and {html_path}")
            return 0
        text = leaderboard(args.runs)
    except ValueError as e:
        raise UsageError(str(e)) from None
    if args.output:
        from vistok.utils.io import atomic_write_text

        atomic_write_text(Path(args.output), text)
    print(text)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("bench", help="measure tokenizers on the protocol (default: samples, codecs)")
    p.add_argument(
        "-t",
        "--tokenizer",
        action="append",
        help="tokenizer spec or checkpoint (repeatable); a bare codec name sweeps its quality",
    )
    p.add_argument(
        "--data",
        default="samples",
        help="samples, samples:photos+text+faces, corpus:heldout (the photo corpus, docs/data.md), or a folder",
    )
    p.add_argument("--annotations", action="append", help="text/face annotation JSON for --data DIR")
    p.add_argument("--size", type=int, default=256, help="evaluation size (256, 512, 1024)")
    p.add_argument("--pad", choices=["reflect", "constant", "edge"], default="reflect")
    p.add_argument(
        "--suites",
        default=None,
        help="comma list of recon,text,face,codebook,robustness,speed (default: all)",
    )
    p.add_argument("--features", default="mobilenet_v2", help="FD feature network (mobilenet_v2 | inception)")
    p.add_argument("--no-sweep", action="store_true", help="use each spec as given (no quality/token sweep)")
    p.add_argument(
        "--full",
        action="store_true",
        help="the default run's complete sweep: vistok-1d and vistok-pca at every token count, "
        "JPEG and WebP at six qualities (about 4x the default run's time)",
    )
    p.add_argument("--limit", type=int, default=None, help="at most N images of each kind (quick runs)")
    p.add_argument(
        "--reconstructions",
        default=None,
        help="score reconstructions made elsewhere: a folder mirroring --data's relative paths",
    )
    p.add_argument(
        "--bits-per-image", type=float, default=None, help="rate of every precomputed reconstruction"
    )
    p.add_argument("--rates", default=None, help="per-file rate table for --reconstructions (JSON or CSV)")
    p.add_argument(
        "--equal-bytes",
        action="append",
        metavar="CODEC",
        help="also measure this codec (thumbnail, webp, jpeg, avif, with options: thumbnail:format=jpeg) "
        "at each learned tokenizer point's own per-image bytes (repeatable; default run: "
        f"{' and '.join(DEFAULT_EQUAL_BYTES)}; 'none' for none)",
    )
    p.add_argument(
        "--save-reconstructions",
        default=None,
        help="also write every reconstruction (evaluation geometry, PNG) under this folder",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("-o", "--output", default="results", help="results folder (a run folder is made inside)")
    p.add_argument(
        "--name",
        default=None,
        help="run name (reuse it to resume an interrupted run; default: run-DATE-TIME)",
    )
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("report", help="re-write a run's report, or merge runs into a leaderboard")
    p.add_argument("runs", nargs="+", help="run folders or results.json files")
    p.add_argument("-o", "--output", default=None, help="write the leaderboard markdown here")
    p.set_defaults(func=cmd_report)
