"""Training data: image folders, WebDataset-style tar shards and the built-in samples,
random-resized crops and flips, deterministic from ``(seed, epoch, index)``.

Sources (``data.sources``, any mix):

* a folder: every image under it, recursively (``vistok.data.images.find_images``);
* a ``.tar`` file, or a glob such as ``shards/train-*.tar``: WebDataset-style shards read
  with :mod:`tarfile` (each member with an image extension is one sample);
* ``samples`` / ``samples:photos+text+faces``: the built-in sample sets;
* ``corpus:train`` / ``corpus:heldout`` / ``corpus:<package>``: the photo corpus of Debian
  packages (:mod:`vistok.data.corpus`);
* ``synthetic:flat:N``: ``N`` generated 512x512 images, flat colours and smooth two-colour
  gradients (:func:`synthetic_flat`), so that a tokenizer learns to keep the exact level of
  flat regions (photos hold few perfectly flat areas and an L2 loss barely weighs them).

Files that cannot be decoded are skipped and counted (:attr:`ImageDataset.report`).

Order and augmentation are a pure function of the seed and the *position* in the sample
stream: position ``p`` is sample ``perm_e[p mod n]`` of epoch ``e = p // n`` (``perm_e``
a permutation seeded by ``(seed, e)``), and its crop/flip come from a generator seeded by
``(seed, e, index)``. Micro-batch ``m`` of rank ``r`` (of ``W``) takes positions
``[(m W + r) B, (m W + r + 1) B)``. So resuming at micro-batch ``m`` continues exactly,
worker processes change nothing, and ranks never see the same position.
"""

from __future__ import annotations

import contextlib
import glob
import io
import tarfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from vistok.data.images import IMAGE_EXTENSIONS, ImageLoadError, LoadReport, find_images, load_image_uint8

__all__ = [
    "ImageDataset",
    "PositionSampler",
    "build_loader",
    "center_crop",
    "collect_sources",
    "random_crop",
    "synthetic_flat",
]


@dataclass(frozen=True)
class _Item:
    """One image: a file path, or a member of a tar shard."""

    path: str
    member: str | None = None

    def __str__(self) -> str:
        return f"{self.path}:{self.member}" if self.member else self.path


def _tar_members(path: Path) -> list[_Item]:
    with tarfile.open(path) as tf:
        return [
            _Item(str(path), m.name)
            for m in tf.getmembers()
            if m.isfile() and Path(m.name).suffix.lower() in IMAGE_EXTENSIONS
        ]


def collect_sources(sources: list[str], optional: list[str] | None = None) -> list[_Item]:
    """Expand source strings (folders, tar files/globs, ``samples:...``) into image items.

    Raises:
        FileNotFoundError: for a required source that does not exist or holds no images.
    """
    from vistok.data.samples import SAMPLE_SETS, sample_set

    items: list[_Item] = []
    for required, src in [(True, s) for s in sources] + [(False, s) for s in optional or []]:
        found: list[_Item] = []
        if src.startswith("synthetic:"):
            kind, _, count = src.split(":", 1)[1].partition(":")
            if kind != "flat" or not count.isdigit():
                raise FileNotFoundError(f"data source {src!r}: expected synthetic:flat:N")
            found = [_Item(f"synthetic:{kind}", str(i)) for i in range(int(count))]
        elif src.startswith("corpus:"):
            from vistok.data.corpus import corpus_images

            try:
                found = [_Item(i.path) for i in corpus_images(src.split(":", 1)[1])]
            except FileNotFoundError:
                if required:
                    raise
        elif src == "samples" or src.startswith("samples:"):
            names = src.split(":", 1)[1].split("+") if ":" in src else list(SAMPLE_SETS)
            for name in names:
                if name not in SAMPLE_SETS:
                    raise FileNotFoundError(f"unknown sample set {name!r}; valid: {', '.join(SAMPLE_SETS)}")
                found += [_Item(str(p)) for p in sample_set(name).paths]
        else:
            matches = sorted(glob.glob(src)) if any(c in src for c in "*?[") else [src]
            for m in matches:
                p = Path(m)
                if p.is_dir():
                    found += [_Item(str(f)) for f in find_images(p)]
                elif p.is_file() and p.suffix.lower() == ".tar":
                    found += _tar_members(p)
                elif p.is_file():
                    found.append(_Item(str(p)))
        if not found and required:
            raise FileNotFoundError(
                f"data source {src!r}: no images found (folder, .tar shard(s) or samples:SET)"
            )
        items += found
    if not items:
        raise FileNotFoundError("no training images in any data source")
    return items


def _decode_bytes(data: bytes, name: str) -> np.ndarray:
    """Image bytes (from a tar member) -> uint8 ``[H, W, 3]``; raises :class:`ImageLoadError`."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im = Image.open(io.BytesIO(data))
            im.load()
            with contextlib.suppress(Exception):
                im = ImageOps.exif_transpose(im)
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(bg, im.convert("RGBA"))
            return np.array(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:
        raise ImageLoadError(name, f"cannot decode ({type(e).__name__}: {e})") from None


def synthetic_flat(index: int, size: int = 512) -> np.ndarray:
    """Generated image ``index``: uint8 ``[size, size, 3]``, a flat colour (even indices) or a
    linear gradient between two colours at a random angle (odd), colours uniform in RGB with
    every fourth one a pure extreme (0 or 255 per channel)."""
    rng = np.random.default_rng([20261201, index])

    def colour() -> np.ndarray:
        if rng.random() < 0.25:
            return rng.integers(0, 2, 3).astype(np.float64) * 255.0
        return rng.uniform(0, 255, 3)

    if index % 2 == 0:
        img = np.broadcast_to(colour(), (size, size, 3))
    else:
        a, b = colour(), colour()
        theta = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:size, 0:size] / (size - 1)
        t = np.cos(theta) * xx + np.sin(theta) * yy
        t = (t - t.min()) / max(t.max() - t.min(), 1e-9)
        img = a + (b - a) * t[..., None]
    return np.ascontiguousarray(np.clip(np.round(img), 0, 255).astype(np.uint8))


def _load(item: _Item, resize_short: int | None) -> np.ndarray:
    """Decode ``item`` to uint8 ``[H, W, 3]``, downscaled so the short side is <= ``resize_short``.

    Raises:
        ImageLoadError: for any file that cannot be decoded (whatever Pillow raised).
    """
    if item.path.startswith("synthetic:"):
        arr = synthetic_flat(int(item.member or 0))
    elif item.member is None:
        try:
            arr = load_image_uint8(item.path)
        except ImageLoadError:
            raise
        except Exception as e:  # e.g. Pillow's OSError on a truncated header
            raise ImageLoadError(item.path, f"cannot decode ({type(e).__name__}: {e})") from None
    else:
        with tarfile.open(item.path) as tf:
            f = tf.extractfile(item.member)
            if f is None:
                raise ImageLoadError(str(item), "not a regular file in the tar")
            arr = _decode_bytes(f.read(), str(item))
    h, w = arr.shape[:2]
    if resize_short is not None and min(h, w) > resize_short:
        s = resize_short / min(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        arr = np.asarray(Image.fromarray(arr).resize(size, Image.Resampling.BICUBIC))
    return arr


def random_crop(
    arr: np.ndarray,
    size: int,
    rng: np.random.Generator,
    *,
    scale: tuple[float, float] = (0.25, 1.0),
    ratio: float = 4 / 3,
    hflip: bool = True,
) -> np.ndarray:
    """Random-resized crop of uint8 ``[H, W, 3]`` to ``[size, size, 3]`` (bicubic), maybe flipped.

    The crop covers a fraction ``U(scale)`` of the image area with aspect ratio
    log-uniform in ``[1/ratio, ratio]`` (clamped to the image); all draws come from ``rng``.
    """
    h, w = arr.shape[:2]
    area = h * w * rng.uniform(*scale)
    ar = float(np.exp(rng.uniform(-np.log(ratio), np.log(ratio))))
    ch = round(min(h, max(1.0, np.sqrt(area / ar))))
    cw = round(min(w, max(1.0, np.sqrt(area * ar))))
    y0 = int(rng.integers(0, h - ch + 1))
    x0 = int(rng.integers(0, w - cw + 1))
    crop = arr[y0 : y0 + ch, x0 : x0 + cw]
    out = np.asarray(Image.fromarray(crop).resize((size, size), Image.Resampling.BICUBIC))
    if hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """Largest centred square of uint8 ``[H, W, 3]`` resized to ``[size, size, 3]``."""
    h, w = arr.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    sq = arr[y0 : y0 + s, x0 : x0 + s]
    return np.asarray(Image.fromarray(sq).resize((size, size), Image.Resampling.BICUBIC))


class ImageDataset(Dataset[Tensor]):
    """Map-style dataset indexed by ``(epoch, index)`` keys -> float ``[3, size, size]`` in [0, 1].

    Args:
        items: from :func:`collect_sources`.
        size, scale, ratio, hflip: crop parameters (see :func:`random_crop`).
        resize_short: downscale on load so the short side is at most this many pixels.
        preload: decode all images now (bad ones skipped and counted in :attr:`report`);
            otherwise decode on access and replace an undecodable file by the next item.
        seed: base seed of the per-sample augmentation generators.
    """

    def __init__(
        self,
        items: list[_Item],
        *,
        size: int,
        scale: tuple[float, float],
        ratio: float,
        hflip: bool,
        resize_short: int | None,
        preload: bool,
        seed: int,
    ):
        self.size, self.scale, self.ratio, self.hflip = size, scale, ratio, hflip
        self.resize_short, self.seed = resize_short, seed
        self.report = LoadReport()
        self.items = items
        self.arrays: list[np.ndarray] | None = None
        if preload:
            self.arrays, kept = [], []
            for it in items:
                try:
                    self.arrays.append(_load(it, resize_short))
                    kept.append(it)
                except ImageLoadError as e:
                    self.report.skipped.append((e.path, e.reason))
            self.items = kept
            self.report.loaded = len(kept)
            if not kept:
                raise FileNotFoundError("no decodable training images:\n" + self.report.summary())

    def __len__(self) -> int:
        return len(self.items)

    def image(self, index: int) -> np.ndarray:
        """The (downscaled) uint8 ``[H, W, 3]`` image ``index``."""
        if self.arrays is not None:
            return self.arrays[index]
        for k in range(len(self.items)):  # lazy: the next decodable item stands in for a bad one
            try:
                return _load(self.items[(index + k) % len(self.items)], self.resize_short)
            except ImageLoadError as e:
                warnings.warn(f"skipping undecodable training image {e}", stacklevel=2)
        raise FileNotFoundError("no decodable training images")

    def __getitem__(self, key: tuple[int, int]) -> Tensor:
        epoch, index = key
        rng = np.random.default_rng([self.seed, epoch, index])
        arr = random_crop(
            self.image(index), self.size, rng, scale=self.scale, ratio=self.ratio, hflip=self.hflip
        )
        return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


class PositionSampler(Sampler[list[tuple[int, int]]]):
    """Infinite batch sampler over the position stream (see the module docstring).

    Yields lists of ``(epoch, index)`` keys for micro-batches ``start, start + 1, ...`` of
    rank ``rank`` of ``world``.
    """

    def __init__(self, n: int, batch_size: int, *, seed: int, start: int = 0, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.start, self.rank, self.world = start, rank, world
        self._perm: tuple[int, np.ndarray] | None = None

    def _perm_of(self, epoch: int) -> np.ndarray:
        if self._perm is None or self._perm[0] != epoch:
            self._perm = (epoch, np.random.default_rng([self.seed, epoch, 2**31 - 1]).permutation(self.n))
        return self._perm[1]

    def keys(self, micro_batch: int) -> list[tuple[int, int]]:
        """The ``(epoch, index)`` keys of micro-batch ``micro_batch`` on this rank."""
        first = (micro_batch * self.world + self.rank) * self.batch_size
        out = []
        for p in range(first, first + self.batch_size):
            epoch = p // self.n
            out.append((epoch, int(self._perm_of(epoch)[p % self.n])))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        m = self.start
        while True:
            yield self.keys(m)
            m += 1


def build_loader(
    dataset: ImageDataset, batch_size: int, *, seed: int, start: int, rank: int, world: int, workers: int
) -> DataLoader[Tensor]:
    """A DataLoader yielding float ``[B, 3, size, size]`` batches from micro-batch ``start`` on."""
    sampler = PositionSampler(len(dataset), batch_size, seed=seed, start=start, rank=rank, world=world)
    return DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=workers,
        persistent_workers=False,
        prefetch_factor=2 if workers > 0 else None,
    )
