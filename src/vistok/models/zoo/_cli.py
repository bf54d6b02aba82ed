"""``vistok convert NAME PATH -o DIR``: a published checkpoint as vistok's own ``config.json`` + ``model.safetensors``."""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_command", "convert"]


def convert(name: str, path: str | Path, out: str | Path) -> Path:
    """Load the release at ``path`` as the published tokenizer ``name`` and save it to ``out``.

    ``name`` may carry architecture parameters (``llamagen-vq16:codebook_size=4096``). The
    written folder loads with ``vistok.load(out)`` / ``-t out`` without the original file;
    the source path is not recorded in its config (``Tokenizer.source_keys``).

    Raises:
        vistok.registry.SpecError: an unknown name or parameter, or a file that does not load.
    """
    import vistok

    tok = vistok.create(name, weights=str(path))
    return tok.save_pretrained(out)


def _cmd(args: argparse.Namespace) -> int:
    out = convert(args.name, args.path, args.output)
    print(f"wrote {out}/config.json and {out}/model.safetensors (load with -t {out})")
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="convert a published checkpoint (as released) to a vistok checkpoint folder",
        description="Load PATH (the file or folder exactly as released) as the published tokenizer NAME "
        "and write vistok's config.json + model.safetensors to DIR.",
    )
    p.add_argument("name", help="published tokenizer name, e.g. llamagen-vq16 (vistok list)")
    p.add_argument("path", help="the official checkpoint file or folder")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.set_defaults(func=_cmd)
