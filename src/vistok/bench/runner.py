"""`vistok bench`: run tokenizers through the protocol and measure every suite.

A *point* is one tokenizer setting (a spec, and a token count for variable-length
tokenizers). Each point's results are written atomically to ``points/<key>.json`` as
soon as it finishes, so an interrupted run resumes where it stopped. Under torchrun the
points are split across ranks and rank 0 merges them.

One point is three steps: each image -> an :class:`~vistok.bench.items.ItemResult`
(load, fit, code or read the resume cache, perturb, save; :mod:`vistok.bench.items`); each
result -> every suite's accumulator (:mod:`vistok.bench.suites`, metrics from the
registry); the point's record (:func:`_record`, then each suite's part).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vistok.bench.config import BenchConfig
from vistok.bench.data import BenchData, BenchImage
from vistok.bench.items import ItemCache, Perturbation, code_items, fit_image
from vistok.bench.metrics.cache import ORIGINALS
from vistok.bench.points import (
    Point,
    budgets_from,
    curve_key,
    equal_bytes_points,
    expand_points,
    point_dirname,
    resolve_budget,
)
from vistok.bench.protocol import PROTOCOL_VERSION, Protocol
from vistok.bench.suites import PointContext, describe_metrics, open_suites, peak_rss_mb
from vistok.data.images import ImageLoadError, load_image_uint8
from vistok.models.codecs import ImageCodec
from vistok.tokenizer import Tokenizer
from vistok.utils.io import atomic_write_text

__all__ = [
    "SCHEMA_VERSION",
    "BenchConfig",
    "Point",
    "budgets_from",
    "equal_bytes_points",
    "expand_points",
    "point_dirname",
    "run_bench",
    "run_point",
]

SCHEMA_VERSION = "vistok.bench.results/1"


def _key(point: Point, data: BenchData, cfg: BenchConfig) -> str:
    blob = json.dumps([point.ident, data.sha256, data.name, asdict(cfg)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def environment(cfg: BenchConfig) -> dict[str, Any]:
    import PIL

    import vistok

    libs: dict[str, str] = {"torch": torch.__version__, "numpy": np.__version__, "pillow": PIL.__version__}
    for mod in ("rapidocr", "onnxruntime", "dlib", "skimage", "scipy"):
        try:
            m = __import__(mod)
            libs[mod] = getattr(m, "__version__", "?")
        except Exception:
            libs[mod] = "not installed"
    return {
        "vistok": vistok.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": libs,
        "device": cfg.device,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


# ---- one point ----------------------------------------------------------------------
def _record(
    point: Point, tok: Tokenizer, cfg: BenchConfig, model_size: int, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """The summary of a point before the suites add theirs: what was measured, and the rate."""

    def mean(key: str) -> float:
        vals = [r[key] for r in rows if not math.isnan(r[key])]
        return float(np.mean(vals)) if vals else math.nan

    ref = point.budget_of.spec if point.budget_of is not None else None
    return {
        "point": point.label,
        "spec": point.spec,
        "num_tokens": point.num_tokens,
        "curve": curve_key(point.spec, equal_bytes_reference=ref),
        "tokenizer": tok.describe(),
        "images": len(rows),
        "eval_size": cfg.protocol.size,
        "model_size": model_size,
        "rate": {"bits_per_image": mean("bits"), "bpp": mean("bpp"), "bpp_original": mean("bpp_original")},
        "skipped_images": [],
        "skipped_suites": {},
        "per_image": rows,
    }


class _Laps:
    """Wall seconds by key: each :meth:`lap` adds the time since the previous lap to its key."""

    def __init__(self, keys: list[str]) -> None:
        self.seconds = dict.fromkeys(keys, 0.0)
        self._last = time.perf_counter()

    def lap(self, key: str) -> None:
        now = time.perf_counter()
        self.seconds[key] += now - self._last
        self._last = now


def run_point(
    tok: Tokenizer,
    point: Point,
    data: BenchData,
    cfg: BenchConfig,
    save_dir: Path | None = None,
    cache_dir: Path | None = None,
    budgets: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Reconstruct every image of ``data`` with ``tok`` at ``point`` and measure the suites.

    Each image is coded once (:func:`vistok.bench.items.code_items`) and handed to every
    suite (:mod:`vistok.bench.suites`); each suite then writes its part of the record.

    ``save_dir``: also write each reconstruction (evaluation geometry, 8-bit PNG) to
    ``save_dir/<point_dirname(label)>/<image>.png`` — the layout ``--reconstructions`` reads back.
    ``cache_dir``: per-image tokenizer outputs are kept there, and reused when present, so a
    run interrupted inside a point redoes only the images it had not reached.
    ``budgets``: ``{file: bytes}`` — encode each image with ``tok.with_budget(bytes)`` (``tok``
    must be a codec with a byte budget); rows then record ``budget_bytes`` and ``over_budget``
    (file larger than the budget); images without a budget, or whose budget the codec cannot
    meet without exceeding it (:class:`BudgetError`), are skipped with the reason.
    """
    if budgets is not None and not (isinstance(tok, ImageCodec) and tok.supports_budget):
        raise TypeError(f"{tok.spec}: per-image byte budgets need a codec with a byte budget")
    model_size = tok.input_size or cfg.protocol.size
    if model_size % tok.stride:
        raise ValueError(
            f"{tok.spec}: evaluation size {model_size} is not a multiple of its stride {tok.stride}"
        )
    t_start = time.perf_counter()
    suites = open_suites(PointContext(tok, point, cfg, data, model_size))
    perturbation = (
        Perturbation(cfg.robust_alpha, cfg.robust_delta, cfg.robust_noise, cfg.seed)
        if "robustness" in cfg.suites
        else None
    )
    skipped: list[tuple[str, str]] = []
    rows: list[dict[str, Any]] = []
    tok.eval()
    with torch.no_grad():
        items = code_items(
            tok,
            point,
            data,
            cfg.protocol,
            model_size=model_size,
            device=cfg.device,
            cache=ItemCache(cache_dir),
            save_dir=save_dir,
            budgets=budgets,
            perturbation=perturbation,
            skipped=skipped,
        )
        # Where the point's time goes: coding (load, fit, encode/decode, perturb, save, the
        # record) and each suite (its ``add`` calls and its ``finish``), in wall seconds.
        laps = _Laps(["code", *(suite.name for suite in suites)])
        for item in items:
            laps.lap("code")
            rows.append(item.row)
            for suite in suites:
                suite.add(item)
                laps.lap(suite.name)
        laps.lap("code")
    if not rows:
        raise RuntimeError(f"{point.label}: no image could be processed ({len(skipped)} skipped)")
    out = _record(point, tok, cfg, model_size, rows)
    out["skipped_images"] = [list(s) for s in skipped]
    laps.lap("code")
    for suite in suites:
        suite.finish(out)
        laps.lap(suite.name)
    out["wall_s"] = time.perf_counter() - t_start
    out["seconds"] = {k: round(v, 3) for k, v in laps.seconds.items()}
    return out


# ---- equal-bytes points ------------------------------------------------------------------
class _Smallest:
    """The smallest file each budget codec can make for each image (memoized for the run):
    a budget below it cannot be met. Images are fitted to the evaluation square once."""

    def __init__(self, proto: Protocol):
        self.proto = proto
        self._inputs: dict[str, np.ndarray | None] = {}
        self._sizes: dict[tuple[str, str], int | None] = {}

    def of(self, codec: ImageCodec, item: BenchImage) -> int | None:
        """Bytes of ``codec``'s smallest file for ``item`` (``None``: the image does not load)."""
        key = (codec.spec, item.rel)
        if key not in self._sizes:
            if item.rel not in self._inputs:
                try:
                    img = load_image_uint8(item.path)
                except ImageLoadError:
                    self._inputs[item.rel] = None
                else:  # codecs take any size: their input is the evaluation square
                    self._inputs[item.rel] = fit_image(img, self.proto, self.proto.size)[2]
            x = self._inputs[item.rel]
            self._sizes[key] = None if x is None else codec.min_bytes(x)
        return self._sizes[key]


def _span(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "mean": float(np.mean(values)), "max": max(values)} if values else {}


def _range(span: dict[str, float]) -> str:
    if not span:
        return "?"
    return f"{span['min']:.0f}" if span["min"] == span["max"] else f"{span['min']:.0f}-{span['max']:.0f}"


def run_equal_bytes_point(
    codec: ImageCodec,
    point: Point,
    reference: dict[str, Any],
    data: BenchData,
    cfg: BenchConfig,
    smallest: _Smallest,
    save_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """``codec`` at each image's byte count in the finished ``reference`` point's results.

    The budgets are :func:`budgets_from` ``reference``. When no image's budget can be met
    (every budget below the codec's smallest file for that image) the point is not measured
    — it would only repeat the codec's lowest setting — and its record says why
    (``images: 0``, ``equal_bytes.not_run``). Otherwise :func:`run_point` with the budgets;
    the record's ``equal_bytes`` gives the reference, the budgets, how many images fit and
    how many files went over budget (full-size codecs at their lowest quality).
    """
    assert point.budget_of is not None
    t0 = time.perf_counter()
    budgets = budgets_from(reference)
    mins = {it.rel: smallest.of(codec, it) for it in data.items if it.rel in budgets}
    fits = [rel for rel, m in mins.items() if m is not None and m <= budgets[rel]]
    info: dict[str, Any] = {
        "reference": point.budget_of.label,
        "reference_spec": point.budget_of.spec,
        "reference_num_tokens": point.budget_of.num_tokens,
        "budget_bytes": _span(list(budgets.values())),
        "smallest_file_bytes": _span([m for m in mins.values() if m is not None]),
        "images_with_budget": len(budgets),
        "images_that_fit": len(fits),
    }
    describe = codec.describe()
    describe["config"]["bytes"] = "per image: equal_bytes.reference"
    if not fits:
        info["not_run"] = (
            f"no {codec.file_format} file fits: budget {_range(info['budget_bytes'])} B per image, "
            f"smallest {codec.spec} file {_range(info['smallest_file_bytes'])} B"
        )
        return {
            "point": point.label,
            "spec": point.spec,
            "num_tokens": None,
            "curve": curve_key(point.spec, equal_bytes_reference=point.budget_of.spec),
            "tokenizer": describe,
            "images": 0,
            "eval_size": cfg.protocol.size,
            "equal_bytes": info,
            "skipped_images": [],
            "skipped_suites": {},
            "per_image": [],
            "wall_s": time.perf_counter() - t0,
        }
    res = run_point(codec, point, data, cfg, save_dir, cache_dir, budgets=budgets)
    info["over_budget"] = sum(bool(r.get("over_budget")) for r in res["per_image"])
    res["tokenizer"], res["equal_bytes"] = describe, info
    return res


# ---- the run ----------------------------------------------------------------------------
def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), world
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _memoized(create: Callable[[str], Tokenizer]) -> Callable[[str], Tokenizer]:
    """``create`` that builds each spec once per run (expansion and points share them)."""
    made: dict[str, Tokenizer] = {}

    def get(spec: str) -> Tokenizer:
        if spec not in made:
            made[spec] = create(spec)
        return made[spec]

    return get


@dataclass
class _Run:
    """What every point of a run shares: where results go, the data, the settings."""

    out: Path
    data: BenchData
    cfg: BenchConfig
    create: Callable[[str], Tokenizer]
    save: Path | None
    progress: bool
    smallest: _Smallest

    def path(self, point: Point) -> Path:
        return self.out / "points" / f"{_key(point, self.data, self.cfg)}.json"

    def reference(self, point: Point) -> dict[str, Any]:
        """The finished results of an equal-bytes point's reference point."""
        assert point.budget_of is not None
        return json.loads(self.path(point.budget_of).read_text())

    def resolve(self, point: Point) -> Point:
        """An equal-bytes point labelled by its spec when its budgets are one number
        (:func:`resolve_budget`); other points as they are."""
        if point.budget_of is None:
            return point
        return resolve_budget(point, self.reference(point), self.create(point.spec))  # type: ignore[arg-type]

    def run(self, points: list[Point], desc: str) -> None:
        """Measure ``points`` not yet on disk, writing each one's results as it finishes."""
        from vistok.utils.progress import progress

        bar = progress(points, desc=desc, unit="pt", enabled=self.progress)
        for point in bar:
            point = self.resolve(point)
            path = self.path(point)
            if path.is_file():
                continue  # resumed: this point finished in an earlier run
            bar.set_postfix_str(point.label)
            tok = self.create(point.spec).to(self.cfg.device)
            partial = path.with_suffix(".partial")
            if point.budget_of is None:
                res = run_point(tok, point, self.data, self.cfg, self.save, cache_dir=partial)
            else:
                res = run_equal_bytes_point(
                    tok,  # type: ignore[arg-type]  # checked by equal_bytes_points
                    point,
                    self.reference(point),
                    self.data,
                    self.cfg,
                    self.smallest,
                    self.save,
                    cache_dir=partial,
                )
            atomic_write_text(path, json.dumps(res, default=float) + "\n")
            shutil.rmtree(partial, ignore_errors=True)


def run_bench(
    specs: list[str],
    data: BenchData,
    cfg: BenchConfig,
    out_dir: str | Path,
    *,
    sweep: bool = True,
    create: Callable[[str], Tokenizer] | None = None,
    progress: bool = True,
    save_reconstructions: str | Path | None = None,
    equal_bytes: list[str] | None = None,
) -> dict[str, Any] | None:
    """Run every point, write ``results.json`` into ``out_dir``; returns the results (rank 0).

    ``create`` builds a tokenizer from a spec (default ``vistok.create``);
    ``save_reconstructions`` writes every reconstruction as PNG (see :func:`run_point`);
    ``equal_bytes``: codec specs with a byte budget (``thumbnail``, ``webp``, ...) measured at
    every learned point's per-image bytes (:func:`equal_bytes_points`), after the points
    they depend on; each follows its reference point in the results.
    """
    import vistok

    cfg.validate()
    make = _memoized(create or vistok.create)
    out = Path(out_dir)
    (out / "points").mkdir(parents=True, exist_ok=True)
    rank, world = _dist()
    points = expand_points(specs, sweep=sweep, create=make)
    eq_points = equal_bytes_points(points, list(equal_bytes or []), create=make)
    t0 = time.perf_counter()
    save = Path(save_reconstructions) if save_reconstructions else None
    run = _Run(out, data, cfg, make, save, progress, _Smallest(cfg.protocol))
    tag = f"[{rank}]" if world > 1 else ""
    ORIGINALS.clear()  # the originals' features, computed once for every point of this run
    try:
        run.run(points[rank::world], f"bench{tag}")
        if eq_points:
            _barrier(world)  # every reference point's results are on disk before its budgets are read
            run.run(eq_points[rank::world], f"equal bytes{tag}")
    finally:
        ORIGINALS.clear()
    _barrier(world)
    if rank != 0:
        return None
    ordered = [q for p in points for q in (p, *(run.resolve(e) for e in eq_points if e.budget_of == p))]
    results = {
        "schema": SCHEMA_VERSION,
        "protocol": {"version": PROTOCOL_VERSION, **cfg.protocol.describe()},
        "config": {k: v for k, v in asdict(cfg).items() if k != "protocol"},
        "metrics": describe_metrics(cfg),
        "data": data.describe(),
        "environment": environment(cfg),
        "points": [json.loads(run.path(p).read_text()) for p in ordered],
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": peak_rss_mb(),
        "shards": world,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float) + "\n")
    return results
