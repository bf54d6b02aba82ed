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
        pytest.param("batch:1", marks=pytest.mark.slow),  # after the first of the first shard's 2 batches
        pytest.param("batch:4", marks=pytest.mark.slow),  # a later shard
        pytest.param("write:4", marks=pytest.mark.slow),  # the last shard, before the manifest
    ],
)
def test_sigkill_then_rerun_is_byte_identical(
    image_folder: Path, tiny_ckpt: Path, tmp_path: Path, kill_at: str
) -> None:
    ref = tmp_path / "ref"
    assert _tokenize(image_folder, tiny_ckpt, ref, "--shard-size", "3", "--batch-size", "2") == 0
    out = tmp_path / "resumed"
    proc = _kill_then_resume(image_folder, tiny_ckpt, out, kill_at, batch="2")
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not (out / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="unfinished"):
        TokenDataset(out)
    assert _tokenize(image_folder, tiny_ckpt, out, "--shard-size", "3", "--batch-size", "2") == 0
    assert _dataset_bytes(out) == _dataset_bytes(ref)
    assert not list(out.glob(".*.tmp"))


def test_batch_size_is_part_of_the_plan(
    image_folder: Path, tiny_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ds"
    assert _tokenize(image_folder, tiny_ckpt, out, "--shard-size", "3", "--batch-size", "4") == 0
    assert _tokenize(image_folder, tiny_ckpt, out, "--shard-size", "3", "--batch-size", "5") == 2
    assert "batch_size" in capsys.readouterr().err


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


def test_decode_of_a_dataset_equals_reconstruct(image_folder: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    ds_dir, dec, rec = tmp_path / "ds", tmp_path / "dec", tmp_path / "rec"
    assert _tokenize(image_folder, tiny_ckpt, ds_dir, "--augment", "flip", "--shard-size", "4") == 0
    assert main(["decode", str(ds_dir), "-o", str(dec)]) == 0
    assert main(["reconstruct", str(image_folder), "-t", str(tiny_ckpt), "-o", str(rec), "--size", "32"]) == 0
    plain = sorted(p.name for p in dec.glob("*.png") if ".view" not in p.name)
    assert plain == sorted(p.name for p in rec.glob("*.png")) and len(plain) == 7
    for name in plain:
        assert np.array_equal(load_image_uint8(dec / name), load_image_uint8(rec / name)), name
    mirrored = sorted(dec.glob("*.view1.png"))
    assert len(mirrored) == 7 and load_image_uint8(mirrored[0]).shape == (32, 32, 3)


def test_rank_shares_assemble_the_same_dataset(image_folder: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    """The sharding logic without torchrun: rank 1's share, then rank 0's (which writes the manifest)."""
    from vistok.cli import resolve_inputs
    from vistok.data.tokenize import TokenizeOptions, tokenize_images

    items = resolve_inputs([str(image_folder)])
    opts = TokenizeOptions(str(tiny_ckpt), size=32, shard_size=2, batch_size=3)
    whole = tokenize_images(items, tmp_path / "one", opts, progress=False)
    r1 = tokenize_images(items, tmp_path / "two", opts, rank=1, world=2, progress=False)
    assert r1.manifest is None and not (tmp_path / "two" / "manifest.json").exists()
    r0 = tokenize_images(items, tmp_path / "two", opts, rank=0, world=2, progress=False)
    assert (r0.shards_written, r1.shards_written) == (3, 2)
    assert r0.manifest == whole.manifest
    assert _dataset_bytes(tmp_path / "two") == _dataset_bytes(tmp_path / "one")


@pytest.mark.slow
def test_two_ranks_make_the_same_dataset_as_one(image_folder: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    args = [str(image_folder), "-t", str(tiny_ckpt), "--size", "32", "-q", "--shard-size", "2"]
    assert main(["tokenize", *args, "-o", str(one), "--batch-size", "3", "--threads", "1"]) == 0
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    cmd = [
        *launcher,
        "-m",
        "vistok",
        "tokenize",
        *args,
        "-o",
        str(two),
        "--batch-size",
        "3",
        "--threads",
        "1",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert _dataset_bytes(two) == _dataset_bytes(one)
    stats = [json.loads((two / f"stats.rank{r}.json").read_text()) for r in (0, 1)]
    assert [s["world"] for s in stats] == [2, 2]
    assert sum(s["shards_written"] for s in stats) == 5 and min(s["shards_written"] for s in stats) == 2


def test_views_are_rows_of_their_image(image_folder: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _tokenize(image_folder, tiny_ckpt, out, "--augment", "ten-crop", "--batch-size", "7") == 0
    ds = TokenDataset(out)
    assert len(ds) == 70 and ds.manifest["augment"]["views"] == 10
    assert torch.equal(ds.views(), torch.arange(10).repeat(7))
    assert torch.equal(ds.items().unique_consecutive(), torch.tensor(sorted(ds._items)))
    from vistok.data.augment import AUGMENTATIONS
    from vistok.models.codecs import from_uint8

    tok = vistok.create(ds.tokenizer)
    row = ds[10 + 4]  # the centre crop of the second image
    assert row["view"] == 4 and row["item"] == 1
    views = AUGMENTATIONS["ten-crop"].make(load_image_uint8(row["source"]), 32, "reflect", 1.1)
    assert ds.item_record(row["item"])["fit"] == views.fit.to_dict()
    with torch.no_grad():
        assert torch.equal(tok.encode(from_uint8([views.images[4]])).ids[0], row["ids"])


def test_name_at_k_keeps_k_tokens(image_folder: Path, tiny_1d_ckpt: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    assert _tokenize(image_folder, f"{tiny_1d_ckpt}@3", out) == 0
    ds = TokenDataset(out)
    assert ds.tokenizer == f"{tiny_1d_ckpt}@3" and ds.manifest["num_tokens"] == 3
    assert ds.token_shape == (3,) and ds.layout == "sequence" and ds.variable_length and ds.max_length == 3
    assert torch.equal(ds.lengths(), torch.full((7,), 3))
    assert all(it["lengths"] == [3] for it in ds.manifest["items"])
    tok = vistok.create(str(tiny_1d_ckpt))
    row = ds[2]
    expect = encode_array(tok, load_image_uint8(row["source"]), size=32, num_tokens=3)
    assert torch.equal(row["ids"], expect.ids[0]) and row["length"] == 3


def test_fixed_length_tokenizer_refuses_at_k(image_folder: Path, tiny_ckpt: Path, tmp_path: Path) -> None:
    assert _tokenize(image_folder, f"{tiny_ckpt}@3", tmp_path / "ds") == 2


def test_continuous_tokens_are_latents(image_folder: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    ckpt = vistok.create("conv2d-tiny:quantizer=gaussian").save_pretrained(tmp_path / "ckpt")
    out = tmp_path / "ds"
    assert _tokenize(image_folder, ckpt, out) == 0
    ds = TokenDataset(out)
    assert ds.vocab_sizes == [] and ds.factors is None and ds.layout == "grid"
    row = ds[0]
    assert "ids" not in row and row["latents"].dtype == torch.float32
    assert row["latents"].shape == ds.token_shape == (4, 4, 4)  # [C, h, w]
    expect = encode_array(vistok.create(str(ckpt)), load_image_uint8(row["source"]), size=32)
    # batch of 7 vs batch of 1: float kernels may differ in the last float16 bit
    torch.testing.assert_close(row["latents"], expect.latents[0].float(), atol=2e-3, rtol=0)
    assert ds.latents().shape == (7, 4, 4, 4)
    with pytest.raises(TypeError, match="latents"):
        ds.ids()


def test_dataset_survives_pickling_and_empty_shards(
    tiny_ckpt: Path, tmp_path: Path, photo: np.ndarray
) -> None:
    import pickle

    from PIL import Image

    d = tmp_path / "in"
    d.mkdir()
    for name in ("a.png", "d.png"):
        Image.fromarray(photo[:40, :50]).save(d / name)
    for name in ("b.png", "c.png"):  # shard 1 (of size 2: b, c) holds no rows
        (d / name).write_bytes(b"")
    out = tmp_path / "ds"
    assert _tokenize(d, tiny_ckpt, out, "--shard-size", "1") == 0
    ds = TokenDataset(out)
    assert [s["rows"] for s in ds.manifest["shards"]] == [1, 0, 0, 1]
    assert [ds[i]["name"] for i in range(len(ds))] == ["a.png", "d.png"] and ds[-1]["name"] == "d.png"
    with pytest.raises(IndexError):
        ds[2]
    ds[0]  # maps shard 0
    clone = pickle.loads(pickle.dumps(ds))  # what a spawned DataLoader worker receives
    assert clone._cache == {} and torch.equal(clone[1]["ids"], ds[1]["ids"])
    assert torch.equal(clone.ids(), ds.ids())


@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        ("vistok-1d@32", ("vistok-1d", 32)),
        ("vistok-f8", ("vistok-f8", None)),
        ("runs/a@b/ckpt", ("runs/a@b/ckpt", None)),
        ("latent1d-s:tokens=64@8", ("latent1d-s:tokens=64", 8)),
    ],
)
def test_split_num_tokens(spec: str, expect: tuple[str, int | None]) -> None:
    from vistok.data.token_spec import split_num_tokens

    assert split_num_tokens(spec) == expect
