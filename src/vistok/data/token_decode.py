"""``vistok decode DATASET -o OUT``: a token dataset's rows back to PNG images.

Rows whose view is the plain protocol fit (view 0 of ``none``/``flip`` datasets) are
decoded, rounded to 8 bits and brought back to the source image's geometry (resize back,
crop the padding), so they equal what ``vistok reconstruct --size SIZE`` writes for the same
image. Every other view (the mirror, the ten crops) is written at the tokenizer's square
as ``NAME.view{v}.png``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from vistok.data.token_dataset import TokenDataset
from vistok.data.token_format import DATASET_FORMAT, MANIFEST_NAME, PLAN_NAME
from vistok.data.transforms import Fit, undo_fit
from vistok.tokens import Tokens

__all__ = ["decode_rows", "is_token_dataset", "output_name"]


def is_token_dataset(path: Path) -> bool:
    """Whether ``path`` is a folder written by ``vistok tokenize`` (finished or not)."""
    path = Path(path)
    if (path / PLAN_NAME).exists():
        return True
    m = path / MANIFEST_NAME
    if not m.exists():
        return False
    try:
        return json.loads(m.read_text()).get("format") == DATASET_FORMAT
    except (OSError, ValueError):
        return False


def output_name(name: str, view: int, plain: bool) -> Path:
    """``photos/cat.jpg`` -> ``photos/cat.png`` for the plain fit, ``photos/cat.view3.png`` otherwise."""
    rel = Path(name)
    return rel.with_suffix(".png") if plain else rel.with_name(f"{rel.stem}.view{view}.png")


def _batches(n: int, size: int) -> Iterator[range]:
    for start in range(0, n, size):
        yield range(start, min(n, start + size))


@torch.no_grad()
def decode_rows(
    ds: TokenDataset,
    write: Callable[[Path, np.ndarray], None],
    *,
    tokenizer: str | None = None,
    batch_size: int = 1,
    progress: Callable[[int], None] = lambda n: None,
) -> int:
    """Decode every row of ``ds`` and hand ``(relative output path, uint8 [H, W, 3])`` to ``write``.

    Args:
        tokenizer: override the spec recorded in the manifest (``NAME@k`` allowed).
        progress: called with the number of rows done after each batch.

    Returns:
        the number of rows decoded.
    """
    from vistok.data.token_spec import build_tokenizer
    from vistok.models.codecs import to_uint8

    tok, _ = build_tokenizer(tokenizer or ds.tokenizer)
    tok.eval()
    plain_view0 = bool(ds.manifest["augment"]["view0_is_fit"])
    meta = ds.manifest["tokens_meta"]
    done = 0
    for rows in _batches(len(ds), batch_size):
        got = [ds[i] for i in rows]
        values = torch.stack([r[ds.field] for r in got])
        lengths = torch.tensor([r["length"] for r in got]) if ds.variable_length else None
        tokens = Tokens(
            bits=torch.tensor([r["bits"] for r in got]),
            ids=values if ds.field == "ids" else None,
            latents=values.to(_latent_dtype(ds)) if ds.field == "latents" else None,
            lengths=lengths,
            meta=dict(meta),
        )
        images = to_uint8(tok.decode(tokens).clamp(0, 1))
        for r, image in zip(got, images):
            plain = plain_view0 and r["view"] == 0
            if plain:
                image = undo_fit(image, Fit.from_dict(ds.item_record(r["item"])["fit"]))
            write(output_name(r["name"], r["view"], plain), image)
        done += len(got)
        progress(len(got))
    return done


def _latent_dtype(ds: TokenDataset) -> torch.dtype:
    return getattr(torch, ds.manifest["dtype"])
