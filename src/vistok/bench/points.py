"""What a bench run measures: *points* (one tokenizer setting each), their labels, the
curves they belong to, and the folder names their saved reconstructions get.

A point's label is the name the report, ``results.json`` and ``--save-reconstructions``
all use. Labels are specs every ``-t`` accepts (``jpeg:quality=30``, ``vistok-1d@4``,
``webp:bytes=1187``), except an equal-bytes point whose reference rate differs from image
to image (``webp@=NAME``: no single spec reproduces per-image budgets).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

from vistok.models.codecs import ImageCodec
from vistok.registry import SpecError, parse_spec
from vistok.tokenizer import Tokenizer

__all__ = [
    "CODEC_SWEEPS",
    "SWEPT_PARAMETER",
    "Point",
    "budgets_from",
    "curve_key",
    "equal_bytes_points",
    "expand_points",
    "label_from_dirname",
    "point_dirname",
]

# Default sweeps: codec qualities spanning their useful range. The swept parameter of each
# family is data: it is what a curve's key leaves out (see :func:`curve_key`).
SWEPT_PARAMETER: dict[str, str] = {
    "jpeg": "quality",
    "webp": "quality",
    "avif": "quality",
    "resize": "factor",
}
_SWEEP_VALUES: dict[str, tuple[int, ...]] = {
    "jpeg": (5, 15, 30, 50, 75, 90),
    "webp": (0, 10, 30, 50, 75, 90),
    "avif": (10, 30, 50, 70, 90),
    "resize": (16, 8, 4, 2),
}
_AT_K = re.compile(r"^(?P<spec>.+)@(?P<k>[0-9]+)$")  # NAME@k: k tokens of NAME
CODEC_SWEEPS: dict[str, list[str]] = {
    fam: [f"{fam}:{SWEPT_PARAMETER[fam]}={v}" for v in values] for fam, values in _SWEEP_VALUES.items()
}


@dataclass(frozen=True)
class Point:
    """One tokenizer setting of a run.

    Attributes:
        spec: tokenizer spec (or checkpoint path).
        num_tokens: token count of a variable-length tokenizer, else ``None``.
        budget_of: for an *equal-bytes* point, the learned point whose per-image byte counts
            are this codec's per-image budgets (``ceil(bits / 8)``); else ``None``.
        budget_spec: for an equal-bytes point whose budgets are one number for every image,
            the codec's spec at that budget (``webp:bytes=1187``), set once the reference
            point has run (:func:`resolve_budget`); else ``None``.
    """

    spec: str
    num_tokens: int | None = None
    budget_of: Point | None = None
    budget_spec: str | None = None

    @property
    def label(self) -> str:
        """``spec``, ``spec@k`` (k tokens), the budget spec (``webp:bytes=1187``), or
        ``codec@=REFERENCE`` (per-image budgets of the reference point, not one spec)."""
        return self.budget_spec if self.budget_spec is not None else self.ident

    @property
    def ident(self) -> str:
        """What identifies the point in a run (its results file's key): the label, except that
        an equal-bytes point always names its reference (``webp@=vistok-f8``) — two reference
        points at the same bytes give two points with one label."""
        base = self.spec if self.num_tokens is None else f"{self.spec}@{self.num_tokens}"
        return base if self.budget_of is None else f"{base}@={self.budget_of.ident}"


def expand_points(specs: list[str], *, sweep: bool, create: Callable[[str], Tokenizer]) -> list[Point]:
    """Specs -> points. ``NAME@k`` is the one point of ``NAME`` at ``k`` tokens. With
    ``sweep``, a bare codec family expands to its quality sweep and a variable-length
    tokenizer to token counts 1, 2, 4, ... up to its maximum."""
    points: list[Point] = []
    for spec in specs:
        if m := _AT_K.match(spec):  # one point of a variable-length tokenizer: never swept
            points.append(Point(m["spec"], int(m["k"])))
            continue
        if sweep and spec in CODEC_SWEEPS:
            points += [Point(s) for s in CODEC_SWEEPS[spec]]
            continue
        tok = create(spec)
        if sweep and tok.variable_length and tok.max_tokens:
            counts = sorted(
                {min(2**i, tok.max_tokens) for i in range(int(math.log2(tok.max_tokens)) + 1)}
                | {tok.max_tokens}
            )
            points += [Point(spec, k) for k in counts]
        else:
            points.append(Point(spec))
    return points


def equal_bytes_points(
    points: list[Point], codecs: list[str], *, create: Callable[[str], Tokenizer]
) -> list[Point]:
    """For every learned point (a tokenizer whose kind is not ``"codec"`` and that is not a
    baseline itself, like ``pca``), one point per codec spec in ``codecs`` at that point's
    per-image bytes, in the order of ``points``.

    Raises:
        SpecError: when a spec in ``codecs`` is not a codec with a byte budget.
    """
    for spec in codecs:
        tok = create(spec)
        if not (isinstance(tok, ImageCodec) and tok.supports_budget):
            raise SpecError(
                f"--equal-bytes {spec!r}: not a codec with a byte budget (jpeg, webp, avif, thumbnail are)"
            )
    learned = [
        p
        for p in points
        if p.budget_of is None and (t := create(p.spec)).kind != "codec" and not getattr(t, "baseline", False)
    ]
    return [Point(spec, None, p) for p in learned for spec in codecs]


def budgets_from(reference: Mapping[str, Any]) -> dict[str, int]:
    """Per-image byte budgets from a finished point's results: ``{file: ceil(bits / 8)}``.

    Rounded up to whole bytes (a file is whole bytes), so a codec gets less than one byte
    more than the tokenizer; images without a finite rate get no budget.
    """
    return {
        r["file"]: max(1, math.ceil(round(r["bits"] / 8.0, 6)))  # round: 1024.0000001 bits is 128 B
        for r in reference["per_image"]
        if math.isfinite(r["bits"])
    }


def resolve_budget(point: Point, reference: Mapping[str, Any], codec: ImageCodec) -> Point:
    """``point`` (equal bytes) with its label made a spec when every image has one budget.

    A learned tokenizer with a fixed token count spends the same bits on every image, so
    its equal-bytes codec is exactly ``codec:bytes=N`` and is labelled so (reusable as ``-t``).
    """
    budgets = set(budgets_from(reference).values())
    if len(budgets) != 1:
        return point
    return Point(point.spec, point.num_tokens, point.budget_of, codec.with_budget(budgets.pop()).spec)


def _without(spec: str, keys: set[str]) -> str:
    """``spec`` with the parameters ``keys`` removed, the rest as written (order kept)."""
    try:
        family, raw = parse_spec(spec)
    except SpecError:  # a path or another non-spec name: the whole name is the key
        return spec
    if not keys & raw.keys():
        return spec
    parts = [v if k == "" else f"{k}={v}" for k, v in raw.items() if k not in keys]
    return family if not parts else f"{family}:{','.join(parts)}"


def curve_key(spec: str, *, equal_bytes_reference: str | None = None) -> str:
    """The rate–distortion curve a point belongs to.

    The full spec, less the one parameter its sweep varies: a codec family's swept
    parameter (:data:`SWEPT_PARAMETER`: ``jpeg:quality=30`` -> ``jpeg``,
    ``jpeg:quality=30,subsampling=444`` -> ``jpeg:subsampling=444``) and the token count
    (``vistok-1d@4`` has spec ``vistok-1d``: the count is not in the spec). Every other
    parameter stays, so ``diffusers:A`` and ``diffusers:B`` are two curves. An equal-bytes
    point's curve is ``CODEC @= REFERENCE_SPEC`` (its budget, ``bytes=``, is what varies).
    """
    family = spec.strip().partition(":")[0].strip()
    swept = {SWEPT_PARAMETER[family]} if family in SWEPT_PARAMETER else set()
    if equal_bytes_reference is not None:
        return f"{_without(spec, swept | {'bytes'})} @= {equal_bytes_reference}"
    return _without(spec, swept)


# Characters kept as they are in folder names; everything else is percent-encoded (UTF-8).
_SAFE = "-_.=@,+"


def point_dirname(label: str | Point) -> str:
    """The folder name of a point's saved reconstructions: its label, percent-encoded.

    Letters, digits and ``- _ . = @ , +`` are kept; every other character (``:`` ``/``
    ``%`` ``[`` ...) becomes ``%XX`` of its UTF-8 bytes, as in URLs, so the name is safe on
    Linux, macOS and Windows and :func:`label_from_dirname` gives the label back:
    ``jpeg:quality=30`` -> ``jpeg%3Aquality=30``.
    """
    text = label.label if isinstance(label, Point) else label
    return quote(text, safe=_SAFE)


def label_from_dirname(name: str) -> str:
    """The inverse of :func:`point_dirname`."""
    return unquote(name)
