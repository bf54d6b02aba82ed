"""One figure per study result (``results.json`` -> PNG), drawn from its measurements only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_study"]

_LABELS = {"psnr": "PSNR (dB)", "fd": "FD-MobileNetV2", "usage": "codebook usage",
           "usage_vs_uniform": "usage / uniform", "perplexity": "perplexity"}  # fmt: skip


def _per_seed(result: dict[str, Any], arm: str, metric: str) -> list[float]:
    return [m[metric] for m in result["measurements"][arm].values() if metric in m]


def plot_study(result: dict[str, Any], path: Path) -> None:
    """Draw ``result`` (see :mod:`vistok.study.runner`) into ``path``.

    ``per_k``: each metric against the token count ``k`` (``metric@k`` keys), one line per
    arm, the seeds' spread as error bars; ``setting``: each metric against the arms'
    setting; ``bars``: one bar (mean) per arm with each seed as a dot.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = result["plot_metrics"]
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.2 * len(metrics), 3.4), squeeze=False)
    arms = result["arms"]
    for ax, metric in zip(axes[0], metrics):
        if result["plot_kind"] == "per_k":
            for a in arms:
                keys = [k for k in result["summary"][a["name"]] if k.startswith(f"{metric}@")]
                ks = sorted(int(k.split("@")[1]) for k in keys)
                mean = [result["summary"][a["name"]][f"{metric}@{k}"]["mean"] for k in ks]
                err = [result["summary"][a["name"]][f"{metric}@{k}"]["spread"] for k in ks]
                ax.errorbar(ks, mean, yerr=err, marker="o", ms=3, capsize=2, label=a["label"])
            ax.set_xscale("log", base=2)
            ax.set_xlabel("tokens kept (k)")
        elif result["plot_kind"] == "setting":
            xs = [a["setting"] for a in arms]
            mean = [result["summary"][a["name"]].get(metric, {"mean": np.nan})["mean"] for a in arms]
            err = [result["summary"][a["name"]].get(metric, {"spread": 0.0})["spread"] for a in arms]
            ax.errorbar(xs, mean, yerr=err, marker="o", capsize=2)
            ax.set_xlabel(result.get("setting_label", "setting"))
        else:
            names = [a["name"] for a in arms]
            mean = [result["summary"][n].get(metric, {"mean": np.nan})["mean"] for n in names]
            ax.bar(range(len(names)), mean, color="#9bb7d4")
            for i, n in enumerate(names):
                vals = _per_seed(result, n, metric)
                ax.plot([i] * len(vals), vals, "k.", ms=5)
            ax.set_xticks(range(len(names)), [a["label"] for a in arms], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(_LABELS.get(metric, metric))
        ax.grid(alpha=0.3)
    if result["plot_kind"] == "per_k":
        axes[0][0].legend(fontsize=7)
    tag = " (quick: smoke run)" if result["quick"] else ""
    fig.suptitle(f"{result['study']}: {result['verdict']}{tag}", fontsize=10)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
