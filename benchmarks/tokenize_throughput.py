"""`vistok tokenize` throughput against the tokenizer's bare `encode`, side by side.

Target (issue 12): the whole pipeline (JPEG decoding, hashing, the protocol's fit, encoding,
shard writing) runs at >= 90% of the images/s of ``tokenizer.encode`` alone on already
decoded, already fitted batches of the same size -- i.e. decoding and I/O hide behind compute.

Method: N JPEG files (the built-in photos, randomly cropped and rescaled to ImageNet-like
sizes, quality 90) in a temporary folder. Each round times, interleaved, (a) bare: ``encode``
over the same images pre-fitted to the protocol square, in batches of B, under
``torch.inference_mode``; (b) pipeline: ``tokenize_images`` into a fresh folder (its shard
loop: model loading and the manifest are excluded, as a fixed per-run cost). One warm-up of
each, then ``--rounds`` rounds alternating which side goes first; reported: the ratio of the
best images/s of each side, the median of the per-round ratios, and CPU ms per image (the
whole process, every thread: on a saturated machine the pipeline cannot beat
``cpu_bare / cpu_tokenize``). torch threads pinned (``--threads``, default 2).

    python benchmarks/tokenize_throughput.py [-t SPEC ...] [--images 48] [--batch-size 16] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import vistok
from vistok.data.augment import AUGMENTATIONS
from vistok.data.images import find_images, load_image_uint8
from vistok.data.samples import sample_set
from vistok.data.token_spec import build_tokenizer
from vistok.data.tokenize import TokenizeOptions, tokenize_images
from vistok.models.codecs import from_uint8


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` JPEGs of 300..500 x 300..500 pixels cut from the built-in photos."""
    rng = np.random.default_rng(seed)
    photos = [load_image_uint8(p) for p in sample_set("photos").paths]
    out = []
    for i in range(n):
        src = photos[i % len(photos)]
        h, w = (
            rng.integers(src.shape[0] // 2, src.shape[0] + 1),
            rng.integers(src.shape[1] // 2, src.shape[1] + 1),
        )
        y, x = rng.integers(0, src.shape[0] - h + 1), rng.integers(0, src.shape[1] - w + 1)
        th, tw = rng.integers(300, 501), rng.integers(300, 501)
        im = Image.fromarray(src[y : y + h, x : x + w]).resize((int(tw), int(th)), Image.Resampling.BICUBIC)
        path = folder / f"img{i:04d}.jpg"
        im.save(path, quality=90)
        out.append(path)
    return out


def bare_encode(spec: str, paths: list[Path], size: int, batch: int) -> tuple[float, float]:
    """``(images/s, CPU seconds per image)`` of ``encode`` alone on pre-fitted float batches."""
    tok, k = build_tokenizer(spec)
    tok.eval()
    size = tok.input_size or size
    views = [AUGMENTATIONS["none"].make(load_image_uint8(p), size, "reflect", 1.0).images[0] for p in paths]
    batches = [from_uint8(views[i : i + batch]) for i in range(0, len(views), batch)]
    t0, c0 = time.perf_counter(), time.process_time()
    with torch.inference_mode():
        for x in batches:
            tok.encode(x, num_tokens=k)
    return len(paths) / (time.perf_counter() - t0), (time.process_time() - c0) / len(paths)


def pipeline(spec: str, folder: Path, size: int, batch: int, workers: int) -> tuple[float, float]:
    """``(images/s, CPU seconds per image)`` of `vistok tokenize`'s shard loop on the JPEG files."""
    items = [(p, Path(p.name)) for p in find_images(folder)]
    opts = TokenizeOptions(spec, size=size, batch_size=batch, shard_size=1000, workers=workers)
    with tempfile.TemporaryDirectory() as out:
        result = tokenize_images(items, out, opts, progress=False)
    return result.images_per_second, result.cpu_seconds / max(result.images, 1)


def measure(spec: str, paths: list[Path], folder: Path, args: argparse.Namespace) -> dict[str, object]:
    """Interleaved rounds, alternating which side goes first; one warm-up of each."""
    bare_encode(spec, paths[: args.batch_size], args.size, args.batch_size)
    pipeline(spec, folder, args.size, args.batch_size, args.workers)
    bare, pipe = [], []
    for r in range(args.rounds):
        sides = [("bare", bare), ("pipe", pipe)]
        for name, acc in sides if r % 2 == 0 else sides[::-1]:
            if name == "bare":
                acc.append(bare_encode(spec, paths, args.size, args.batch_size))
            else:
                acc.append(pipeline(spec, folder, args.size, args.batch_size, args.workers))
    ratios = sorted(p[0] / b[0] for b, p in zip(bare, pipe))
    best_bare, best_pipe = max(b[0] for b in bare), max(p[0] for p in pipe)
    return {
        "tokenizer": spec,
        "bare_images_per_s": best_bare,
        "tokenize_images_per_s": best_pipe,
        "ratio": best_pipe / best_bare,
        "median_round_ratio": ratios[len(ratios) // 2],
        "cpu_ms_per_image_bare": 1000 * min(b[1] for b in bare),
        "cpu_ms_per_image_tokenize": 1000 * min(p[1] for p in pipe),
        "rounds_bare": bare,
        "rounds_tokenize": pipe,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-t", "--tokenizer", action="append", default=None)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    specs = args.tokenizer or ["vistok-f8", "vistok-1d@32"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images)
        rows = [measure(spec, paths, Path(tmp), args) for spec in specs]
    print(
        f"vistok {vistok.__version__}; {args.images} JPEGs, size {args.size}, batch {args.batch_size}, "
        f"{args.workers} loader threads, torch threads {args.threads}, {args.rounds} interleaved rounds"
    )
    print(
        f"{'tokenizer':<14} {'encode img/s':>12} {'tokenize img/s':>14} {'best ratio':>10} "
        f"{'median ratio':>12} {'CPU ms/img encode':>17} {'tokenize':>9}"
    )
    for r in rows:
        print(
            f"{r['tokenizer']:<14} {r['bare_images_per_s']:12.2f} {r['tokenize_images_per_s']:14.2f} "
            f"{r['ratio']:10.3f} {r['median_round_ratio']:12.3f} {r['cpu_ms_per_image_bare']:17.1f} "
            f"{r['cpu_ms_per_image_tokenize']:9.1f}"
        )
    if args.json:
        args.json.write_text(
            json.dumps({"config": vars(args) | {"json": str(args.json)}, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
