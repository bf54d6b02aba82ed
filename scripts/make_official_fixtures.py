"""Make the parity fixtures of a published family by running its *official* code.

    python scripts/make_official_fixtures.py FAMILY --checkout PATH --commit SHA [--full]

``FAMILY`` is a module of ``scripts/official_fixtures/`` (``llamagen``, ``titok``, ...). It
builds the official model at small configurations with seeded random weights, saves each
checkpoint in the official release layout, and saves inputs, codes / latents and
reconstructions as the official code produced them, under
``tests/fixtures/official/FAMILY/<case>/``. ``SOURCE.json`` records the official repository,
the commit of ``--checkout``, the torch version and this script's command line. ``--full``
also runs the family's check at the full official configuration (random weights: the
official model and vistok's, same weights, same input) and writes ``full_check.json``, whose
figures docs/zoo.md quotes.

The official code is read from ``--checkout`` (a checkout of the official repository at
``--commit``) and imported from there only by this script: vistok never imports it, and
none of it is committed. Each family module defines::

    REPO: str                                   # "org/name" of the official repository
    def make(checkout: Path, out: Path) -> list[str]   # writes the cases, returns their names
    def full_check(checkout: Path) -> dict      # optional: the full-configuration comparison
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = Path(__file__).resolve().parent / "official_fixtures"
OUT = ROOT / "tests" / "fixtures" / "official"


def family_module(name: str):
    path = FAMILIES / f"{name}.py"
    if not path.is_file():
        known = sorted(p.stem for p in FAMILIES.glob("*.py") if not p.stem.startswith("_"))
        raise SystemExit(f"no fixture module {path}; known: {', '.join(known)}")
    spec = importlib.util.spec_from_file_location(f"official_fixtures.{name}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(FAMILIES))
    spec.loader.exec_module(mod)
    return mod


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("family")
    ap.add_argument("--checkout", required=True, type=Path, help="checkout of the official repository")
    ap.add_argument("--commit", required=True, help="the commit of that checkout (recorded)")
    ap.add_argument("--out", type=Path, default=OUT, help=f"fixtures root (default {OUT})")
    ap.add_argument("--full", action="store_true", help="also run the full-configuration check")
    args = ap.parse_args(argv)
    mod = family_module(args.family)
    out = args.out / args.family
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(args.checkout.resolve()))
    torch.manual_seed(0)
    cases = mod.make(args.checkout.resolve(), out)
    source = {
        "family": args.family,
        "official_repository": mod.REPO,
        "commit": args.commit,
        "cases": cases,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "made_by": "python scripts/make_official_fixtures.py "
        + " ".join(sys.argv[1:] if argv is None else argv),
    }
    (out / "SOURCE.json").write_text(json.dumps(source, indent=2) + "\n")
    if args.full:
        result = mod.full_check(args.checkout.resolve())
        result.update(commit=args.commit, torch=torch.__version__)
        (out / "full_check.json").write_text(json.dumps(result, indent=2) + "\n")
        print(json.dumps(result, indent=2))
    print(f"{args.family}: wrote {', '.join(cases)} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
