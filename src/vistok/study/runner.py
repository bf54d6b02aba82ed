"""Run one study: train its arms for every seed, measure them, apply the declared checks.

Results land in ``DIR/<study>/results.json`` (format ``vistok.study/1``) with a plot
``DIR/<study>/<study>.png``. Trained arms live in ``DIR/runs/<recipe hash>/`` and are reused
by any later run (or study) that asks for the same recipe and seed, so an interrupted
``vistok study --all`` continues where it stopped.

``mean ± spread`` everywhere: the mean over seeds and half the range (max - min) / 2.
"""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vistok.study.base import Study, verdict
from vistok.study.context import StudyContext, finite

__all__ = ["RESULT_FORMAT", "load_result", "run_study", "summarize"]

RESULT_FORMAT = "vistok.study/1"


def summarize(values: list[float]) -> dict[str, float]:
    """``{"mean", "spread"}`` of per-seed values (spread = half the range)."""
    a = np.asarray(values, dtype=float)
    return {"mean": float(np.nanmean(a)), "spread": float((np.nanmax(a) - np.nanmin(a)) / 2)}


def run_study(study: Study, ctx: StudyContext, seeds: list[int]) -> dict[str, Any]:
    """Train and measure every arm of ``study`` for each seed; return (and write) the result."""
    from vistok.study.plots import plot_study
    from vistok.utils.io import atomic_write_text

    name = getattr(study, "registry_name", type(study).__name__)
    if study.budget_changes and not ctx.quick:
        ctx = ctx.with_budget(**study.budget_changes)
    out = ctx.root / name
    out.mkdir(parents=True, exist_ok=True)
    t0, c0 = time.perf_counter(), time.process_time()
    study.budget = ctx.budget
    arms = study.arms()
    base = study.base_recipe()
    measured: dict[str, dict[str, dict[str, float]]] = {a.name: {} for a in arms}
    runs: dict[str, dict[str, Any]] = {a.name: {} for a in arms}
    for seed in seeds:
        trained = {}
        for arm in arms:
            if not arm.train:
                continue
            trained[arm.name] = ctx.train(ctx.recipe(base, arm.recipe, seed), arm.name, seed)
        for arm in arms:
            run = trained[arm.source or arm.name]
            torch.manual_seed(seed)
            metrics = {k: finite(float(v)) for k, v in study.measure_arm(_as(run, arm.name), ctx).items()}
            measured[arm.name][str(seed)] = metrics
            runs[arm.name][str(seed)] = {
                "folder": str(run.folder), "train_seconds": run.info.get("train_seconds"),
                "train_cpu_seconds": run.info.get("train_cpu_seconds"), "steps": run.info.get("steps"),
            }  # fmt: skip
    checks = []
    for check in study.checks():
        effects = [float(check.effect({a: measured[a][str(s)] for a in measured})) for s in seeds]
        per_seed = [bool(check.holds(e)) for e in effects]
        checks.append({"name": check.name, "text": check.text, "unit": check.unit, "effects": effects,
                       "effect": summarize(effects), "per_seed": per_seed, "passed": all(per_seed)})  # fmt: skip
    summary = {
        a: {m: summarize([measured[a][str(s)][m] for s in seeds]) for m in measured[a][str(seeds[0])]}
        for a in measured
    }
    result = {
        "format": RESULT_FORMAT,
        "study": name,
        "mechanism": study.mechanism,
        "paper": study.paper,
        "claim": study.claim,
        "measure": study.measure,
        "quick": ctx.quick,
        "seeds": seeds,
        "budget": asdict(ctx.budget),
        "data": ctx.data_info,
        "arms": [
            {
                "name": a.name,
                "label": a.label,
                "recipe": a.recipe,
                "setting": study.setting(a),
                "source": a.source,
            }
            for a in arms
        ],
        "base_recipe": base,
        "measurements": measured,
        "summary": summary,
        "runs": runs,
        "checks": checks,
        "verdict": verdict([c["passed"] for c in checks]),
        "seconds": time.perf_counter() - t0,
        "cpu_seconds": time.process_time() - c0,
        "versions": {"torch": torch.__version__, "python": platform.python_version()},
        "plot": f"{name}.png",
        "plot_kind": study.plot_kind,
        "plot_metrics": list(study.plot_metrics),
    }
    plot_study(result, out / f"{name}.png")
    atomic_write_text(out / "results.json", json.dumps(result, indent=1))
    return result


def _as(run: Any, arm: str) -> Any:
    """``run`` seen as arm ``arm`` (arms that measure another arm's model keep their name)."""
    return replace(run, arm=arm)


def load_result(path: str | Path) -> dict[str, Any]:
    """A ``results.json`` written by :func:`run_study` (format checked)."""
    data = json.loads(Path(path).read_text())
    if data.get("format") != RESULT_FORMAT:
        raise ValueError(f"{path}: not a vistok study result (format {data.get('format')!r})")
    return data
