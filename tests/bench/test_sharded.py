"""`torchrun -m vistok bench`: points split over ranks, merged by rank 0, same numbers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_two_ranks_give_the_single_process_results(tmp_path: Path) -> None:
    common = [
        "bench",
        "-t",
        "jpeg:quality=30",
        "-t",
        "webp:quality=30",
        "-t",
        "png",
        "--no-sweep",
        "--data",
        "samples:photos",
        "--limit",
        "2",
        "--suites",
        "recon",
        "-o",
        str(tmp_path),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "vistok", *common, "--name", "single"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert one.returncode == 0, one.stderr[-2000:]
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            "-m",
            "vistok",
            *common,
            "--name",
            "sharded",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    a = json.loads((tmp_path / "single" / "results.json").read_text())
    b = json.loads((tmp_path / "sharded" / "results.json").read_text())
    assert b["shards"] == 2 and a["shards"] == 1
    assert [p["point"] for p in a["points"]] == [p["point"] for p in b["points"]]
    for pa, pb in zip(a["points"], b["points"], strict=True):
        assert pa["per_image"] == pb["per_image"]
        assert pa["recon"]["fd"] == pytest.approx(pb["recon"]["fd"], rel=1e-9)
