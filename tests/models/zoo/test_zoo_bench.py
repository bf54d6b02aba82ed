"""``vistok bench -t NAME:weights=PATH`` for every published family, through the suites that apply.

One parity fixture per family (the official code's checkpoint in the release's layout) goes
through the CLI's benchmark on two sample photos: reconstruction always; codebook use for the
discrete families; robustness (pPSNR/pFD: ids swapped for codebook neighbours, or latents
noised) for every tokenizer with tokens to perturb; speed. The text and face suites take any
tokenizer the same way (they only read reconstructions) and run on the shipped models in
``tests/bench``; OCR and face models make them too slow to repeat here per family.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from zoo_fixtures import case_meta, fixture_case

from vistok.cli import main

# (family, case, weights inside the case folder: None = the case's "weights" or the folder)
CASES = [
    ("llamagen", "tiny", None),
    ("titok", "legacy", None),
    ("titok", "bl_vae", None),
    ("one_d_piece", "prefix", None),
    ("titok", "maskgit_vqgan", None),
    ("var", "scales10", None),
    ("seed_voken", "lfq_small", "model.ckpt"),
    ("seed_voken", "ibq_small", "model.ckpt"),
    ("maskbit", "lfq", None),
    ("maskbit", "vq", None),
    ("taming", "f4_tiny", "last.ckpt"),
    ("mar", "kl_tiny", None),
    ("cosmos", "di", None),
    ("cosmos", "ci", None),
    ("taesd", "taef2-w4", None),
]


@pytest.mark.parametrize(("family", "case", "weights"), CASES, ids=[f"{f}-{c}" for f, c, _ in CASES])
def test_bench_runs_a_published_release(family: str, case: str, weights: str | None, tmp_path: Path) -> None:
    d = fixture_case(family, case)
    meta = case_meta(d)
    path = d / (weights or meta.get("weights") or ".")
    spec = f"{meta['spec']},weights={path}"
    args = ["bench", "-t", spec, "--data", "samples:photos", "--limit", "2", "--size", "64"]
    args += ["--suites", "recon,codebook,robustness,speed", "--no-sweep", "--equal-bytes", "none"]
    assert main([*args, "-o", str(tmp_path), "--name", "r"]) == 0
    res = json.loads((tmp_path / "r" / "results.json").read_text())
    (point,) = res["points"]
    assert point["skipped_images"] == [] and len(point["per_image"]) == 2
    assert math.isfinite(point["recon"]["psnr"]) and point["recon"]["psnr"] > 0
    assert point["rate"]["bpp"] > 0
    skipped = point["skipped_suites"]
    if point["tokenizer"]["kind"] == "discrete":
        assert point["codebook"]["used_fraction"] > 0 and point["codebook"]["tokens_seen"] > 0
    else:
        assert "codebook" in skipped
    assert "robustness" in point and math.isfinite(point["robustness"]["psnr"]), skipped
    assert point["speed"]["encode_images_per_s"] > 0 and point["speed"]["decode_images_per_s"] > 0
