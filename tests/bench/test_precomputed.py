"""Scoring reconstructions made elsewhere: matching by path, sizes, rates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistok.bench.precomputed import PrecomputedReconstructions, read_rate_table
from vistok.cli import main
from vistok.data.transforms import plan_fit


def test_lookup_geometries_missing_and_missized(tmp_path: Path, photo: np.ndarray) -> None:
    fit = plan_fit(300, 451, size=256)
    Image.fromarray(np.zeros((256, 256, 3), np.uint8)).save(tmp_path / "eval.png")
    Image.fromarray(photo).save(tmp_path / "orig.png")
    Image.fromarray(photo[:100]).save(tmp_path / "wrong.png")
    pre = PrecomputedReconstructions(tmp_path, bits_per_image=1000.0, rates={"orig.jpg": 8.0})
    rec, bits = pre.lookup("eval.jpg", fit)  # suffix swapped to .png
    assert rec.shape == (256, 256, 3) and bits == 1000.0
    rec, bits = pre.lookup("orig.jpg", fit)
    assert rec.shape == (256, 256, 3) and bits == 8.0
    assert "expected the evaluation size 256x256 or the original 451x300" in pre.lookup("wrong.png", fit)
    assert "no reconstruction found" in pre.lookup("absent.png", fit)


def test_rate_tables(tmp_path: Path) -> None:
    (tmp_path / "r.json").write_text(json.dumps({"a.png": 12}))
    (tmp_path / "r.csv").write_text("file,bits\na.png,12\nsub/b.png,3.5\n")
    assert read_rate_table(tmp_path / "r.json") == {"a.png": 12.0}
    assert read_rate_table(tmp_path / "r.csv") == {"a.png": 12.0, "sub/b.png": 3.5}
    (tmp_path / "bad.csv").write_text("a.png,twelve\n")
    with pytest.raises(ValueError, match=r"bad\.csv: cannot read the rate table"):
        read_rate_table(tmp_path / "bad.csv")


def test_cli_reconstructions_folder_lists_missing(tmp_path: Path, photo: np.ndarray) -> None:
    data = tmp_path / "data"
    recs = tmp_path / "recs"
    data.mkdir()
    recs.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(photo).save(data / name)
    Image.fromarray(photo).save(recs / "a.png")  # b.png has no reconstruction
    args = [
        "bench",
        "--data",
        str(data),
        "--reconstructions",
        str(recs),
        "--bits-per-image",
        "4096",
        "--suites",
        "recon",
        "-o",
        str(tmp_path / "out"),
        "--name",
        "r",
    ]
    assert main(args) == 0
    res = json.loads((tmp_path / "out" / "r" / "results.json").read_text())
    p = res["points"][0]
    assert p["images"] == 1 and p["rate"]["bits_per_image"] == 4096
    assert p["skipped_images"][0][0] == "b.png" and "no reconstruction found" in p["skipped_images"][0][1]
    assert p["recon"]["psnr"] > 25  # the original, resized to 256 like the input: near-identical
