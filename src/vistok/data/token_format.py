"""On-disk layout of a token dataset (``vistok tokenize``): safetensors shards + a JSON manifest.

Everything a reader needs is in docs/generation.md ("Token datasets"); this module is the
one place that writes and parses it. Shards are plain safetensors files: an 8-byte
little-endian header length, a JSON header, then the raw little-endian tensor bytes, so
:func:`memmap_tensor` maps them with numpy alone. The header's ``__metadata__`` holds a
single key (:data:`SHARD_META_KEY`) whose value is canonical JSON (sorted keys): the
safetensors writer orders several metadata keys at random, one key keeps shards
byte-identical from run to run.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vistok.utils.io import atomic_write_bytes

__all__ = [
    "DATASET_FORMAT",
    "MANIFEST_NAME",
    "PLAN_NAME",
    "SHARD_FORMAT",
    "SHARD_META_KEY",
    "canonical_json",
    "ids_dtype",
    "memmap_tensor",
    "read_shard_header",
    "read_shard_meta",
    "shard_name",
    "write_shard",
]

DATASET_FORMAT = "vistok.token-dataset/1"
SHARD_FORMAT = "vistok.token-shard/1"
SHARD_META_KEY = "vistok"
MANIFEST_NAME = "manifest.json"  # written last: a folder without it is an unfinished run
PLAN_NAME = "tokenize.json"  # the settings a run was started with; a resume must match them

_NP_DTYPES = {
    "BOOL": np.bool_,
    "U8": np.uint8,
    "I8": np.int8,
    "U16": np.uint16,
    "I16": np.int16,
    "I32": np.int32,
    "I64": np.int64,
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
}


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no spaces: the same object always gives the same bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def shard_name(index: int) -> str:
    """File name of shard ``index`` (``shard-00000.safetensors``)."""
    return f"shard-{index:05d}.safetensors"


def ids_dtype(vocab_sizes: list[int]) -> torch.dtype:
    """Smallest stored dtype that holds every id: uint16 up to 65,536 codes, then int32, int64."""
    top = max(vocab_sizes, default=1)
    uint16 = getattr(torch, "uint16", None)  # torch >= 2.3
    if top <= 1 << 16 and uint16 is not None:
        return uint16
    if top <= 1 << 31:
        return torch.int32
    return torch.int64


def write_shard(path: Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Write one shard atomically; ``meta`` goes into the header as canonical JSON.

    The bytes depend only on the tensors' values, shapes and dtypes and on ``meta``.
    """
    from safetensors.torch import save

    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    atomic_write_bytes(path, save(data, metadata={SHARD_META_KEY: canonical_json(meta)}))


def read_shard_header(path: Path) -> tuple[dict[str, Any], int]:
    """The shard's JSON header and the byte offset where tensor data starts (numpy-free).

    Raises:
        ValueError: naming the file when it is not a safetensors file.
    """
    path = Path(path)
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise ValueError(f"{path}: not a token shard (file shorter than a safetensors header)")
        (n,) = struct.unpack("<Q", raw)
        if n > 1 << 30:
            raise ValueError(f"{path}: not a token shard (header length {n} is implausible)")
        body = f.read(n)
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: not a token shard (unreadable header: {e})") from None
    return header, 8 + n


def read_shard_meta(path: Path) -> dict[str, Any]:
    """The vistok metadata of a shard (items, skipped files, plan hash).

    Raises:
        ValueError: naming the file when it is not a vistok token shard.
    """
    header, _ = read_shard_header(path)
    meta = (header.get("__metadata__") or {}).get(SHARD_META_KEY)
    if meta is None:
        raise ValueError(f"{path}: not a vistok token shard (no {SHARD_META_KEY!r} metadata)")
    out = json.loads(meta)
    if out.get("format") != SHARD_FORMAT:
        raise ValueError(f"{path}: unsupported shard format {out.get('format')!r} (expected {SHARD_FORMAT})")
    return out


def memmap_tensor(path: Path, name: str) -> np.ndarray:
    """Memory-map tensor ``name`` of a shard as a read-only numpy array (no copy).

    Raises:
        KeyError: naming the file when the shard has no such tensor.
    """
    header, start = read_shard_header(path)
    if name not in header or name == "__metadata__":
        raise KeyError(f"{path}: no tensor {name!r} (has {sorted(k for k in header if k != '__metadata__')})")
    info = header[name]
    dtype = np.dtype(_NP_DTYPES[info["dtype"]]).newbyteorder("<")
    shape = tuple(info["shape"])
    begin, end = info["data_offsets"]
    if end == begin:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=start + begin, shape=shape)
