"""The suites of ``vistok bench``: per-point accumulators fed one :class:`ItemResult` at a
time, each writing its part of the point's record.

A suite's life for one point: ``begin(ctx)`` (decides whether it runs, records why not),
``add(item)`` for every coded image, ``finish(record)``. Suites are registered by name in
:data:`SUITES` (``--suites`` names them; an unknown name gets "did you mean"). The quality
metrics themselves come from :data:`vistok.registry.METRICS`: a suite runs every
registered metric whose ``suite`` attribute is its name (:func:`suite_metrics`).
"""

from __future__ import annotations

import base64
import io
import math
import time
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from vistok.bench.config import BenchConfig
from vistok.bench.data import BenchData
from vistok.bench.items import ItemResult
from vistok.bench.metrics.base import Metric
from vistok.bench.points import Point
from vistok.bench.precomputed import PrecomputedReconstructions
from vistok.models.codecs import from_uint8
from vistok.registry import METRICS, Entry, Registry
from vistok.tokenizer import Tokenizer

__all__ = [
    "SUITES",
    "PointContext",
    "Suite",
    "best_seconds",
    "describe_metrics",
    "metric_class",
    "open_suites",
    "peak_rss_mb",
    "suite_metrics",
]

_METRIC_BATCH = 8  # image pairs per metric call (evaluation size, uint8 until used)


@dataclass
class PointContext:
    """What a suite may look at for one point."""

    tok: Tokenizer
    point: Point
    cfg: BenchConfig
    data: BenchData
    model_size: int  # the tokenizer's input size (its native size, or the evaluation size)


def metric_class(entry: Entry[Any]) -> type[Metric] | None:
    """The :class:`Metric` class a registered factory declares it returns (``None``: not one)."""
    try:
        ret = typing.get_type_hints(entry.factory).get("return")
    except Exception:  # pragma: no cover - unresolvable annotations
        return None
    return ret if isinstance(ret, type) and issubclass(ret, Metric) else None


def suite_metrics(suite: str, cfg: BenchConfig) -> tuple[dict[str, Metric], dict[str, str]]:
    """Every registered metric of ``suite``, created: ``({name: metric}, {name: why not})``.

    A metric whose factory takes ``extractor`` gets ``cfg.fd_features`` (``--features``).
    """
    import vistok.bench.metrics  # noqa: F401 - registers the metrics

    made: dict[str, Metric] = {}
    skipped: dict[str, str] = {}
    for entry in METRICS.entries():
        cls = metric_class(entry)
        if cls is None or cls.suite != suite:
            continue
        reason = entry.available() if entry.available is not None else None
        if reason:
            skipped[entry.name] = reason
            continue
        kw = {"extractor": cfg.fd_features} if "extractor" in entry.params else {}
        try:
            made[entry.name] = METRICS.create(entry.name, **kw)
        except Exception as e:  # a metric that cannot run here (weights missing, ...) is a reason
            skipped[entry.name] = f"{type(e).__name__}: {e}"
    return made, skipped


def describe_metrics(cfg: BenchConfig) -> dict[str, dict[str, Any]]:
    """``{name: {label, suite, primary, higher_is_better}}`` of the metrics a run uses (for
    ``results.json``: reports take their column headers from it)."""
    out: dict[str, dict[str, Any]] = {}
    for suite in ("recon", *cfg.suites):
        for name, m in suite_metrics(suite, cfg)[0].items():
            out[name] = {
                "label": m.label or name,
                "suite": m.suite,
                "primary": m.primary,
                "higher_is_better": m.higher_is_better,
                "per_image": m.per_image,
            }
    return out


def _batch(pairs: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 ``[S, S, 3]`` pairs -> float ``[B, 3, S, S]`` in [0, 1], twice."""
    return from_uint8(np.stack([a for a, _ in pairs])), from_uint8(np.stack([b for _, b in pairs]))


class Suite:
    """Base of the suites (see the module docstring)."""

    name: ClassVar[str] = ""

    def __init__(self) -> None:
        self.skipped: dict[str, str] = {}  # {suite or metric: reason}
        self.active = True

    def begin(self, ctx: PointContext) -> None:
        self.ctx = ctx

    def skip(self, reason: str, key: str | None = None) -> None:
        self.skipped[key or self.name] = reason
        self.active = False

    def add(self, item: ItemResult) -> None:
        pass

    def finish(self, record: dict[str, Any]) -> None:
        record["skipped_suites"].update(self.skipped)


SUITES: Registry[Suite] = Registry("bench suite")
_ORDER = ("recon", "text", "face", "codebook", "robustness", "speed")  # speed last: it times after the rest


class ReconSuite(Suite):
    """Recon metrics of the evaluation square. Per-image metrics (PSNR, SSIM, MS-SSIM) run
    for every point — each image's row and the rate–distortion axis need them — and write
    one column each into the rows; the others (FD, DFD) run when ``recon`` is asked for."""

    name = "recon"

    def begin(self, ctx: PointContext) -> None:
        super().begin(ctx)
        made, self.skipped = suite_metrics("recon", ctx.cfg)
        wanted = "recon" in ctx.cfg.suites
        if not wanted:
            self.skipped = {}
        self.per_image = {n: m for n, m in made.items() if m.per_image}
        self.dataset = {n: m for n, m in made.items() if not m.per_image and wanted}
        self.pending: list[ItemResult] = []
        self.rows: list[dict[str, Any]] = []

    def add(self, item: ItemResult) -> None:
        self.pending.append(item)
        self.rows.append(item.row)
        if len(self.pending) == _METRIC_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        xb, yb = _batch([(it.fitted, it.rec8) for it in self.pending])
        for name, m in self.per_image.items():
            try:
                values = [float(v) for v in m.scores(xb, yb)]
            except ValueError:  # this metric cannot score these images (MS-SSIM below 176 px)
                values = [math.nan] * len(self.pending)
            for it, v in zip(self.pending, values, strict=True):
                it.row[name] = v
        for m in self.dataset.values():
            m.update(xb, yb)
        self.pending.clear()

    def finish(self, record: dict[str, Any]) -> None:
        self._flush()
        recon = record.setdefault("recon", {})
        for name, m in self.per_image.items():
            recon[name] = m.mean_of([r[name] for r in self.rows])
        for name, m in self.dataset.items():
            recon[name] = m.compute()
        super().finish(record)


class _Worst:
    """The few worst text/face instances of a point, with crops for the report."""

    def __init__(self, suite: str, keep: int = 6):
        self.suite, self.keep = suite, keep
        self.items: list[tuple[tuple[float, ...], dict[str, Any]]] = []

    def _badness(self, rec: dict[str, Any]) -> tuple[float, ...]:
        if self.suite == "text":  # failed words first, the largest of them first
            return (float(rec["exact"]), float(rec["ned"]), -float(rec["height_ratio"]))
        return (-float(rec["distance"]), -float(rec["size_ratio"]))

    def offer(self, rec: dict[str, Any], original: np.ndarray, recon: np.ndarray, rel: str) -> None:
        if self.suite == "text" and rec.get("exact", 1.0) >= 1.0:
            return
        if self.suite == "face" and not math.isfinite(float(rec.get("distance", math.nan))):
            return
        key = self._badness(rec)
        if len(self.items) >= self.keep and key >= self.items[-1][0]:
            return
        x0, y0, x1, y1 = (round(float(v)) for v in rec["box"])
        m = max(2, (y1 - y0) // 3)
        box = (max(0, x0 - m), max(0, y0 - m), min(original.shape[1], x1 + m), min(original.shape[0], y1 + m))
        caption = (
            f"{rel}: '{rec['text']}' read as '{rec['pred']}' (height {y1 - y0}px)"
            if self.suite == "text"
            else f"{rel}: distance {float(rec['distance']):.3f} (face {y1 - y0}px)"
        )
        case = {
            "caption": caption,
            "original_png": _png_b64(original, box),
            "reconstruction_png": _png_b64(recon, box),
        }
        self.items.append((key, case))
        self.items.sort(key=lambda kv: kv[0])
        del self.items[self.keep :]

    def cases(self) -> list[dict[str, Any]]:
        return [c for _, c in self.items]


def _png_b64(a: np.ndarray, box: tuple[int, int, int, int], min_height: int = 48) -> str:
    from PIL import Image

    im = Image.fromarray(a).crop(box)
    if im.height < min_height:  # enlarge small crops (nearest: show the pixels as they are)
        s = -(-min_height // max(im.height, 1))
        im = im.resize((im.width * s, im.height * s), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class AnnotationSuite(Suite):
    """Metrics scored at annotated boxes in the original geometry (text words, faces):
    every registered metric whose ``suite`` is this suite's name, fed each image's
    ``annotations`` (``BenchImage.words`` / ``.faces``). Writes ``record[metric]`` and the
    worst instances, ``record[metric + "_worst"]``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name  # type: ignore[misc]  # one class, registered per suite

    def begin(self, ctx: PointContext) -> None:
        super().begin(ctx)
        made, reasons = suite_metrics(self.name, ctx.cfg)
        self.metrics = made
        have = {m.annotations for m in made.values()} or {_ANNOTATION_OF.get(self.name, "")}
        if not any(getattr(i, a, None) for i in ctx.data.items for a in have):
            self.skip("no annotations of this kind in the data")
            return
        if not made:
            self.skip(next(iter(reasons.values()), "no metric of this suite is registered"))
            return
        self.skipped = {k: v for k, v in reasons.items() if k != self.name}
        self.seen = dict.fromkeys(made, 0)  # instances already offered to ``worst``
        self.worst = {n: _Worst(n) for n in made}

    def add(self, item: ItemResult) -> None:
        if not self.active:
            return
        pair = None
        for name, m in self.metrics.items():
            ann = getattr(item.item, m.annotations)
            if not ann:
                continue
            back = item.back()
            pair = pair or (from_uint8(item.image[None]), from_uint8(back[None]))
            m.update(*pair, [ann])
            new = m.records(start=self.seen[name])
            self.seen[name] += len(new)
            for rec in new:
                self.worst[name].offer(rec, item.image, back, item.item.rel)

    def finish(self, record: dict[str, Any]) -> None:
        if self.active:
            for name, m in self.metrics.items():
                record[name] = m.compute()
                record[name + "_worst"] = self.worst[name].cases()
        super().finish(record)


_ANNOTATION_OF = {"text": "words", "face": "faces"}  # when no metric of the suite could be made


class _CodebookCounts:
    """Histogram of ids per codebook: used fraction, perplexity, empirical entropy."""

    def __init__(self, vocab: int):
        self.vocab = vocab
        self.counts: torch.Tensor | None = None

    def add(self, ids: torch.Tensor, lengths: torch.Tensor | None, num_codebooks: int = 1) -> None:
        """ids: long ``[B, ...]`` (last dim = codebooks when ``num_codebooks > 1``)."""
        flat = ids.reshape(ids.shape[0], -1, num_codebooks)
        if self.counts is None:
            self.counts = torch.zeros(num_codebooks, self.vocab, dtype=torch.float64)
        for b in range(flat.shape[0]):
            rows = flat[b] if lengths is None else flat[b, : int(lengths[b])]
            for c in range(num_codebooks):
                self.counts[c] += torch.bincount(rows[:, c].clamp(0, self.vocab - 1), minlength=self.vocab)

    def compute(self) -> dict[str, float]:
        if self.counts is None:
            return {}
        p = self.counts / self.counts.sum(-1, keepdim=True).clamp_min(1)
        ent = -(p * torch.log2(p.clamp_min(1e-300))).sum(-1)
        return {
            "used_fraction": float((self.counts > 0).double().mean()),
            "perplexity": float((2**ent).mean()),
            "entropy_bits": float(ent.mean()),
            "nominal_bits": math.log2(self.vocab),
            "tokens_seen": float(self.counts.sum()),
        }


class CodebookSuite(Suite):
    """Codebook use of a discrete tokenizer over the images: ``record["codebook"]``."""

    name = "codebook"

    def begin(self, ctx: PointContext) -> None:
        super().begin(ctx)
        tok = ctx.tok
        if not (tok.kind == "discrete" and tok.vocab_size):
            self.skip(f"not a discrete tokenizer ({tok.kind})")
            return
        self.counts = _CodebookCounts(tok.vocab_size)
        self.num_codebooks = int(getattr(tok, "num_codebooks", 1))

    def add(self, item: ItemResult) -> None:
        if self.active and item.ids is not None:
            self.counts.add(item.ids, item.lengths, self.num_codebooks)

    def finish(self, record: dict[str, Any]) -> None:
        if self.active:
            record["codebook"] = self.counts.compute()
        super().finish(record)


class RobustnessSuite(Suite):
    """PSNR and FD of reconstructions from perturbed tokens (pPSNR, pFD), against the
    originals: ``record["robustness"]``. The items carry the perturbed decode
    (:func:`vistok.bench.items.perturb`); pFD runs when the ``recon`` suite's FD does."""

    name = "robustness"

    def begin(self, ctx: PointContext) -> None:
        super().begin(ctx)
        self.psnr = METRICS.create("psnr")
        self.fd: Metric | None = None
        if "recon" in ctx.cfg.suites:
            self.fd = suite_metrics("recon", ctx.cfg)[0].get("fd")
        self.values: list[float] = []
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.note: str | None = None

    def add(self, item: ItemResult) -> None:
        if item.rob_note is not None:
            self.note = item.rob_note
        if item.rob8 is None:
            return
        self.pending.append((item.fitted, item.rob8))
        if len(self.pending) == _METRIC_BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        xb, yb = _batch(self.pending)
        self.values.extend(float(v) for v in self.psnr.scores(xb, yb))
        if self.fd is not None:
            self.fd.update(xb, yb)
        self.pending.clear()

    def finish(self, record: dict[str, Any]) -> None:
        self._flush()
        if self.note is not None:
            record["robustness"] = {
                "perturbation": self.note,
                "psnr": float(np.mean(self.values)),  # not capped: perturbed tokens never give inf
                "fd": self.fd.compute() if self.fd is not None else None,
            }
        else:
            self.skip(
                "no tokens to perturb (codec bytes)"
                if self.ctx.tok.kind == "codec"
                else "the tokenizer offers no neighbours() for its ids"
            )
        super().finish(record)


def peak_rss_mb() -> float:
    """The process's peak resident set so far, in MB."""
    import resource
    import sys

    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def best_seconds(fn: Callable[[], object], *, warmup: int, repeats: int, device: str = "cpu") -> float:
    """Wall time of ``fn()``: ``warmup`` untimed calls, then the best of ``repeats`` timed
    ones (the quantizer benchmark's method: the minimum is the least disturbed run)."""

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()

    for _ in range(warmup):
        fn()
    best = math.inf
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


@dataclass
class _SpeedInputs:
    images: list[np.ndarray] = field(default_factory=list)  # model inputs, uint8 [M, M, 3]
    budget: int | None = None


class SpeedSuite(Suite):
    """Encode and decode throughput at the batch sizes of :attr:`BenchConfig.speed_batches`,
    on the point's first images at the model's input size (repeated to fill a batch):
    ``speed_warmup`` untimed calls, then the best of ``speed_repeats``. The headline
    ``encode_images_per_s``/``decode_images_per_s`` is the first batch size (1: one file
    at a time, as ``vistok encode``/``reconstruct`` run); every size is under ``by_batch``."""

    name = "speed"

    def begin(self, ctx: PointContext) -> None:
        super().begin(ctx)
        if isinstance(ctx.tok, PrecomputedReconstructions):
            self.skip("reconstructions made elsewhere: nothing to time")
            return
        self.inputs = _SpeedInputs()

    def add(self, item: ItemResult) -> None:
        if self.active and len(self.inputs.images) < max(self.ctx.cfg.speed_batches):
            self.inputs.images.append(item.model_input)
            if self.inputs.budget is None:
                self.inputs.budget = item.budget

    def _time(self, batch: int) -> dict[str, float]:
        cfg, tok, k = self.ctx.cfg, self.ctx.tok, self.ctx.point.num_tokens
        imgs = self.inputs.images
        x = from_uint8(np.stack([imgs[i % len(imgs)] for i in range(batch)])).to(cfg.device)
        b = self.inputs.budget
        coder = tok if b is None else tok.with_budget(b)  # type: ignore[attr-defined]
        out: list[Any] = []  # the last encode's tokens: what decode is timed on

        def encode() -> None:
            out[:] = [coder.encode(x, num_tokens=k)]

        with torch.no_grad():
            enc = best_seconds(encode, warmup=cfg.speed_warmup, repeats=cfg.speed_repeats, device=cfg.device)
            tokens = out[0]
            dec = best_seconds(
                lambda: coder.decode(tokens),
                warmup=cfg.speed_warmup,
                repeats=cfg.speed_repeats,
                device=cfg.device,
            )
        return {
            "encode_images_per_s": batch / enc,
            "decode_images_per_s": batch / dec,
            "encode_s": enc,
            "decode_s": dec,
        }

    def finish(self, record: dict[str, Any]) -> None:
        if self.active and self.inputs.images:
            cfg = self.ctx.cfg
            by_batch = {str(b): self._time(b) for b in cfg.speed_batches}
            head = by_batch[str(cfg.speed_batches[0])]
            record["speed"] = {
                "encode_images_per_s": head["encode_images_per_s"],
                "decode_images_per_s": head["decode_images_per_s"],
                "batch": cfg.speed_batches[0],
                "by_batch": by_batch,
                "warmup": cfg.speed_warmup,
                "repeats": cfg.speed_repeats,
                "input_size": self.ctx.model_size,
                "threads": torch.get_num_threads(),
                "peak_rss_mb": peak_rss_mb(),
                "note": f"wall clock, best of {cfg.speed_repeats} after {cfg.speed_warmup} warm-up "
                "call(s), at the model's input size; images/s = batch / seconds per call; "
                "peak RSS of the whole process",
            }
        super().finish(record)


SUITES.register("recon")(lambda: ReconSuite())
SUITES.register("text")(lambda: AnnotationSuite("text"))
SUITES.register("face")(lambda: AnnotationSuite("face"))
SUITES.register("codebook")(lambda: CodebookSuite())
SUITES.register("robustness")(lambda: RobustnessSuite())
SUITES.register("speed")(lambda: SpeedSuite())


def open_suites(ctx: PointContext) -> list[Suite]:
    """The suites of one point, begun: ``recon`` always (its per-image metrics fill every
    row), then the others of ``ctx.cfg.suites`` in the order of :data:`SUITES`."""
    names = ["recon"] + [n for n in _ORDER[1:] if n in ctx.cfg.suites]
    names += [n for n in ctx.cfg.suites if n not in names]  # suites registered elsewhere
    suites = [SUITES.get(n).factory() for n in names]
    for s in suites:
        s.begin(ctx)
    return suites
