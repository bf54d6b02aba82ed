"""Prior training: exact resume, EMA export, and the ``vistok prior train|sample`` commands end to end."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vistok
from vistok.cli import main
from vistok.prior import TokenSpace, load_prior
from vistok.prior.train import PriorTrainConfig, PriorTrainer, TokenData, evaluate_nll

SPACE = TokenSpace((3, 3), "grid", (40,), factors=(5, 8), max_digit=8)


def _data(n: int = 24) -> TokenData:
    g = torch.Generator().manual_seed(0)
    return TokenData(torch.randint(0, 40, (n, 3, 3), generator=g))


def _cfg(**kw: object) -> PriorTrainConfig:
    base = dict(prior="maskgit:dim=32,depth=1,heads=2,steps=2", steps=6, batch_size=5, warmup=2, ema=0.9,
                log_every=1, ckpt_every=100)  # fmt: skip
    return PriorTrainConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_resume_is_exact(tmp_path: Path) -> None:
    """3 steps, stop, resume for 3 more == 6 steps in one go (weights, EMA, optimizer, data order)."""
    straight = PriorTrainer(_cfg(), SPACE, _data(), tmp_path / "a")
    straight.fit(progress=False)
    first = PriorTrainer(_cfg(), SPACE, _data(), tmp_path / "b")
    assert first.fit(max_steps=3, progress=False)["model"] is None
    second = PriorTrainer(_cfg(), SPACE, _data(), tmp_path / "b", resume=True)
    assert second.step == 3
    second.fit(progress=False)
    for (k, a), (_, b) in zip(straight.prior.state_dict().items(), second.prior.state_dict().items()):
        assert torch.equal(a, b), k
    exported_a, exported_b = load_prior(tmp_path / "a" / "model"), load_prior(tmp_path / "b" / "model")
    for (k, a), (_, b) in zip(exported_a.state_dict().items(), exported_b.state_dict().items()):
        assert torch.equal(a, b), k
    # the export holds the EMA weights, not the raw ones
    assert any(
        not torch.equal(a, b)
        for a, b in zip(exported_a.state_dict().values(), straight.prior.state_dict().values())
    )


def test_batches_cover_each_epoch_once() -> None:
    tr = PriorTrainer(_cfg(batch_size=4), SPACE, _data(12), "unused-not-written")
    seen = torch.cat([tr.batch_indices(s) for s in range(3)])  # 12 positions = epoch 0
    assert sorted(seen.tolist()) == list(range(12))


def test_evaluate_nll_needs_an_exact_likelihood() -> None:
    tr = PriorTrainer(_cfg(), SPACE, _data(), "unused-not-written")
    with pytest.raises(ValueError, match="exact likelihood"):
        evaluate_nll(tr.prior, _data())


@pytest.fixture(scope="module")
def token_dataset(tmp_path_factory: pytest.TempPathFactory, photo: np.ndarray) -> Path:
    """``vistok tokenize`` of six 48x48 photo crops with an (untrained, seeded) conv2d-tiny at 32x32."""
    root = tmp_path_factory.mktemp("prior-cli")
    images = root / "images"
    images.mkdir()
    for i in range(6):
        Image.fromarray(photo[30 * i : 30 * i + 48, 40 * i : 40 * i + 48]).save(images / f"im{i}.png")
    torch.manual_seed(0)
    ckpt = vistok.create("conv2d-tiny").save_pretrained(root / "tok")
    out = root / "tokens"
    assert main(["tokenize", str(images), "-t", str(ckpt), "-o", str(out), "--size", "32", "-q"]) == 0
    return out


def test_prior_train_and_sample_commands(token_dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ["prior", "train", str(token_dataset), "-o", str(run), "--prior", "ar:dim=32,depth=1,heads=2",
            "--set", "steps=4", "--set", "batch_size=3", "--set", "warmup=1"]  # fmt: skip
    assert main(args) == 0
    assert (run / "model" / "config.json").is_file() and (run / "metrics.jsonl").is_file()
    out = tmp_path / "samples"
    assert main(["prior", "sample", str(run), "-n", "3", "-o", str(out), "--top-k", "5"]) == 0
    files = sorted(out.glob("*.png"))
    assert len(files) == 3
    assert np.asarray(Image.open(files[0])).shape == (32, 32, 3)
    assert main(["prior", "train", str(tmp_path), "-o", str(run)]) == 2  # not a token dataset


@pytest.mark.slow
def test_two_ranks_train_the_same_prior_as_one(token_dataset: Path, tmp_path: Path) -> None:
    """DDP: 2 ranks x batch 2 == 1 rank x batch 4 (same items per step; float reduction order aside)."""
    common = ["prior", "train", str(token_dataset), "--prior", "ar:dim=32,depth=1,heads=2",
              "--set", "steps=3", "--set", "warmup=1", "--set", "threads=1"]  # fmt: skip
    assert main([*common, "-o", str(tmp_path / "one"), "--set", "batch_size=4"]) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [*launcher, "-m", "vistok", *common, "-o", str(tmp_path / "two"), "--set", "batch_size=2"]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    a, b = load_prior(tmp_path / "one" / "model"), load_prior(tmp_path / "two" / "model")
    for (k, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.allclose(x, y, atol=1e-5), k
