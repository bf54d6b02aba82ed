from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vistok.train.data import ImageDataset, PositionSampler, collect_sources


def _dataset(items, **kw) -> ImageDataset:  # type: ignore[no-untyped-def]
    args = dict(size=32, scale=(0.3, 1.0), ratio=4 / 3, hflip=True, resize_short=64, preload=True, seed=3)
    args.update(kw)
    return ImageDataset(items, **args)  # type: ignore[arg-type]


def test_folder_skips_and_counts_bad_files(image_dir: Path) -> None:
    ds = _dataset(collect_sources([str(image_dir)]))
    assert len(ds) == 6 and ds.report.loaded == 6
    assert len(ds.report.skipped) == 1 and "broken.png" in ds.report.skipped[0][0]
    x = ds[(0, 1)]
    assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1


def test_augmentation_is_a_function_of_seed_epoch_index(image_dir: Path) -> None:
    items = [it for it in collect_sources([str(image_dir)]) if "broken" not in str(it)]
    a, b = _dataset(items), _dataset(items, preload=False)
    assert torch.equal(a[(2, 4)], b[(2, 4)])  # lazy decoding gives the same sample
    assert not torch.equal(a[(2, 4)], a[(3, 4)])
    assert not torch.equal(a[(2, 4)], _dataset(items, seed=4)[(2, 4)])


def test_tar_shards_are_read(tmp_path: Path, image_dir: Path) -> None:
    shard = tmp_path / "shard-000.tar"
    with tarfile.open(shard, "w") as tf:
        for i, p in enumerate(sorted(image_dir.glob("img*.png"))[:3]):
            buf = io.BytesIO()
            Image.open(p).convert("RGB").save(buf, format="JPEG")
            info = tarfile.TarInfo(f"{i:06d}.jpg")
            info.size = buf.tell()
            buf.seek(0)
            tf.addfile(info, buf)
            meta = f'{{"key": {i}}}'.encode()
            info = tarfile.TarInfo(f"{i:06d}.json")
            info.size = len(meta)
            tf.addfile(info, io.BytesIO(meta))
    items = collect_sources([str(tmp_path / "shard-*.tar")])
    assert len(items) == 3
    for preload in (True, False):
        assert _dataset(items, preload=preload)[(0, 2)].shape == (3, 32, 32)


def test_missing_required_source_is_an_error_optional_is_not(tmp_path: Path, image_dir: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no images found"):
        collect_sources([str(tmp_path / "nope")])
    assert len(collect_sources([str(image_dir)], [str(tmp_path / "nope")])) == 7  # broken.png counted later


def test_sampler_positions_resume_and_shard() -> None:
    full = PositionSampler(5, 3, seed=0)
    it = iter(full)
    first = [next(it) for _ in range(4)]
    resumed = iter(PositionSampler(5, 3, seed=0, start=2))
    assert [next(resumed), next(resumed)] == first[2:]
    r0, r1 = PositionSampler(5, 3, seed=0, rank=0, world=2), PositionSampler(5, 3, seed=0, rank=1, world=2)
    assert r0.keys(0) + r1.keys(0) == first[0] + first[1]
    # every index once per epoch
    epoch0 = [k for b in first for k in b if k[0] == 0]
    assert sorted(i for _, i in epoch0) == list(range(5))
    assert np.unique([k for b in first for k in b], axis=0).shape[0] == 12


def test_worker_processes_give_the_same_batches(image_dir: Path) -> None:
    from vistok.train.data import build_loader

    ds = _dataset([it for it in collect_sources([str(image_dir)]) if "broken" not in str(it)])
    batches = []
    for workers in (0, 1):
        it = iter(build_loader(ds, 3, seed=0, start=1, rank=0, world=1, workers=workers))
        batches.append([next(it) for _ in range(2)])
    assert all(torch.equal(a, b) for a, b in zip(*batches))


def test_synthetic_flat_source_is_deterministic_and_flat() -> None:
    from vistok.train.data import collect_sources, synthetic_flat

    items = collect_sources(["synthetic:flat:6"])
    assert len(items) == 6 and all(str(i).startswith("synthetic:flat") for i in items)
    flat, grad = synthetic_flat(0), synthetic_flat(1)
    assert flat.shape == (512, 512, 3) and flat.dtype == np.uint8
    assert (flat == flat[0, 0]).all()  # one colour everywhere
    assert grad.std() > 0 and np.array_equal(grad, synthetic_flat(1))  # a gradient, the same every time
    # a linear ramp: neighbouring pixels differ by at most a couple of levels
    assert np.abs(np.diff(grad.astype(int), axis=0)).max() <= 2
    with pytest.raises(FileNotFoundError, match="synthetic:flat:N"):
        collect_sources(["synthetic:noise:3"])
