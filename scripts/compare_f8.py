"""Held-out PSNR and flat-colour PSNR of 2D tokenizers side by side (the check behind a re-shipped vistok-f8).

    python scripts/compare_f8.py vistok-f8 runs/vistok-f8-p3/model [--threads 2] [--out results/compare_f8.json]

For each tokenizer (a registry spec or a checkpoint folder): mean PSNR on the 42 held-out views at
256x256 (vistok.train.evaluate.evaluation_views: two views per held-out corpus image), with the
per-view differences to the first tokenizer (mean and how many views improve), and PSNR on flat
white, black, mid-grey and saturated-red images at 64x64 and 256x256 (the levels
tests/models/test_flat_images.py checks). FD and the codecs at equal bytes come from
``vistok bench --data corpus:heldout`` (scripts/bench_heldout.sh).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

import vistok
from vistok.data.corpus import corpus_images
from vistok.train.evaluate import evaluation_views, psnr_per_image, reconstruct_at

FLAT = {"white": (1.0, 1.0, 1.0), "black": (0.0, 0.0, 0.0), "mid-grey": (0.5, 0.5, 0.5),
        "saturated red": (0.9, 0.05, 0.1)}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tokenizers", nargs="+")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/compare_f8.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = evaluation_views([i.path for i in corpus_images("heldout")], 256)
    res: dict[str, dict] = {}
    first = None
    for spec in args.tokenizers:
        tok = vistok.create(spec)
        per_view = psnr_per_image(x, reconstruct_at(tok, x))
        row: dict = {"views": int(per_view.numel()), "psnr": per_view.mean().item()}
        if first is None:
            first = per_view
        else:
            diff = per_view - first
            row["vs_first_db"] = diff.mean().item()
            row["views_better"] = int((diff > 0).sum())
        for name, rgb in FLAT.items():
            for size in (64, 256):
                f = torch.tensor(rgb).view(1, 3, 1, 1).expand(1, 3, size, size).contiguous()
                mse = (tok.reconstruct(f) - f).pow(2).mean().clamp_min(1e-12)
                row[f"flat {name} {size}"] = float(-10 * torch.log10(mse))
        res[spec] = row
        print(spec, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
