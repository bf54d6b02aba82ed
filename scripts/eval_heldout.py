"""PSNR of the shipped models on the 42 held-out views, per token count (docs/shipped_models.md).

    python scripts/eval_heldout.py [--threads 2]

Views: vistok.train.evaluate.evaluation_views (two 256x256 views per held-out image). Rows:
vistok-1d at k = 1, 2, 4, ..., 256; vistok-pca at the same k (the same 16 bits per token);
vistok-1d's own backbone (the vistok-f8 weights inside it) at the 1D model's 128x128 input,
i.e. the 1D model's ceiling; vistok-f8 at 256x256. Prints a Markdown table and writes JSON.

    python scripts/eval_heldout.py --model f8-1d=runs/a/model --model taef2-1d=runs/b/model

evaluates those variable-length 1D models instead (any spec or folder), each at the same k and
with its own backbone at its input size (the ceiling): how the two-stage comparisons of
docs/zoo/taesd.md were measured.
"""

from __future__ import annotations

import argparse
import json

import torch

import vistok
from vistok.data.corpus import corpus_images
from vistok.train.evaluate import evaluation_views, psnr_per_image, reconstruct_at


class _AtSize(torch.nn.Module):
    """A 2D tokenizer run at a fixed square input (for the 1D model's ceiling)."""

    def __init__(self, tok: vistok.Tokenizer, size: int):
        super().__init__()
        self.tok, self.input_size = tok, size

    def reconstruct(self, x: torch.Tensor, num_tokens: int | None = None) -> torch.Tensor:
        return self.tok.reconstruct(x)


def _custom(x: torch.Tensor, models: list[tuple[str, str]], out: str) -> None:
    """PSNR per k of each 1D model and of its backbone at the model's input size."""
    from pathlib import Path

    res: dict[str, dict[str, float]] = {}
    ks: set[int] = set()
    for label, spec in models:
        tok = vistok.create(spec)
        own = [2**i for i in range(12) if 2**i <= tok.max_tokens]
        ks.update(own)
        res[label] = {
            str(k): psnr_per_image(x, reconstruct_at(tok, x, num_tokens=k)).mean().item() for k in own
        }
        ceiling = _AtSize(tok.backbone, tok.input_size)
        res[label]["backbone"] = psnr_per_image(x, reconstruct_at(ceiling, x)).mean().item()
    columns = sorted(ks)  # every model's k; a model without one shows "–"
    print("| model | " + " | ".join(f"k={k}" for k in columns) + " | backbone |")
    print("|---|" + "---|" * (len(columns) + 1))
    for label, row in res.items():
        cells = [f"{row[str(k)]:.2f}" if str(k) in row else "–" for k in columns]
        print(f"| {label} | " + " | ".join(cells) + f" | {row['backbone']:.2f} |")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(res, indent=1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="results/heldout_psnr.json")
    ap.add_argument(
        "--model", action="append", default=[], metavar="LABEL=SPEC", help="1D models to evaluate"
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x = evaluation_views([i.path for i in corpus_images("heldout")], 256)
    if args.model:
        _custom(x, [m.partition("=")[::2] for m in args.model], args.out)
        return
    one_d, pca, f8 = vistok.create("vistok-1d"), vistok.create("vistok-pca"), vistok.create("vistok-f8")
    res: dict[str, dict[str, float]] = {"vistok-1d": {}, "vistok-pca": {}}
    ks = [2**i for i in range(9) if 2**i <= one_d.max_tokens]
    for k in ks:
        res["vistok-1d"][str(k)] = psnr_per_image(x, reconstruct_at(one_d, x, num_tokens=k)).mean().item()
        if k <= pca.max_tokens:
            res["vistok-pca"][str(k)] = psnr_per_image(x, reconstruct_at(pca, x, num_tokens=k)).mean().item()
    res["backbone@128"] = {
        "all": psnr_per_image(x, reconstruct_at(_AtSize(one_d.backbone, 128), x)).mean().item()
    }
    res["vistok-f8@256"] = {"all": psnr_per_image(x, reconstruct_at(f8, x)).mean().item()}
    print("| k (16 bits each) | " + " | ".join(str(k) for k in ks) + " |")
    print("|---|" + "---|" * len(ks))
    for name in ("vistok-1d", "vistok-pca"):
        print(
            f"| {name} | "
            + " | ".join(f"{res[name][str(k)]:.2f}" if str(k) in res[name] else "–" for k in ks)
            + " |"
        )
    print(
        f"backbone at 128x128: {res['backbone@128']['all']:.2f} dB; vistok-f8 at 256x256: {res['vistok-f8@256']['all']:.2f} dB"
    )
    from pathlib import Path

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
