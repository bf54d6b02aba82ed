"""vistok study: the measurement helpers against references, the verdict rule, the report,
and every registered study end to end in ``--quick`` mode (schema of its results)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from vistok.study import QUICK, STUDIES, Check, verdict
from vistok.study.context import StudyContext, codebook_stats, deep_merge
from vistok.study.report import BEGIN, END, update_doc
from vistok.study.runner import RESULT_FORMAT, load_result, run_study, summarize


def _corpus_installed() -> bool:
    from vistok.data.corpus import corpus_images

    try:
        return bool(corpus_images("train")) and bool(corpus_images("heldout"))
    except FileNotFoundError:
        return False


def test_codebook_stats_against_numpy():
    rng = np.random.default_rng(3)
    ids = rng.integers(0, 50, size=(7, 9))  # 63 ids over 50 of 64 codes at most
    s = codebook_stats(torch.from_numpy(ids), 64)
    counts = np.bincount(ids.ravel(), minlength=64)
    p = counts[counts > 0] / counts.sum()
    used = (counts > 0).sum()
    assert s["usage"] == pytest.approx(used / 64)
    assert s["dead"] == pytest.approx(1 - used / 64)
    assert s["perplexity"] == pytest.approx(math.exp(-(p * np.log(p)).sum()))
    assert s["usage_vs_uniform"] == pytest.approx(used / (64 * (1 - (1 - 1 / 64) ** 63)))


def test_codebook_stats_counts_each_codebook_on_its_own():
    a = torch.tensor([[0, 5], [1, 5], [2, 5], [3, 5]])  # codebook 0: 4 codes used, codebook 1: one
    s = codebook_stats(a.unsqueeze(0), 8, num_codebooks=2)
    assert s["usage"] == pytest.approx((4 / 8 + 1 / 8) / 2)
    assert s["perplexity"] == pytest.approx((4 + 1) / 2)


def test_verdict_and_summary():
    assert verdict([True, True]) == "reproduced"
    assert verdict([False, False]) == "not reproduced"
    assert verdict([True, False]) == "reproduced in part"
    assert summarize([1.0, 3.0]) == {"mean": 2.0, "spread": 1.0}


def test_deep_merge_keeps_base_keys():
    assert deep_merge({"a": {"x": 1, "y": 2}, "b": 1}, {"a": {"y": 3}}) == {"a": {"x": 1, "y": 3}, "b": 1}


def test_checks_can_fail():
    """A claim that the measurements contradict gives 'not reproduced' through the runner's rule."""
    check = Check(
        "c", "with beats without", lambda m: m["with"]["psnr"] - m["without"]["psnr"], lambda e: e > 0
    )
    seeds = [
        {"with": {"psnr": 20.0}, "without": {"psnr": 21.0}},
        {"with": {"psnr": 19.0}, "without": {"psnr": 22.0}},
    ]
    assert verdict([all(check.holds(check.effect(m)) for m in seeds)]) == "not reproduced"


def test_update_doc_replaces_only_the_block(tmp_path):
    doc = tmp_path / "m.md"
    doc.write_text(f"# head\n\nintro\n\n{BEGIN}\nold table\n{END}\n\n## after\n")
    result = {
        "study": "s", "claim": "c", "paper": "p", "mechanism": "m", "measure": "x", "seeds": [0], "verdict": "reproduced",
        "checks": [{"passed": True, "text": "t", "effect": {"mean": 1.0, "spread": 0.0}, "unit": "dB"}],
        "budget": {"steps": 1, "batch_size": 1, "size": 8, "threads": 1}, "cpu_seconds": 6.0, "plot": "s.png",
        "arms": [{"name": "a", "label": "A", "source": None}], "runs": {"a": {"0": {"train_seconds": 2.0}}},
        "summary": {"a": {"psnr": {"mean": 20.0, "spread": 0.1}}}, "plot_metrics": ["psnr"],
    }  # fmt: skip
    update_doc(doc, [result])
    text = doc.read_text()
    assert text.startswith("# head\n\nintro\n") and text.rstrip().endswith("## after")
    assert "old table" not in text and "psnr 20.00 ± 0.10" in text and "**reproduced**" in text


def test_update_doc_rewrites_the_studies_run_and_keeps_the_others(tmp_path):
    doc = tmp_path / "m.md"
    doc.write_text(f"intro\n\n{BEGIN}\n{END}\n")

    def result(name: str, psnr: float, verdict: str) -> dict:
        return {
            "study": name, "claim": "c", "paper": "p", "mechanism": "m", "measure": "x", "seeds": [0],
            "verdict": verdict, "budget": {"steps": 1, "batch_size": 1, "size": 8, "threads": 1},
            "checks": [{"passed": True, "text": "t", "effect": {"mean": 1.0, "spread": 0.0}, "unit": "dB"}],
            "cpu_seconds": 6.0, "plot": "p.png", "arms": [{"name": "a", "label": "A", "source": None}],
            "runs": {"a": {"0": {"train_seconds": 2.0}}}, "summary": {"a": {"psnr": {"mean": psnr, "spread": 0.0}}},
            "plot_metrics": ["psnr"],
        }  # fmt: skip

    update_doc(doc, [result("zeta", 20.0, "reproduced"), result("alpha", 21.0, "reproduced")])
    update_doc(doc, [result("zeta", 22.5, "not reproduced")])  # only zeta ran again
    text = doc.read_text()
    assert "psnr 21.00" in text and "psnr 22.50" in text and "psnr 20.00" not in text
    assert text.count("### alpha") == 1 and text.count("### zeta") == 1
    assert text.index("[`alpha`]") < text.index("[`zeta`]") < text.index("### alpha") < text.index("### zeta")
    assert "| [`zeta`](#zeta) | c (p) |" in text and "**not reproduced**" in text


@pytest.fixture(scope="module")
def quick_ctx(tmp_path_factory):
    return StudyContext(tmp_path_factory.mktemp("studies"), QUICK, quick=True, progress=False)


EXPECTED = {"nested-dropout", "tail-drop", "latent-perturbation", "entropy-loss", "rotation-trick",
            "codebook-init", "cosine-codebook", "factorized", "post-training-quantization",
            "semantic-regularization", "patch-size", "token-reduction", "flow-decoder"}  # fmt: skip


def test_the_issue_names_are_registered():
    assert set(STUDIES.names()) >= EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_study_quick_schema(name, quick_ctx):
    if name == "semantic-regularization" and not _corpus_installed():
        pytest.skip("the generation probe reads the photo corpus (vistok corpus)")
    result = run_study(STUDIES.create(name), quick_ctx, [0, 1])
    path = Path(quick_ctx.root) / name / "results.json"
    assert load_result(path) == json.loads(json.dumps(result))
    assert result["format"] == RESULT_FORMAT and result["quick"] is True and result["seeds"] == [0, 1]
    arms = [a["name"] for a in result["arms"]]
    assert len(arms) >= 2 and len(set(arms)) == len(arms)
    for arm in arms:
        assert set(result["measurements"][arm]) == {"0", "1"}
        values = result["measurements"][arm]["0"]
        assert values and all(isinstance(v, float) for v in values.values())
    assert result["checks"], "a study declares at least one check"
    for c in result["checks"]:
        assert (
            len(c["effects"]) == 2 and len(c["per_seed"]) == 2 and all(math.isfinite(e) for e in c["effects"])
        )
        assert c["passed"] == all(c["per_seed"])
    assert result["verdict"] == verdict([c["passed"] for c in result["checks"]])
    assert (Path(quick_ctx.root) / name / result["plot"]).stat().st_size > 1000


def test_equal_budget_across_arms(quick_ctx):
    """Every trained arm of a study ran the same steps at the same batch."""
    result = run_study(STUDIES.create("rotation-trick"), quick_ctx, [0])
    for arm in result["arms"]:
        run = result["runs"][arm["name"]]["0"]
        recipe = json.loads((Path(run["folder"]) / "done.json").read_text())["recipe"]
        assert run["steps"] == QUICK.steps
        assert recipe["data"]["batch_size"] == QUICK.batch_size and recipe["schedule"]["steps"] == QUICK.steps


def test_cli_list_and_usage_errors(capsys):
    from vistok.cli import main

    assert main(["study", "--list"]) == 0
    assert "nested-dropout" in capsys.readouterr().out
    assert main(["study", "--quick", "--docs", "x.md", "nested-dropout"]) == 2
    assert main(["study"]) == 2
    assert main(["study", "no-such-study"]) == 2
