"""Two CPU processes under torchrun (gloo): after a few steps every rank holds the same weights."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vistok

WORKER = Path(__file__).with_name("ddp_worker.py")


@pytest.mark.slow
def test_two_ranks_hold_identical_weights(tiny: Callable[..., list[str]], tmp_path: Path) -> None:
    overrides = tiny(
        **{
            # a VQ with k-means init and EMA codebooks: state learned outside the gradient
            "model.spec": "conv2d-tiny:quantizer=vq:codebook_size=16",
            "schedule.steps": 3,
            "loss.gan": 0.1,
            "loss.disc_width": 8,
            "loss.disc_layers": 1,
            "loss.perturb_prob": 0.2,
        }
    )
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [*launcher, str(WORKER), str(tmp_path), *overrides]
    env = {"OMP_NUM_THREADS": "1", **os.environ}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    r0, r1 = load_file(str(tmp_path / "rank0.safetensors")), load_file(str(tmp_path / "rank1.safetensors"))
    assert int(r0["world"]) == 2
    assert r0.keys() == r1.keys()
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"{k} differs between ranks"
    # only rank 0 wrote the outputs, and the exported model matches its weights
    model = vistok.load(tmp_path / "model").state_dict()
    assert all(torch.equal(model[k], r0[f"model.{k}"]) for k in model)
    assert len((tmp_path / "metrics.jsonl").read_text().splitlines()) == 3
