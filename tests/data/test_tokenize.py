"""`vistok tokenize` and `TokenDataset`: contents, bad files, resume after SIGKILL, batch size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import vistok
from vistok.cli import main
from vistok.data import TokenDataset
from vistok.data.images import load_image_uint8
from vistok.pipeline import encode_array

WORKER = Path(__file__).with_name("tokenize_worker.py")


def _tokenize(inputs: Path, spec: Path | str, out: Path, *extra: str) -> int:
    return main(["tokenize", str(inputs), "-t", str(spec), "-o", str(out), "--size", "32", "-q", *extra])


def _dataset_bytes(out: Path) -> dict[str, bytes]:
    names = [*sorted(p.name for p in out.glob("shard-*.safetensors")), "manifest.json"]
    return {n: (out / n).read_bytes() for n in names}


def test_rows_equal_encode_and_bad_files_are_listed(
    image_folder: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    assert _tokenize(image_folder, tiny_ckpt, out, "--shard-size", "4", "--batch-size", "3") == 0
    err = capsys.readouterr().err
    for name in ("img02b_truncated.jpg", "img04b_empty.png", "img05b_text.png"):
        assert name in err
    ds = TokenDataset(out)
    assert len(ds) == 7
    assert ds.token_shape == (4, 4) and ds.layout == "grid" and not ds.variable_length
    assert ds.max_length == 16 and ds.vocab_sizes == [1000] and ds.factors == [8, 5, 5, 5]
    assert ds.tokenizer == str(tiny_ckpt)
    skipped = {Path(s["path"]).name: s["reason"] for s in ds.manifest["skipped"]}
    assert set(skipped) == {"img02b_truncated.jpg", "img04b_empty.png", "img05b_text.png"}
    assert "empty file" in skipped["img04b_empty.png"]
    assert len(ds.manifest["shards"]) == 3  # 10 files, 4 per shard, whatever failed
    tok = vistok.create(ds.tokenizer)
    ids = ds.ids()
    assert ids.shape == (7, 4, 4) and ids.dtype == torch.long
    assert torch.equal(ds.lengths(), torch.full((7,), 16))
    for i in range(len(ds)):
        row = ds[i]
        expect = encode_array(tok, load_image_uint8(row["source"]), size=32)
        assert torch.equal(row["ids"], expect.ids[0]) and torch.equal(ids[i], row["ids"])
        assert row["length"] == 16 and row["view"] == 0
        rec = ds.item_record(row["item"])
        assert rec["fit"] == expect.meta["fit"] and len(rec["sha256"]) == 64


def _kill_then_resume(
    image_folder: Path, spec: Path, out: Path, kill_at: str, batch: str
) -> subprocess.CompletedProcess[str]:
    args = [str(image_folder), "-t", str(spec), "-o", str(out), "--size", "32", "-q", "--shard-size", "3"]
    env = {**os.environ, "KILL_AT": kill_at, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(WORKER), "tokenize", *args, "--batch-size", batch]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)


@pytest.mark.parametrize(
    "kill_at",
    [
        "write:2",  # inside the second shard's write: one shard done, a temporary file left behind
        pytest.param("batch:1", marks=pytest.mark.slow),  # part-way through the first shard
        pytest.param("batch:5", marks=pytest.mark.slow),  # part-way through a later shard
        pytest.param("write:4", marks=pytest.mark.slow),  # the last shard, before the manifest
    ],
)
def test_sigkill_then_rerun_is_byte_identical(
    image_folder: Path, tiny_ckpt: Path, tmp_path: Path, kill_at: str
) -> None:
    ref = tmp_path / "ref"
    assert _tokenize(image_folder, tiny_ckpt, ref, "--shard-size", "3", "--batch-size", "4") == 0
    out = tmp_path / "resumed"
    proc = _kill_then_resume(image_folder, tiny_ckpt, out, kill_at, batch="2")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (out / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        TokenDataset(out)
    # resumed with another batch size: shards do not depend on it
    assert _tokenize(image_folder, tiny_ckpt, out, "--shard-size", "3", "--batch-size", "5") == 0
    assert _dataset_bytes(out) == _dataset_bytes(ref)
    assert not list(out.glob(".*.tmp"))


def test_rerun_of_a_finished_dataset_reuses_every_shard(
    image_folder: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    assert _tokenize(image_folder, tiny_ckpt, out) == 0
    before = _dataset_bytes(out)
    capsys.readouterr()
    assert _tokenize(image_folder, tiny_ckpt, out) == 0
    assert "0 shard(s) written, 1 reused" in capsys.readouterr().out
    assert _dataset_bytes(out) == before


def test_other_settings_in_the_same_folder_are_refused(
    image_folder: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    assert _tokenize(image_folder, tiny_ckpt, out) == 0
    assert _tokenize(image_folder, tiny_ckpt, out, "--augment", "flip") == 2
    assert "augment" in capsys.readouterr().err
    assert _tokenize(image_folder, tiny_ckpt, out, "--augment", "flip", "--overwrite") == 0
    assert len(TokenDataset(out)) == 14


def test_manifest_records_provenance(image_folder: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _tokenize(image_folder, tiny_ckpt, out) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["vistok_version"] == vistok.__version__
    assert m["geometry"]["size"] == 32 and m["geometry"]["pad_mode"] == "reflect"
    assert m["geometry"]["protocol"].startswith("vistok-protocol/")
    assert m["inputs"]["count"] == 10 and m["images"] == 7 and m["rows"] == 7
    import hashlib

    for s in m["shards"]:
        assert hashlib.sha256((out / s["file"]).read_bytes()).hexdigest() == s["sha256"]
    item = m["items"][0]
    assert hashlib.sha256(Path(item["path"]).read_bytes()).hexdigest() == item["sha256"]
    assert np.array_equal(load_image_uint8(item["path"]).shape[:2], [item["height"], item["width"]])
