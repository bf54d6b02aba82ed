"""Small C kernels compiled on first use and called through ctypes, with a pure-torch fallback.

A kernel is one C99 file shipped inside the package (no Python or torch headers, so it builds
in well under a second). :func:`load` compiles it with the system C compiler (``$CC``, else
``cc``) for this machine's CPU (``-O3 -march=native -fopenmp``, then without ``-march`` if the compiler
refuses it, then without OpenMP) into the user cache (``$VISTOK_CACHE/native``), keyed by the source, the flags,
the compiler's version and the CPU, so a cache shared between different machines never hands
one a binary built for another. The file is written to a temporary name and renamed, so
concurrent processes (DDP ranks) never load a half-written library.

Nothing is required: without a compiler, on a platform where the build fails, or with
``VISTOK_NATIVE=0``, :func:`load` returns ``None`` (after one warning, for a failed build) and
callers use their torch path. Two ways to use several cores: ctypes releases the GIL during
a call, so Python threads can split a long call's rows (:func:`parallel_rows`; tens of
microseconds per hand-off, for millisecond calls), or a kernel runs an OpenMP loop itself
(for sub-millisecond calls; one thread when the compiler has no OpenMP). With torch's CPU
wheels the library's ``libgomp.so.1`` is torch's own, already loaded, so both share one
OpenMP runtime.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from vistok.utils.io import user_cache_dir

__all__ = ["available", "load", "parallel_rows"]

_FLAG_SETS = (["-O3", "-march=native", "-fopenmp"], ["-O3", "-fopenmp"], ["-O3"])
_BASE_FLAGS = ["-std=gnu99", "-shared", "-fPIC"]
_lock = threading.Lock()
_loaded: dict[str, ctypes.CDLL | None] = {}


def available() -> bool:
    """Whether native kernels may be used: ``VISTOK_NATIVE`` is not ``0``/``false``/``no``."""
    return os.environ.get("VISTOK_NATIVE", "1").strip().lower() not in ("0", "false", "no", "off")


def _compiler() -> str | None:
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


def _cpu_id() -> str:
    """What ``-march=native`` depends on: the CPU model and its feature flags."""
    info = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    info += line
                if line.strip() == "":  # first processor is enough
                    break
    except OSError:
        pass
    return info


def _compiler_version(cc: str) -> str:
    try:
        return subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def _build(source: Path, cc: str) -> Path:
    """Compile ``source`` into the cache (if not already there) and return the library path."""
    text = source.read_bytes()
    version = _compiler_version(cc)
    out_dir = user_cache_dir() / "native"
    errors = []
    for flags in _FLAG_SETS:
        key = hashlib.sha256(
            b"\0".join([text, " ".join(flags + _BASE_FLAGS).encode(), version.encode(), _cpu_id().encode()])
        ).hexdigest()[:20]
        lib = out_dir / f"{source.stem}-{key}.so"
        if lib.exists():
            return lib
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".so", dir=out_dir)
        os.close(fd)
        try:
            proc = subprocess.run(
                [cc, *flags, *_BASE_FLAGS, "-o", tmp, str(source)],
                capture_output=True,
                text=True,
                timeout=120,
            )
            if proc.returncode == 0:
                os.replace(tmp, lib)
                return lib
            lines = proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"]
            first = next((ln for ln in lines if "error" in ln.lower()), lines[-1])
            errors.append(f"{' '.join([cc, *flags])}: {first.strip()[:300]}")
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    raise RuntimeError("; ".join(errors))


Signatures = Mapping[str, tuple[list[Any], Any]]


def load(source: Path, signatures: Signatures | None = None) -> ctypes.CDLL | None:
    """The compiled library of C file ``source``, or ``None`` when native kernels are off.

    Builds at most once per process (and once per machine, through the cache). A failed
    build warns once, naming the file and the compiler's message, and returns ``None``.
    ``signatures`` (``{function: (argtypes, restype)}``) are set when the library is loaded.
    """
    if not available():
        return None
    name = str(source)
    with _lock:
        if name not in _loaded:
            cc = _compiler()
            lib = None
            if cc is None:
                warnings.warn(
                    f"vistok: no C compiler ({os.environ.get('CC') or 'cc'}) found: {source.name} runs "
                    "on its slower torch path (set CC, or VISTOK_NATIVE=0 to silence this)",
                    RuntimeWarning,
                    stacklevel=2,
                )
            else:
                try:
                    lib = ctypes.CDLL(str(_build(source, cc)))
                    for function, (argtypes, restype) in (signatures or {}).items():
                        fn = getattr(lib, function)
                        fn.argtypes, fn.restype = argtypes, restype
                except (OSError, RuntimeError, subprocess.SubprocessError) as e:
                    warnings.warn(
                        f"vistok: could not build {source.name} ({e}); using the slower torch path",
                        RuntimeWarning,
                        stacklevel=2,
                    )
            _loaded[name] = lib
        return _loaded[name]


_pool: tuple[int, int, ThreadPoolExecutor] | None = None


def _executor(workers: int) -> ThreadPoolExecutor:
    """A thread pool for this process (a pool inherited through ``fork`` has no threads)."""
    global _pool
    pid = os.getpid()
    if _pool is None or _pool[0] != pid or _pool[1] != workers:
        _pool = (pid, workers, ThreadPoolExecutor(max_workers=workers, thread_name_prefix="vistok-native"))
    return _pool[2]


def parallel_rows(fn: Callable[[int, int], int], rows: int, *, threads: int, align: int = 1) -> list[int]:
    """Run ``fn(lo, hi)`` over ``[0, rows)`` split into ``threads`` parts (multiples of ``align``).

    ``fn`` must release the GIL (a ctypes call does) and return a count ``>= 0``; a negative
    return raises. Returns each part's count, in order.
    """
    per = -(-rows // max(1, threads))
    per = -(-per // align) * align
    bounds = [(lo, min(rows, lo + per)) for lo in range(0, rows, per)]
    if len(bounds) == 1:
        results = [fn(*bounds[0])]
    else:
        results = [f.result() for f in [_executor(threads).submit(fn, lo, hi) for lo, hi in bounds]]
    if any(r < 0 for r in results):
        raise RuntimeError(f"native kernel failed with codes {results}")
    return results
