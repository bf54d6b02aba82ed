"""The generation probe end to end on two corpus images with a tiny prior (slow; needs the corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vistok.cli import main


def _corpus_installed() -> bool:
    from vistok.data.corpus import corpus_images

    try:
        corpus_images("train")
        corpus_images("heldout")
    except FileNotFoundError:
        return False
    return True


def _probe_args(spec: str, name: str, out: Path, sets: list[str]) -> list[str]:
    """``vistok probe`` on two corpus images with a tiny prior, plus ``sets``."""
    args = ["probe", "-t", spec, "--name", name, "-o", str(out), "--set", "max_images=2"]
    for s in [*sets, "speed_batch=1", 'prior="ar:dim=32,depth=1,heads=2"']:
        args += ["--set", s]
    return args


@pytest.mark.slow
@pytest.mark.skipif(
    not _corpus_installed(), reason="photo corpus packages not installed (vistok data corpus)"
)
def test_probe_writes_results_and_report(tmp_path: Path) -> None:
    sets = ["steps=3", "samples=4", "reference=4", "augment=flip", "heldout_augment=flip"]
    args = _probe_args("vistok-pca", "pca", tmp_path, sets)
    assert main(args) == 0
    r = json.loads((tmp_path / "pca" / "results.json").read_text())
    assert r["format"] == "vistok.probe/1"
    assert r["tokenizer"]["index_factors"] == [256, 256]
    assert r["prior"]["digit_sizes"] == [256, 256]
    assert r["data"]["train_rows"] == 4 and r["data"]["heldout_rows"] == 4
    h = r["heldout_nll"]
    assert 0 < h["bits_per_token"] < 17 and h["bits_per_image"] == pytest.approx(
        h["bits_per_token"] * 128, rel=1e-6
    )
    assert r["speed"]["same_tokens"] is True
    for key in ("generation", "reconstruction", "data_floor"):
        assert r[key]["fd_mobilenet_v2"] >= 0 and r[key]["n"] == 4
    assert (tmp_path / "pca" / "samples.png").is_file()
    assert "| 1 | pca |" in (tmp_path / "report.md").read_text()
    # a rerun reuses the token datasets and the trained prior
    assert main(args) == 0
    assert json.loads((tmp_path / "pca" / "results.json").read_text())["heldout_nll"] == h


@pytest.mark.slow
@pytest.mark.skipif(
    not _corpus_installed(), reason="photo corpus packages not installed (vistok data corpus)"
)
def test_probe_of_a_point_uses_k_tokens(tmp_path: Path) -> None:
    """``vistok-1d@8`` probes 8 tokens of the variable-length model, not its 256."""
    sets = ["steps=2", "samples=2", "reference=2", "augment=none", "heldout_augment=none"]
    assert main(_probe_args("vistok-1d@8", "oned", tmp_path, sets)) == 0
    r = json.loads((tmp_path / "oned" / "results.json").read_text())
    assert r["tokenizer"]["num_tokens"] == 8
    assert r["tokenizer"]["token_shape"] == [8]
    h = r["heldout_nll"]
    assert h["bits_per_image"] == pytest.approx(h["bits_per_token"] * 8, rel=1e-6)
