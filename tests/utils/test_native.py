"""Native kernels: build into the cache, fall back cleanly, split rows over threads."""

from __future__ import annotations

import ctypes
import itertools
import os
import warnings
from pathlib import Path

import pytest

from vistok.utils import native

ADD = "int add(int a, int b) { return a + b; }\n"


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A private cache and no libraries loaded yet in this process."""
    monkeypatch.setenv("VISTOK_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(native, "_loaded", {})
    return tmp_path


needs_cc = pytest.mark.skipif(native._compiler() is None, reason="no C compiler on this machine")


@needs_cc
def test_a_kernel_builds_once_into_the_cache_and_runs(fresh: Path) -> None:
    src = fresh / "add.c"
    src.write_text(ADD)
    lib = native.load(src)
    assert lib is not None
    lib.add.argtypes, lib.add.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    assert lib.add(2, 40) == 42
    built = list((fresh / "cache" / "native").glob("add-*.so"))
    assert len(built) == 1
    stamp = built[0].stat().st_mtime_ns
    native._loaded.clear()  # as a new process would: the cached library is reused, not rebuilt
    assert native.load(src) is not None
    assert built[0].stat().st_mtime_ns == stamp
    assert not [p for p in (fresh / "cache" / "native").iterdir() if p.suffix != ".so" or p not in built]


@needs_cc
def test_a_loaded_library_is_returned_without_building_again(
    fresh: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once per process: a second load (with signatures, as every kernel call does) neither
    builds nor runs the compiler (a regression: the signature loop's variable shadowed the
    memo key, so every FSQ step forked ``cc --version`` and was 6x slower than torch)."""
    src = fresh / "add.c"
    src.write_text(ADD)
    sig = {"add": ([ctypes.c_int, ctypes.c_int], ctypes.c_int)}
    first = native.load(src, sig)
    assert first is not None and first.add(2, 40) == 42
    calls: list[object] = []
    monkeypatch.setattr(native, "_build", lambda *a: calls.append(a))
    monkeypatch.setattr(native.subprocess, "run", lambda *a, **k: calls.append(a))
    for _ in range(3):
        assert native.load(src, sig) is first
    assert calls == [] and list(native._loaded) == [str(src)]


@needs_cc
def test_a_changed_source_gets_a_new_library(fresh: Path) -> None:
    src = fresh / "add.c"
    src.write_text(ADD)
    native.load(src)
    src.write_text(ADD + "int sub(int a, int b) { return a - b; }\n")
    native._loaded.clear()
    lib = native.load(src)
    assert lib is not None and hasattr(lib, "sub")
    assert len(list((fresh / "cache" / "native").glob("add-*.so"))) == 2


@needs_cc
def test_a_broken_source_warns_with_the_compiler_message_and_returns_none(fresh: Path) -> None:
    src = fresh / "broken.c"
    src.write_text("int f(void) { return undefined_name; }\n")
    with pytest.warns(RuntimeWarning, match=r"could not build broken\.c.*undefined_name"):
        assert native.load(src) is None
    assert not list((fresh / "cache" / "native").glob("*"))  # nothing half-written
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # one warning per process, not per call
        assert native.load(src) is None


def test_no_compiler_warns_and_returns_none(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = fresh / "add.c"
    src.write_text(ADD)
    monkeypatch.setenv("CC", str(fresh / "no-such-cc"))
    with pytest.warns(RuntimeWarning, match="no C compiler"):
        assert native.load(src) is None


@pytest.mark.parametrize("value", ["0", "false", "off"])
def test_vistok_native_0_disables_without_a_warning(
    fresh: Path, monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    src = fresh / "add.c"
    src.write_text(ADD)
    monkeypatch.setenv("VISTOK_NATIVE", value)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert native.load(src) is None
    assert not (fresh / "cache" / "native").exists()


@pytest.mark.parametrize(
    ("rows", "threads", "align"), [(10, 2, 4), (16, 2, 4), (3, 4, 1), (1, 2, 4), (100, 3, 8)]
)
def test_parallel_rows_covers_every_row_once_in_aligned_parts(rows: int, threads: int, align: int) -> None:
    seen: list[tuple[int, int]] = []

    def fn(lo: int, hi: int) -> int:
        seen.append((lo, hi))
        return 0

    assert native.parallel_rows(fn, rows, threads=threads, align=align) == [0] * len(seen)
    seen.sort()
    assert seen[0][0] == 0 and seen[-1][1] == rows
    assert all(a[1] == b[0] for a, b in itertools.pairwise(seen))
    assert all(lo % align == 0 for lo, _ in seen)
    assert len(seen) <= threads


def test_parallel_rows_raises_when_a_part_fails() -> None:
    with pytest.raises(RuntimeError, match="codes"):
        native.parallel_rows(lambda lo, hi: -1 if lo else 0, 8, threads=2)


def test_the_pool_is_rebuilt_in_a_forked_child() -> None:
    """A pool inherited through fork has no threads: the child must not wait on it forever."""
    native.parallel_rows(lambda lo, hi: 0, 8, threads=2)  # the parent's pool exists
    pid = os.fork()
    if pid == 0:  # child
        try:
            native.parallel_rows(lambda lo, hi: 0, 8, threads=2)
            os._exit(0)
        except BaseException:
            os._exit(1)
    for _ in range(200):  # up to 20 s
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        import time

        time.sleep(0.1)
    os.kill(pid, 9)
    pytest.fail("the forked child hung on the parent's thread pool")
