"""``vistok tokenize``: images -> a sharded, resumable token dataset (layout in docs/generation.md).

How a run is laid out, and why:

- The ordered list of source images is cut into shards of ``shard_size`` *source images*
  (not rows), so which image lands in which shard depends only on the inputs, never on
  which images fail to decode, on timing or on the number of ranks.
- A shard is encoded in batches of ``batch_size`` views aligned to its first row (so its
  bytes do not depend on what was encoded before it) and written atomically when
  complete. A rerun skips shards already on disk (checked against the run's plan), so a
  run killed at any point -- SIGKILL included -- finishes with byte-identical shards.
- Rank ``r`` of ``W`` (``torchrun``) takes shards ``r, r + W, ...``; a shard's bytes do not
  depend on who made it, so any number of ranks gives the same dataset.
- Image decoding, hashing and the protocol's geometry run in a thread pool that stays
  ahead of the encoder (Pillow and numpy release the GIL), so I/O overlaps with compute.
- ``manifest.json`` is written last, by rank 0, from the shards' own headers: a folder
  without it is an unfinished run.
"""

from __future__ import annotations

import hashlib
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import Tensor

from vistok.data.augment import AUGMENTATIONS, Augmentation
from vistok.data.token_format import (
    DATASET_FORMAT,
    MANIFEST_NAME,
    PLAN_NAME,
    SHARD_FORMAT,
    canonical_json,
    ids_dtype,
    read_shard_meta,
    shard_name,
    write_shard,
)
from vistok.data.token_spec import build_tokenizer
from vistok.data.transforms import PadMode
from vistok.tokenizer import Tokenizer
from vistok.utils.io import atomic_write_text

__all__ = ["PlanMismatchError", "TokenizeOptions", "TokenizeResult", "tokenize_images", "write_manifest"]

_T = TypeVar("_T")
_R = TypeVar("_R")


class PlanMismatchError(ValueError):
    """The output folder holds a run started with other settings or inputs."""


@dataclass(frozen=True)
class TokenizeOptions:
    """Settings of a ``vistok tokenize`` run.

    Attributes:
        tokenizer: a spec ``vistok.create`` accepts, optionally ``NAME@k`` (keep ``k`` tokens
            of a variable-length tokenizer).
        size: the protocol's evaluation size: pad to square (centred), resize to ``size``;
            a tokenizer with a fixed input size gets its own size instead.
        pad_mode: how the square padding is filled (the protocol's ``reflect`` by default).
        augment: ``none``, ``flip`` or ``ten-crop`` (:mod:`vistok.data.augment`).
        crop_range: ten-crop only: fit to ``round(size * crop_range)`` before cropping.
        shard_size: source images per shard (rows = images x views, less skipped ones).
        batch_size: views encoded at once, batches aligned to each shard's first row. Part
            of the plan: float kernels may round differently for another batch composition
            (continuous latents do, in the last float16 bit), so a resume must use the same.
        workers: image-decoding threads.
        device: where the tokenizer runs (``cpu``, ``cuda``, ``cuda:1``, ``auto``).
    """

    tokenizer: str
    size: int = 256
    pad_mode: PadMode = "reflect"
    augment: str = "none"
    crop_range: float = 1.1
    shard_size: int = 1000
    batch_size: int = 32
    workers: int = 4
    device: str = "cpu"

    def __post_init__(self) -> None:
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"unknown augmentation {self.augment!r}; valid: {', '.join(AUGMENTATIONS)}")
        for name in ("size", "shard_size", "batch_size", "workers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class TokenizeResult:
    """What a run did on this rank (``manifest`` is set on rank 0 once the dataset is complete)."""

    output: Path
    images: int = 0
    rows: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    shards_written: int = 0
    shards_reused: int = 0
    seconds: float = 0.0  # the shard loop: decoding, encoding, writing (not model loading)
    cpu_seconds: float = 0.0  # CPU time of the whole process (every thread) in that loop
    manifest: dict[str, Any] | None = None

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class _Source:
    index: int
    path: Path
    name: str


@dataclass
class _Loaded:
    source: _Source
    error: str | None = None
    record: dict[str, Any] = field(default_factory=dict)
    views: list[np.ndarray] = field(default_factory=list)


@dataclass(frozen=True)
class _Spec:
    """What the tokenizer produces, found by encoding one blank image before any shard."""

    kind: str
    field: str  # "ids" or "latents"
    token_shape: tuple[int, ...]
    layout: str
    positions: int  # token positions per image (h * w or N): the length of a full image
    dtype: torch.dtype
    meta: dict[str, Any]

    @property
    def dtype_name(self) -> str:
        return str(self.dtype).removeprefix("torch.")


# ---- planning -----------------------------------------------------------------------------
def _plan(options: TokenizeOptions, sources: Sequence[_Source], device: torch.device) -> dict[str, Any]:
    """The settings that decide the dataset's bytes; a resume must match them exactly."""
    import vistok

    listing = canonical_json([[str(s.path), s.name] for s in sources])
    return {
        "format": DATASET_FORMAT,
        "vistok_version": vistok.__version__,
        "tokenizer": options.tokenizer,
        "size": options.size,
        "pad_mode": options.pad_mode,
        "augment": options.augment,
        "crop_range": options.crop_range if options.augment == "ten-crop" else None,
        "shard_size": options.shard_size,
        "batch_size": options.batch_size,
        "device_type": device.type,
        "inputs": {"count": len(sources), "sha256": hashlib.sha256(listing.encode()).hexdigest()},
    }


def _check_plan(out: Path, plan: dict[str, Any], overwrite: bool) -> None:
    path = out / PLAN_NAME
    if path.exists():
        import json

        old = json.loads(path.read_text())
        if old == plan:
            return
        if not overwrite:
            diff = sorted(k for k in set(old) | set(plan) if old.get(k) != plan.get(k))
            raise PlanMismatchError(
                f"{out}: holds a token dataset started with other settings ({', '.join(diff)} differ); "
                "use another output folder, or --overwrite to discard it"
            )
        for f in [*out.glob("shard-*.safetensors"), out / MANIFEST_NAME]:
            f.unlink(missing_ok=True)
    atomic_write_text(path, canonical_json(plan) + "\n")


def _probe(tok: Tokenizer, k: int | None, size: int, device: torch.device) -> _Spec:
    with torch.inference_mode():
        t = tok.encode(torch.full((1, 3, size, size), 0.5, device=device), num_tokens=k)
    if t.ids is not None:
        x, kind, name = t.ids, "discrete", "ids"
        vocab = [int(tok.vocab_size or 0)] * tok.num_codebooks
        dtype = ids_dtype(vocab)
        spatial = x.ndim - 1 - (1 if tok.num_codebooks > 1 else 0)
    elif t.latents is not None:
        x, kind, name, dtype = t.latents, "continuous", "latents", t.latents.dtype
        spatial = x.ndim - 2  # [B, C, h, w] or [B, N, C]
    else:
        raise ValueError(f"{tok.spec}: encode gave neither ids nor latents")
    shape = tuple(int(n) for n in x.shape[1:])
    if kind == "discrete":
        positions = int(np.prod(shape[:spatial]))
    else:
        positions = int(np.prod(shape[1:])) if spatial == 2 else shape[0]
    return _Spec(
        kind, name, shape, "grid" if spatial == 2 else "sequence", positions, dtype, _meta_key(t.meta)
    )


def _meta_key(meta: dict[str, Any]) -> dict[str, Any]:
    """The batch-level meta a decoder needs, as JSON values (it must be the same for every batch)."""
    import json

    return json.loads(canonical_json(meta))


# ---- loading ------------------------------------------------------------------------------
def _load(source: _Source, aug: Augmentation, size: int, options: TokenizeOptions) -> _Loaded:
    """Decode, hash and fit one image (runs in a worker thread)."""
    from vistok.data.images import ImageLoadError, load_image_uint8

    try:
        image = load_image_uint8(source.path)
        data = source.path.read_bytes()
    except ImageLoadError as e:
        return _Loaded(source, error=e.reason)
    except OSError as e:
        return _Loaded(source, error=f"cannot read file ({e.strerror or e})")
    views = aug.make(image, size, options.pad_mode, options.crop_range)
    record = {
        "index": source.index,
        "path": str(source.path),
        "name": source.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
        "height": int(image.shape[0]),
        "width": int(image.shape[1]),
        "fit": views.fit.to_dict(),
    }
    return _Loaded(source, record=record, views=views.images)


def _ordered_map(
    pool: ThreadPoolExecutor, fn: Callable[[_T], _R], items: Iterable[_T], ahead: int
) -> Iterator[_R]:
    """``map(fn, items)`` in order, with at most ``ahead`` calls in flight in ``pool``."""
    queue: deque[Future[_R]] = deque()
    it = iter(items)
    for item in it:
        queue.append(pool.submit(fn, item))
        if len(queue) >= ahead:
            break
    while queue:
        result = queue.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            queue.append(pool.submit(fn, nxt))
        yield result


# ---- one shard ----------------------------------------------------------------------------
class _ShardWriter:
    """Collects one shard's rows batch by batch and writes it when complete."""

    def __init__(self, index: int, sources: Sequence[_Source], ctx: _Context):
        self.index = index
        self.sources = sources
        self.ctx = ctx
        self.items: list[dict[str, Any]] = []
        self.skipped: list[dict[str, Any]] = []
        self.pending: list[tuple[int, int, np.ndarray]] = []  # (item, view, uint8 view)
        self.parts: dict[str, list[Tensor]] = {
            k: [] for k in (ctx.spec.field, "lengths", "bits", "item", "view")
        }

    def add(self, loaded: _Loaded) -> None:
        if loaded.error is not None:
            self.skipped.append(
                {"index": loaded.source.index, "path": str(loaded.source.path), "reason": loaded.error}
            )
            return
        self.items.append(loaded.record)
        self.pending += [(loaded.source.index, v, img) for v, img in enumerate(loaded.views)]
        while len(self.pending) >= self.ctx.options.batch_size:
            self._encode(self.ctx.options.batch_size)

    def _encode(self, n: int) -> None:
        from vistok.models.codecs import from_uint8

        batch, self.pending = self.pending[:n], self.pending[n:]
        ctx = self.ctx
        x = from_uint8([img for _, _, img in batch]).to(ctx.device)
        with torch.inference_mode():
            t = ctx.tokenizer.encode(x, num_tokens=ctx.num_tokens)
        if _meta_key(t.meta) != ctx.spec.meta:
            raise RuntimeError(
                f"{ctx.tokenizer.spec}: encode's meta changes from batch to batch ({t.meta!r}); "
                "per-image metadata cannot be stored in a token dataset"
            )
        values = t.ids if ctx.spec.field == "ids" else t.latents
        assert values is not None
        self.parts[ctx.spec.field].append(values.detach().to("cpu", ctx.spec.dtype))
        lengths = t.lengths if t.lengths is not None else torch.full((len(batch),), ctx.spec.positions)
        self.parts["lengths"].append(lengths.detach().to("cpu", torch.int64))
        self.parts["bits"].append(t.bits.detach().to("cpu", torch.float64))
        self.parts["item"].append(torch.tensor([i for i, _, _ in batch], dtype=torch.int64))
        self.parts["view"].append(torch.tensor([v for _, v, _ in batch], dtype=torch.int64))

    def finish(self) -> int:
        """Encode what is left, write the shard atomically; returns its rows."""
        if self.pending:
            self._encode(len(self.pending))
        spec = self.ctx.spec
        empty = {
            spec.field: torch.zeros((0, *spec.token_shape), dtype=spec.dtype),
            "bits": torch.zeros(0, dtype=torch.float64),
        }
        tensors = {
            k: torch.cat(v) if v else empty.get(k, torch.zeros(0, dtype=torch.int64))
            for k, v in self.parts.items()
        }
        rows = int(tensors["item"].shape[0])
        if self.ctx.tokenizer.variable_length:  # per image, one length per view, in the manifest too
            per_item: dict[int, list[int]] = {}
            for item, n in zip(tensors["item"].tolist(), tensors["lengths"].tolist()):
                per_item.setdefault(item, []).append(n)
            for record in self.items:
                record["lengths"] = per_item[record["index"]]
        meta = {
            "format": SHARD_FORMAT,
            "plan_sha256": self.ctx.plan_sha256,
            "shard": self.index,
            "first_image": self.sources[0].index if self.sources else 0,
            "images": len(self.sources),
            "rows": rows,
            "items": self.items,
            "skipped": self.skipped,
        }
        write_shard(self.ctx.out / shard_name(self.index), tensors, meta)
        return rows


@dataclass
class _Context:
    options: TokenizeOptions
    tokenizer: Tokenizer
    num_tokens: int | None
    size: int
    device: torch.device
    spec: _Spec
    out: Path
    plan: dict[str, Any]
    plan_sha256: str


def _shard_done(ctx: _Context, index: int) -> bool:
    path = ctx.out / shard_name(index)
    if not path.exists():
        return False
    try:
        return read_shard_meta(path).get("plan_sha256") == ctx.plan_sha256
    except (ValueError, OSError):
        return False  # unreadable: make it again


# ---- the run ------------------------------------------------------------------------------
def tokenize_images(
    inputs: Sequence[tuple[Path, Path]],
    out: str | Path,
    options: TokenizeOptions,
    *,
    rank: int = 0,
    world: int = 1,
    barrier: Callable[[], None] = lambda: None,
    overwrite: bool = False,
    progress: bool = True,
) -> TokenizeResult:
    """Tokenize ``inputs`` (``(file, relative name)`` pairs, in order) into shards under ``out``.

    Args:
        rank, world: this process's share: shards ``rank, rank + world, ...``.
        barrier: waits for every rank (``torch.distributed`` under torchrun); rank 0
            writes the manifest after it.
        overwrite: discard a dataset in ``out`` made with other settings instead of failing.
        progress: show a progress bar (images/s, ETA) on rank 0.

    Returns:
        this rank's :class:`TokenizeResult`; on rank 0 with ``manifest`` set.

    Raises:
        PlanMismatchError: ``out`` holds a run with other settings or inputs.
        ValueError: bad options or tokenizer spec.
    """
    out = Path(out)
    tok, k = build_tokenizer(options.tokenizer)
    device = _resolve_device(options.device)
    tok = tok.to(device).eval()
    size = tok.input_size or options.size
    if size % tok.stride:
        raise ValueError(f"size {size} is not a multiple of {tok.spec}'s stride {tok.stride}")
    sources = [_Source(i, Path(p), str(name)) for i, (p, name) in enumerate(inputs)]
    plan = _plan(options, sources, device)
    out.mkdir(parents=True, exist_ok=True)
    if rank == 0:
        _check_plan(out, plan, overwrite)
    barrier()
    if rank != 0:
        _check_plan(out, plan, overwrite=False)
    ctx = _Context(
        options=options,
        tokenizer=tok,
        num_tokens=k,
        size=size,
        device=device,
        spec=_probe(tok, k, size, device),
        out=out,
        plan=plan,
        plan_sha256=hashlib.sha256(canonical_json(plan).encode()).hexdigest(),
    )
    result = TokenizeResult(out)
    n_shards = max(1, -(-len(sources) // options.shard_size))
    mine = list(range(rank, n_shards, world))
    todo = [s for s in mine if not _shard_done(ctx, s)]
    result.shards_reused = len(mine) - len(todo)
    _remove_temporaries(out, todo)
    start, cpu = time.perf_counter(), time.process_time()
    _run_shards(ctx, sources, todo, result, progress and rank == 0)
    result.seconds = time.perf_counter() - start
    result.cpu_seconds = time.process_time() - cpu
    barrier()
    if rank == 0:
        result.manifest = write_manifest(ctx, n_shards)
    return result


def _resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def _remove_temporaries(out: Path, shards: Iterable[int]) -> None:
    """Temporary files a killed run left behind for the shards about to be made."""
    for s in shards:
        for tmp in out.glob(f".{shard_name(s)}.*.tmp"):
            tmp.unlink(missing_ok=True)


def _run_shards(
    ctx: _Context, sources: Sequence[_Source], todo: Sequence[int], result: TokenizeResult, progress: bool
) -> None:
    from tqdm.auto import tqdm

    size = ctx.options.shard_size
    groups = [sources[s * size : (s + 1) * size] for s in todo]
    aug = AUGMENTATIONS[ctx.options.augment]
    total = sum(len(g) for g in groups)
    bar = tqdm(
        total=total, desc="tokenize", unit="img", dynamic_ncols=True, disable=None if progress else True
    )
    ahead = max(2 * ctx.options.batch_size // aug.num_views, 2 * ctx.options.workers, 4)
    with ThreadPoolExecutor(ctx.options.workers, thread_name_prefix="vistok-load") as pool:
        stream = _ordered_map(
            pool, lambda s: _load(s, aug, ctx.size, ctx.options), (s for g in groups for s in g), ahead
        )
        for shard, group in zip(todo, groups):
            writer = _ShardWriter(shard, group, ctx)
            for _ in group:
                writer.add(next(stream))
                bar.update(1)
            result.rows += writer.finish()
            result.images += len(writer.items)
            result.skipped += [(s["path"], s["reason"]) for s in writer.skipped]
            result.shards_written += 1
    bar.close()


# ---- the manifest -------------------------------------------------------------------------
def write_manifest(ctx: _Context, n_shards: int) -> dict[str, Any]:
    """Assemble ``manifest.json`` from the shards' headers (rank 0, after every rank finished).

    Raises:
        FileNotFoundError: a shard is missing (another rank failed; rerun to finish).
    """
    import vistok
    from vistok.bench.protocol import PROTOCOL_VERSION

    items: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    shards: list[dict[str, Any]] = []
    first_row = 0
    for s in range(n_shards):
        path = ctx.out / shard_name(s)
        if not _shard_done(ctx, s):
            raise FileNotFoundError(
                f"{path}: shard missing or from another run; rerun the same command to finish"
            )
        meta = read_shard_meta(path)
        items += meta["items"]
        skipped += meta["skipped"]
        data = path.read_bytes()
        shards.append(
            {
                "file": path.name,
                "rows": meta["rows"],
                "first_row": first_row,
                "first_image": meta["first_image"],
                "images": meta["images"],
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
        first_row += meta["rows"]
    tok, spec, aug = ctx.tokenizer, ctx.spec, AUGMENTATIONS[ctx.options.augment]
    discrete = spec.kind == "discrete"
    max_length = spec.positions if spec.layout == "grid" or not discrete else spec.token_shape[0]
    manifest = {
        "format": DATASET_FORMAT,
        "vistok_version": vistok.__version__,
        "tokenizer": ctx.options.tokenizer,
        "tokenizer_spec": tok.spec,
        "num_tokens": ctx.num_tokens,
        "tokenizer_info": _json_safe(tok.describe()),
        "kind": spec.kind,
        "layout": spec.layout,
        "token_shape": list(spec.token_shape),
        "field": spec.field,
        "dtype": spec.dtype_name,
        "variable_length": bool(tok.variable_length),
        "max_length": max_length,
        "vocab_sizes": [int(tok.vocab_size or 0)] * tok.num_codebooks if discrete else [],
        "factors": tok.index_factors if discrete else None,
        "tokens_meta": spec.meta,
        "geometry": {
            "protocol": PROTOCOL_VERSION,
            "size": ctx.size,
            "requested_size": ctx.options.size,
            "pad_mode": ctx.options.pad_mode,
            "fit": "pad to square (centred) -> resize to size (Pillow bicubic, antialiased); "
            "inputs decoded to 8-bit sRGB (vistok.data.images policy)",
        },
        "augment": {
            "name": aug.name,
            "views": aug.num_views,
            "crop_range": ctx.plan["crop_range"],
            "view0_is_fit": aug.undoable,
        },
        "rows": first_row,
        "images": len(items),
        "inputs": ctx.plan["inputs"],
        "plan": ctx.plan,
        "plan_sha256": ctx.plan_sha256,
        "shards": shards,
        "items": items,
        "skipped": skipped,
    }
    atomic_write_text(ctx.out / MANIFEST_NAME, canonical_json(manifest) + "\n")
    return manifest


def _json_safe(obj: Any) -> Any:
    import json

    return json.loads(json.dumps(obj, default=str))
