"""``vistok tokenize INPUTS -t SPEC -o OUT``: images -> a sharded token dataset (docs/generation.md)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

__all__ = ["add_tokenize_command", "cmd_tokenize"]


def cmd_tokenize(args: argparse.Namespace) -> int:
    import torch

    from vistok.cli import EXIT_ALL_FAILED, EXIT_OK, UsageError, resolve_inputs
    from vistok.data.tokenize import PlanMismatchError, TokenizeOptions, tokenize_images
    from vistok.registry import SpecError
    from vistok.train import dist
    from vistok.utils.io import atomic_write_text
    from vistok.utils.threads import torch_threads

    try:
        options = TokenizeOptions(
            tokenizer=args.tokenizer,
            size=args.size,
            pad_mode=args.pad_mode,
            augment=args.augment,
            crop_range=args.crop_range,
            shard_size=args.shard_size,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
        )
    except ValueError as e:
        raise UsageError(str(e)) from None
    items = resolve_inputs(args.inputs)
    info = dist.setup("cpu")  # torchrun: one process group for the barrier; devices come from --device
    if options.device == "cuda" and info.world > 1:  # one GPU per rank
        options = TokenizeOptions(**{**options.__dict__, "device": f"cuda:{info.local_rank}"})
    threads = args.threads or torch.get_num_threads()
    try:
        with torch_threads(threads):
            result = tokenize_images(
                items,
                Path(args.output),
                options,
                rank=info.rank,
                world=info.world,
                barrier=dist.barrier,
                overwrite=args.overwrite,
                progress=not args.quiet,
            )
    except (SpecError, PlanMismatchError, ValueError) as e:
        raise UsageError(str(e)) from None
    finally:
        dist.cleanup()
    stats = {
        "rank": info.rank,
        "world": info.world,
        "images": result.images,
        "rows": result.rows,
        "skipped": len(result.skipped),
        "shards_written": result.shards_written,
        "shards_reused": result.shards_reused,
        "seconds": round(result.seconds, 3),
        "cpu_seconds": round(result.cpu_seconds, 3),
        "images_per_second": round(result.images_per_second, 3),
        "threads": threads,
        "workers": options.workers,
        "batch_size": options.batch_size,
        "device": options.device,
    }
    if info.world > 1 or os.environ.get("RANK"):
        name = f"stats.rank{info.rank}.json"
    else:
        name = "stats.json"
    atomic_write_text(Path(args.output) / name, json.dumps(stats, indent=2) + "\n")
    if info.rank != 0:
        return EXIT_OK
    m = result.manifest or {}
    skipped = m.get("skipped", [])
    if skipped:
        print(f"\n{len(skipped)} file(s) skipped:", file=sys.stderr)
        for s in skipped:
            print(f"  {s['path']}: {s['reason']}", file=sys.stderr)
    print(
        f"{m.get('images', 0)} image(s) -> {m.get('rows', 0)} rows of {m.get('token_shape')} "
        f"{m.get('field')} in {len(m.get('shards', []))} shard(s) at {args.output} "
        f"({len(skipped)} skipped; this run: {result.shards_written} shard(s) written, "
        f"{result.shards_reused} reused, {result.images_per_second:.1f} images/s)"
    )
    return EXIT_ALL_FAILED if m.get("images", 0) == 0 and skipped else EXIT_OK


def add_tokenize_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from vistok.data.augment import AUGMENTATIONS

    p = sub.add_parser(
        "tokenize",
        help="images -> a sharded, resumable token dataset (torchrun: one shard stream per rank)",
        description="Tokenize images into memory-mappable safetensors shards plus manifest.json "
        "(docs/generation.md). Killed at any point, the same command resumes; under torchrun each "
        "rank makes every WORLD-th shard and the dataset is the same as with one process.",
    )
    p.add_argument(
        "inputs", nargs="+", help="image files, folders (recursive) or samples[:photos|text|faces]"
    )
    p.add_argument(
        "-t", "--tokenizer", required=True, help="tokenizer spec or checkpoint; NAME@k keeps k tokens"
    )
    p.add_argument(
        "-o", "--output", required=True, help="output folder (created; resumed when it holds a run)"
    )
    p.add_argument("--size", type=int, default=256, help="protocol size: pad to square, resize (default 256)")
    p.add_argument("--pad-mode", choices=["reflect", "constant", "edge"], default="reflect")
    p.add_argument("--augment", choices=list(AUGMENTATIONS), default="none", help="views per image")
    p.add_argument("--crop-range", type=float, default=1.1, help="ten-crop: fit to size*crop_range first")
    p.add_argument("--shard-size", type=int, default=1000, help="source images per shard (default 1000)")
    p.add_argument("--batch-size", type=int, default=32, help="views per encode call (default 32)")
    p.add_argument("--workers", type=int, default=4, help="image-decoding threads (default 4)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--overwrite", action="store_true", help="discard a dataset made with other settings")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_tokenize)
