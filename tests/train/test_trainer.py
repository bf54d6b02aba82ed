"""End-to-end trainer tests on seconds-long runs (tiny models, 32x32 crops, a few steps)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import vistok
from vistok.cli import main
from vistok.train.checkpoint import find_latest, load_checkpoint
from vistok.train.config import load_config
from vistok.train.trainer import Trainer, TrainingDiverged

ROOT = Path(__file__).resolve().parents[2]


def test_cli_tiny_run_writes_everything(
    tiny: Callable[..., list[str]], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    args = ["train", str(ROOT / "configs" / "tiny.yaml"), "--out", str(out)]
    for o in tiny(**{"optim.ema": 0.9}):
        args += ["--set", o]
    assert main(args) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    assert {"l1", "l2", "loss", "psnr", "q_usage", "q_perplexity", "lr", "grad_norm"} <= set(lines[-1])
    assert sorted(p.name for p in (out / "grids").glob("*.png")) == ["step-00000002.png", "step-00000004.png"]
    ckpt = find_latest(out / "checkpoints")
    assert ckpt is not None and ckpt.name == "step-00000004"
    assert {"model.safetensors", "ema.safetensors", "optim.safetensors", "state.json", "config.yaml"} <= {
        p.name for p in ckpt.iterdir()
    }
    assert load_config(ckpt / "config.yaml").schedule.steps == 4  # the resolved recipe
    model = vistok.load(out / "model")
    x = torch.rand(1, 3, 32, 32)
    assert model.reconstruct(x).shape == x.shape


def test_cli_config_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", str(ROOT / "configs" / "tiny.yaml"), "--set", "optim.lrr=1"]) == 2
    assert "Did you mean 'optim.lr'" in capsys.readouterr().err


FEATURES = {
    "optim.ema": 0.9,
    "optim.accum": 2,
    "loss.gan": 0.1,
    "loss.gan_start": 1,
    "loss.lecam": 0.01,
    "loss.disc_width": 8,
    "loss.disc_layers": 1,
    "loss.perturb_prob": 0.2,
    "loss.perturb_k": 2,
}


@pytest.mark.parametrize(
    "extra",
    [
        {**FEATURES, "loss.semantic": 0.5, "loss.semantic_layer": 3},
        {"model.spec": "latent1d-tiny", "model.nested": "pow2", "model.nested_prob": 0.5, "optim.ema": 0.9},
    ],
    ids=["conv2d-gan-ema-accum-perturb-semantic", "latent1d-nested"],
)
def test_resume_is_bit_identical(
    tiny: Callable[..., list[str]], tmp_path: Path, extra: dict[str, object]
) -> None:
    cfg = load_config(None, tiny(**extra))
    straight = Trainer(cfg, tmp_path / "a")
    straight.fit()
    first = Trainer(cfg, tmp_path / "b")
    assert first.fit(max_steps=2)["step"] == 2
    del first
    resumed = Trainer(cfg, tmp_path / "b", resume=True)
    assert resumed.step == 2
    resumed.fit()
    groups_a, state_a = load_checkpoint(find_latest(tmp_path / "a" / "checkpoints"))  # type: ignore[arg-type]
    groups_b, state_b = load_checkpoint(find_latest(tmp_path / "b" / "checkpoints"))  # type: ignore[arg-type]
    assert state_a["step"] == state_b["step"] == 4 and state_a["micro_batches"] == state_b["micro_batches"]
    assert groups_a.keys() == groups_b.keys()
    for g in groups_a:
        for k, v in groups_a[g].items():
            assert torch.equal(v, groups_b[g][k]), f"{g}.{k} differs after resume"
    final_a = vistok.load(tmp_path / "a" / "model").state_dict()
    final_b = vistok.load(tmp_path / "b" / "model").state_dict()
    assert all(torch.equal(final_a[k], final_b[k]) for k in final_a)


def test_nan_guard_names_step_and_term_and_keeps_checkpoint(
    tiny: Callable[..., list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(None, tiny())
    trainer = Trainer(cfg, tmp_path / "run")
    l2 = trainer.losses["l1"][1]
    calls = {"n": 0}
    orig = l2.forward

    def poisoned(images, out):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        return orig(images, out) * (float("nan") if calls["n"] > 2 else 1.0)

    monkeypatch.setattr(l2, "forward", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 2: loss term 'l1' is nan"):
        trainer.fit()
    assert find_latest(tmp_path / "run" / "checkpoints").name == "step-00000002"  # type: ignore[union-attr]


def test_bf16_autocast_on_cpu(tiny: Callable[..., list[str]], tmp_path: Path) -> None:
    cfg = load_config(None, tiny(**{"run.precision": "bf16", "schedule.steps": 2, "log.grid_every": 0}))
    summary = Trainer(cfg, tmp_path / "run").fit()
    assert summary["step"] == 2 and all(torch.isfinite(torch.tensor(v)) for v in summary["last"].values())


def test_fp16_needs_a_gpu(tiny: Callable[..., list[str]], tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("has a GPU")
    with pytest.raises(ValueError, match="fp16 needs a GPU"):
        Trainer(load_config(None, tiny(**{"run.precision": "fp16", "run.device": "cpu"})), tmp_path)
