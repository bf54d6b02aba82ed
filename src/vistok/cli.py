"""``vistok`` command line: list, encode, decode, reconstruct, samples, bench, report, train.

Batch commands go on past bad files, list each with its reason at the end, and exit
non-zero only when nothing succeeded (exit 1) or on a usage error (exit 2).

Expected errors (bad arguments or specs, unreadable checkpoints, missing files, bad
configs) print one line ``vistok: error: ...`` and exit 2 (usage) or 1 (the rest); the
traceback appears only with ``--debug`` (before or after the command). Anything else is
a bug and keeps Python's traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from vistok.utils.progress import progress

__all__ = ["main"]

EXIT_OK, EXIT_ALL_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad arguments: printed as ``vistok: error: ...`` with exit code 2."""


def _exit_code(error: BaseException) -> int | None:
    """The exit code of an expected error (printed as one line), ``None`` for a bug."""
    from vistok.data.images import ImageLoadError
    from vistok.hub import CheckpointError
    from vistok.registry import SpecError

    usage: tuple[type[BaseException], ...] = (UsageError, SpecError)
    failure: tuple[type[BaseException], ...] = (CheckpointError, ImageLoadError, FileNotFoundError)
    try:  # the training extras may be absent; their errors are expected where they exist
        from vistok.train.config import ConfigError
        from vistok.train.trainer import TrainingDiverged

        usage += (ConfigError,)
        failure += (TrainingDiverged,)
    except ImportError:  # pragma: no cover - a partial install
        pass
    if isinstance(error, usage):
        return EXIT_USAGE
    if isinstance(error, failure):
        return EXIT_ALL_FAILED
    return None


# ---- inputs ---------------------------------------------------------------------------
def resolve_inputs(inputs: Sequence[str]) -> list[tuple[Path, Path]]:
    """``(file, relative output name)`` for files, folders (recursive) and ``samples:SET``."""
    from vistok.data.images import find_images
    from vistok.data.samples import SAMPLE_SETS, sample_set

    out: list[tuple[Path, Path]] = []
    for item in inputs:
        if item == "samples" or item.startswith("samples:"):
            names = item.split(":", 1)[1].split("+") if ":" in item else list(SAMPLE_SETS)
            for name in names:
                if name not in SAMPLE_SETS:
                    raise UsageError(f"unknown sample set {name!r}; valid: {', '.join(SAMPLE_SETS)}")
                s = sample_set(name)
                out += [(p, Path(name) / p.name) for p in s.paths]
            continue
        p = Path(item)
        if p.is_dir():
            out += [(f, f.relative_to(p)) for f in find_images(p)]
        elif p.exists():
            out.append((p, Path(p.name)))
        else:
            raise UsageError(f"{item}: no such file or folder")
    if not out:
        raise UsageError("no input images found")
    return out


def _finish(done: int, failed: list[tuple[str, str]], what: str) -> int:
    if failed:
        print(f"\n{len(failed)} file(s) skipped:", file=sys.stderr)
        for path, reason in failed:
            print(f"  {path}: {reason}", file=sys.stderr)
    print(f"{done} {what}, {len(failed)} skipped")
    return EXIT_ALL_FAILED if done == 0 and failed else EXIT_OK


def _create(spec: str) -> object:
    import vistok

    return vistok.create(spec)  # SpecError: usage (exit 2); CheckpointError: exit 1 (see main)


# ---- commands -------------------------------------------------------------------------
def cmd_list(args: argparse.Namespace) -> int:
    import vistok
    from vistok.registry import TOKENIZERS

    names = vistok.list()
    width = max(len(n) for n in names)
    for name in names:
        e = TOKENIZERS.get(name)
        params = ", ".join(f"{k}={v}" for k, v in e.defaults().items())
        extra = ""
        if e.available is not None and (reason := e.available()):
            extra = f"  [not available: {reason}]"
        print(f"{name:<{width}}  {e.doc}{extra}")
        if args.verbose and params:
            print(f"{'':<{width}}    {params}")
    return EXIT_OK


def _out_path(out: Path, rel: Path, suffix: str, single: bool) -> Path:
    if single and out.suffix:
        return out
    return out / rel.with_suffix(suffix)


def _for_each_image(
    args: argparse.Namespace, desc: str, work: Callable[[object, np.ndarray, Path, bool], None]
) -> tuple[int, list[tuple[str, str]]]:
    """Load each input image and call ``work(tokenizer, image, relative_name, single)``.

    Bad files and tokenizer failures are collected as ``(path, reason)``; the rest goes on.
    """
    from vistok.data.images import ImageLoadError, load_image_uint8

    items = resolve_inputs(args.inputs)
    tok = _create(args.tokenizer)
    single = len(items) == 1
    failed: list[tuple[str, str]] = []
    done = 0
    for path, rel in progress(items, desc=desc, unit="img"):
        try:
            work(tok, load_image_uint8(path), rel, single)
        except ImageLoadError as e:
            failed.append((e.path, e.reason))
            continue
        except (ValueError, RuntimeError) as e:
            failed.append((str(path), f"tokenizer failed: {e}"))
            continue
        done += 1
    return done, failed


def _write_png(path: Path, image: np.ndarray) -> None:
    import io

    from PIL import Image

    from vistok.utils.io import atomic_write_bytes

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())


def cmd_reconstruct(args: argparse.Namespace) -> int:
    from vistok.pipeline import reconstruct_array

    out = Path(args.output)

    def work(tok: object, img: np.ndarray, rel: Path, single: bool) -> None:
        rec = reconstruct_array(tok, img, size=args.size, num_tokens=args.num_tokens)  # type: ignore[arg-type]
        _write_png(_out_path(out, rel, ".png", single), rec.image)

    done, failed = _for_each_image(args, "reconstruct", work)
    return _finish(done, failed, "image(s) reconstructed")


def cmd_encode(args: argparse.Namespace) -> int:
    from vistok.pipeline import encode_array

    out = Path(args.output)
    total_bits = [0.0]

    def work(tok: object, img: np.ndarray, rel: Path, single: bool) -> None:
        tokens = encode_array(tok, img, size=args.size, num_tokens=args.num_tokens)  # type: ignore[arg-type]
        tokens.meta["source_file"] = str(rel)
        tokens.save(_out_path(out, rel, ".vtok", single), tokenizer=tok.spec)  # type: ignore[attr-defined]
        total_bits[0] += float(tokens.bits.sum())

    done, failed = _for_each_image(args, "encode", work)
    if done:
        print(f"mean rate {total_bits[0] / done / 8:.0f} bytes/image")
    return _finish(done, failed, "image(s) encoded")


def _decode_token_datasets(args: argparse.Namespace) -> int:
    """``vistok decode`` of folders written by ``vistok tokenize`` (vistok.data.token_decode)."""
    from tqdm.auto import tqdm

    from vistok.data.token_dataset import TokenDataset
    from vistok.data.token_decode import decode_rows

    out = Path(args.output)
    done, failed = 0, []
    for item in args.inputs:
        try:
            ds = TokenDataset(item)
        except (FileNotFoundError, ValueError) as e:
            failed.append((item, str(e)))
            continue
        bar = tqdm(total=len(ds), desc=f"decode {Path(item).name}", unit="row", disable=None)
        done += decode_rows(
            ds,
            lambda rel, image: _write_png(out / rel, image),
            tokenizer=args.tokenizer,
            batch_size=args.batch_size,
            progress=bar.update,
        )
        bar.close()
    return _finish(done, failed, "row(s) decoded")


def cmd_decode(args: argparse.Namespace) -> int:
    import vistok
    from vistok.data.token_decode import is_token_dataset
    from vistok.pipeline import decode_array
    from vistok.tokens import Tokens

    datasets = [is_token_dataset(Path(item)) for item in args.inputs]
    if any(datasets):
        if not all(datasets):
            raise UsageError("give token-dataset folders and .vtok files to separate `vistok decode` calls")
        return _decode_token_datasets(args)
    files: list[Path] = []
    for item in args.inputs:
        p = Path(item)
        if p.is_dir():
            files += sorted(p.rglob("*.vtok"))
        elif p.exists():
            files.append(p)
        else:
            raise UsageError(f"{item}: no such file or folder")
    if not files:
        raise UsageError("no .vtok files found")
    out = Path(args.output)
    single = len(files) == 1
    cache: dict[str, object] = {}
    failed: list[tuple[str, str]] = []
    done = 0
    for f in progress(files, desc="decode", unit="file"):
        try:
            tokens, source = Tokens.load(f)
            spec = args.tokenizer or source
            if spec not in cache:
                cache[spec] = vistok.create(spec)
            img = decode_array(cache[spec], tokens)  # type: ignore[arg-type]
        except (ValueError, RuntimeError, KeyError) as e:
            failed.append((str(f), str(e)))
            continue
        rel = Path(tokens.meta.get("source_file", f.name))
        _write_png(_out_path(out, rel, ".png", single), img)
        done += 1
    return _finish(done, failed, "file(s) decoded")


def cmd_samples(args: argparse.Namespace) -> int:
    from vistok.data.samples import SAMPLE_SETS, materialize

    names = args.sets or list(SAMPLE_SETS)
    for n in names:
        if n not in SAMPLE_SETS:
            raise UsageError(f"unknown sample set {n!r}; valid: {', '.join(SAMPLE_SETS)}")
    for s in materialize(Path(args.output), names):
        print(f"{s.name}: {len(s.files)} images -> {Path(args.output) / s.name}  sha256 {s.sha256[:16]}")
        for line in s.provenance:
            print(f"    {line}")
    return EXIT_OK


# ---- parser ---------------------------------------------------------------------------
def _add_common(p: argparse.ArgumentParser, *, tokenizer_required: bool = True) -> None:
    p.add_argument(
        "inputs", nargs="+", help="image files, folders (recursive) or samples[:photos|text|faces]"
    )
    p.add_argument(
        "-t",
        "--tokenizer",
        required=tokenizer_required,
        help="tokenizer spec (e.g. jpeg:quality=30) or checkpoint folder",
    )
    p.add_argument("-o", "--output", required=True, help="output folder (or file, for one input)")
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="pad to square and resize to SIZE before tokenizing (default: native resolution)",
    )
    p.add_argument("--num-tokens", type=int, default=None, help="tokens to keep (variable-length tokenizers)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="vistok", description="Visual tokenizers: build, train, measure.")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    parser.add_argument("--debug", action="store_true", help=_DEBUG_HELP)
    sub = parser.add_subparsers(dest="command")

    p = sub.add_parser("list", help="list registered tokenizers")
    p.add_argument("-v", "--verbose", action="store_true", help="show parameters and defaults")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("reconstruct", help="encode and decode images, write PNGs")
    _add_common(p)
    p.set_defaults(func=cmd_reconstruct)

    p = sub.add_parser("encode", help="encode images to .vtok token files")
    _add_common(p)
    p.set_defaults(func=cmd_encode)

    p = sub.add_parser("decode", help="decode .vtok token files or token datasets to PNGs")
    p.add_argument("inputs", nargs="+", help=".vtok files or folders, or `vistok tokenize` output folders")
    p.add_argument("-o", "--output", required=True, help="output folder (or file, for one input)")
    p.add_argument("-t", "--tokenizer", default=None, help="override the tokenizer recorded in the files")
    p.add_argument(
        "--batch-size",
        type=int,
        default=1,
        help="token-dataset rows decoded at once (default 1: equal to `reconstruct`; larger is faster "
        "but float rounding may move rare pixels by one level)",
    )
    p.set_defaults(func=cmd_decode)

    p = sub.add_parser("samples", help="write the built-in sample sets to a folder")
    p.add_argument("sets", nargs="*", help="photos, text, faces (default: all)")
    p.add_argument("-o", "--output", required=True, help="output folder")
    p.set_defaults(func=cmd_samples)

    # Commands implemented in their own modules register themselves here.
    for module in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            continue
        mod.add_command(sub)  # type: ignore[attr-defined]
    # --debug is global: accepted before the command and after it, by every command
    for p in {id(p): p for p in sub.choices.values()}.values():
        p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=_DEBUG_HELP)
    return parser


_DEBUG_HELP = "show the Python traceback of an error instead of one line"


_COMMAND_MODULES = [
    "vistok.bench.cli",
    "vistok.train.cli",
    "vistok.train.pca_fit",
    "vistok.data.cli",
    "vistok.reduce.bench",
    "vistok.prior.cli",
    "vistok.models.zoo._cli",
    "vistok.study.cli",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.version:
        import vistok

        print(f"vistok {vistok.__version__}")
        return EXIT_OK
    func: Callable[[argparse.Namespace], int] | None = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        return func(args)
    except Exception as e:
        code = _exit_code(e)
        if code is None or args.debug:
            raise
        message = " ".join(str(e).split()) or type(e).__name__  # one line
        print(f"vistok: error: {message}", file=sys.stderr)
        return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
