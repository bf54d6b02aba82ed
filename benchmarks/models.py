"""Encode/decode throughput of the learned tokenizer families, against the machine's matmul.

For each model: images/s for ``encode`` and ``decode`` at batch B and S x S, the FLOPs of
each (counted with ``torch.utils.flop_counter.FlopCounterMode``: matmuls, convolutions,
attention), the achieved GFLOP/s, and that as a fraction of ``torch.mm`` GFLOP/s measured
in the same run (4096^3 float32). Untrained weights (speed does not depend on them).

    python benchmarks/models.py                        # the default table (few iterations)
    python benchmarks/models.py --models vit2d-s-p16 --batch 4 --iters 2

Numbers on a shared machine are noisy: the script reports the best of ``--iters`` timed
runs after one warm-up, measures ``torch.mm`` again before each row (the ratio compares
like with like when the load drifts), and prints the load average so a busy machine shows.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

import vistok

DEFAULT_MODELS = ["conv2d-f8", "conv2d-f16", "vit2d-s-p16", "latent1d-s-128"]


def best_time(fn: Callable[[], object], iters: int) -> float:
    """Seconds of the fastest of ``iters`` calls after one warm-up call."""
    fn()
    best = float("inf")
    for _ in range(iters):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def matmul_gflops(n: int = 4096, iters: int = 3) -> float:
    """float32 ``torch.mm`` throughput (GFLOP/s) on ``n x n`` matrices."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n**3 / best_time(lambda: torch.mm(a, b), iters) / 1e9


def count_flops(fn: Callable[[], object]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


@torch.inference_mode()
def bench_model(name: str, batch: int, size: int, iters: int) -> dict[str, float]:
    model = vistok.create(name).eval().requires_grad_(False)
    if name.startswith("conv2d"):
        model = model.to(memory_format=torch.channels_last)
    s = model.input_size or size
    x = torch.rand(batch, 3, s, s)
    tokens = model.encode(x)
    out: dict[str, float] = {"params_m": sum(p.numel() for p in model.parameters()) / 1e6}
    for what, fn in (("encode", lambda: model.encode(x)), ("decode", lambda: model.decode(tokens))):
        flops = count_flops(fn)
        sec = best_time(fn, iters)
        out[f"{what}_img_s"] = batch / sec
        out[f"{what}_gflop_img"] = flops / batch / 1e9
        out[f"{what}_gflop_s"] = flops / sec / 1e9
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=DEFAULT_MODELS)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--iters", type=int, default=2)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"batch {args.batch}, {args.size}x{args.size}, best of {args.iters} after a warm-up; "
        "'of mm' = fraction of torch.mm 4096^3 float32 GFLOP/s measured just before each row\n"
    )
    print(
        "| model | params (M) | encode img/s | decode img/s | encode GFLOP/img | decode GFLOP/img "
        "| mm GFLOP/s | encode GFLOP/s (of mm) | decode GFLOP/s (of mm) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in args.models:
        mm = matmul_gflops(iters=args.iters)  # per row: the machine is shared, its load drifts
        r = bench_model(name, args.batch, args.size, args.iters)
        print(
            f"| {name} | {r['params_m']:.1f} | {r['encode_img_s']:.2f} | {r['decode_img_s']:.2f} "
            f"| {r['encode_gflop_img']:.1f} | {r['decode_gflop_img']:.1f} | {mm:.0f} "
            f"| {r['encode_gflop_s']:.0f} ({r['encode_gflop_s'] / mm:.0%}) "
            f"| {r['decode_gflop_s']:.0f} ({r['decode_gflop_s'] / mm:.0%}) |",
            flush=True,
        )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
