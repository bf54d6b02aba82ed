"""``vistok fit-pca``: fit the ``pca`` baseline tokenizer on random crops of training sources.

The crops come from the same sampler as training (:class:`vistok.train.data.ImageDataset`:
random-resized crops at several scales, flips), so the baseline sees the data a learned
model of the same recipe sees.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from vistok.models.pca import PCATokenizer

__all__ = ["add_command", "fit_pca", "sample_crops"]


def sample_crops(
    sources: list[str], n: int, *, size: int, min_scale: float = 0.03, resize_short: int = 512, seed: int = 0
) -> torch.Tensor:
    """``n`` random-resized crops of the images in ``sources``: float ``[n, 3, size, size]`` in [0, 1]."""
    from vistok.train.data import ImageDataset, collect_sources

    ds = ImageDataset(
        collect_sources(sources),
        size=size,
        scale=(min_scale, 1.0),
        ratio=4 / 3,
        hflip=True,
        resize_short=resize_short,
        preload=True,
        seed=seed,
    )
    return torch.stack([ds[(i // len(ds), i % len(ds))] for i in range(n)])


def fit_pca(spec: str, sources: list[str], *, crops: int, size: int, seed: int = 0) -> PCATokenizer:
    """Build ``spec`` (a ``pca`` spec) and fit it on ``crops`` crops of side ``size`` from ``sources``."""
    import vistok

    tok = vistok.create(spec)
    if not isinstance(tok, PCATokenizer):
        raise ValueError(f"{spec!r} is not a pca tokenizer")
    return tok.fit(sample_crops(sources, crops, size=size, seed=seed))


def cmd_fit_pca(args: argparse.Namespace) -> int:
    data = args.data or ["corpus:train"]
    try:
        tok = fit_pca(args.spec, data, crops=args.crops, size=args.size, seed=args.seed)
    except (FileNotFoundError, ValueError) as e:
        print(f"vistok fit-pca: {e}", file=sys.stderr)
        return 1
    out = tok.save_pretrained(Path(args.out))
    print(f"fitted {tok.spec} on {args.crops} crops of {', '.join(data)} -> {out}")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("fit-pca", help="fit the pca baseline tokenizer on training images")
    p.add_argument("--spec", default="pca", help="pca spec, e.g. pca:tokens=64,coeffs_per_token=2,bits=8")
    p.add_argument(
        "--data", action="append", default=None, help="training source (repeatable; default corpus:train)"
    )
    p.add_argument("--crops", type=int, default=4000, help="random crops to fit on")
    p.add_argument("--size", type=int, default=128, help="crop side (then resized to the basis size)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-o", "--out", required=True, help="output checkpoint folder (vistok.load / bench -t)")
    p.set_defaults(func=cmd_fit_pca)
