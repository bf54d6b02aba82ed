"""Data commands: ``vistok corpus`` (the photo corpus) and ``vistok tokenize`` (token datasets)."""

from __future__ import annotations

import argparse
import sys

__all__ = ["add_command"]


def cmd_corpus(args: argparse.Namespace) -> int:
    from vistok.data.corpus import corpus_images, install_command, manifest_json, manifest_markdown

    try:
        images = corpus_images(args.split, strict=not args.installed)
    except (FileNotFoundError, ValueError) as e:
        print(f"vistok corpus: {e}", file=sys.stderr)
        return 1
    if args.format == "json":
        print(manifest_json(images))
    elif args.format == "markdown":
        print(manifest_markdown(images))
    else:
        for i in images:
            print(f"{i.split:8s} {i.package:30s} {i.licence:14s} {i.path}")
        print(f"{len(images)} images; install the whole corpus with: {install_command()}", file=sys.stderr)
    return 0


def add_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from vistok.data.tokenize_cli import add_tokenize_command

    add_tokenize_command(sub)
    p = sub.add_parser("corpus", help="list the photo corpus (Debian packages): split, licence, path")
    p.add_argument("split", nargs="?", default="all", help="train, heldout, all (default) or a package name")
    p.add_argument("--format", choices=["text", "json", "markdown"], default="text")
    p.add_argument("--installed", action="store_true", help="list what is installed, skip missing packages")
    p.set_defaults(func=cmd_corpus)
