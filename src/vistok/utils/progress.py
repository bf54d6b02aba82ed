"""Progress of long work: a live bar on a terminal, short periodic lines in a log file.

One helper for the CLI, the trainer and the benchmark::

    for item in progress(items, desc="encode", unit="img"):
        ...
    bar = progress(total=300, desc="train", unit="step")
    bar.update(1); bar.set_postfix(loss="0.0123"); bar.close()

When the stream (stderr by default) is a terminal this is tqdm's bar. Otherwise (a log
file, a pipe, CI) tqdm would write every frame of the bar into the file; instead a
:class:`LineProgress` writes one short line when another ``every_pct`` percent is done or
``every_s`` seconds have passed, and a last line at the end: a 300-step training run
writes about a dozen lines, not hundreds of kilobytes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import IO, Any, Generic, TypeVar

__all__ = ["LineProgress", "progress"]

T = TypeVar("T")


def _duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


class LineProgress(Generic[T]):
    """tqdm's interface (iterate, ``update``, ``set_postfix[_str]``, ``close``) as periodic lines.

    Args:
        iterable: items to iterate (optional; ``total`` defaults to its length).
        total: the amount of work, or ``None`` when unknown (then lines are time-based only).
        desc / unit: what is counted (``"train"``, ``"step"``).
        initial: work already done (a resumed run).
        every_s: the most seconds between two lines while work goes on.
        every_pct: a line each time this many more percent are done (and at least 1 s after
            the previous line, so fast loops stay quiet).
        stream: where lines go (default: ``sys.stderr`` at write time).
        clock: seconds, monotonic (injectable for tests).
    """

    def __init__(
        self,
        iterable: Iterable[T] | None = None,
        *,
        total: int | None = None,
        desc: str = "",
        unit: str = "it",
        initial: int = 0,
        every_s: float = 60.0,
        every_pct: float = 10.0,
        stream: IO[str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self._start = initial
        self.every_s, self.every_pct = every_s, every_pct
        self._stream, self._clock = stream, clock
        self._t0 = self._last_t = clock()
        self._last_pct = self._pct()
        self._postfix = ""
        self._closed = False

    def _pct(self) -> float:
        return 100.0 * self.n / self.total if self.total else 0.0

    def line(self) -> str:
        """The current state in one short line."""
        elapsed = self._clock() - self._t0
        done = (
            f"{self.n}/{self.total} {self.unit} ({self._pct():.0f}%)"
            if self.total
            else f"{self.n} {self.unit}"
        )
        parts = [f"{self.desc}: {done}" if self.desc else done, f"{_duration(elapsed)} elapsed"]
        if self.total and self.n > self._start and self.n < self.total:
            left = elapsed / (self.n - self._start) * (self.total - self.n)
            parts.append(f"~{_duration(left)} left")
        if self._postfix:
            parts.append(self._postfix)
        return ", ".join(parts)

    def _write(self) -> None:
        stream = self._stream or sys.stderr
        print(self.line(), file=stream, flush=True)
        self._last_t, self._last_pct = self._clock(), self._pct()

    def update(self, n: int = 1) -> None:
        """Count ``n`` more units; write a line when it is due."""
        self.n += n
        now = self._clock()
        due_pct = self.total and self._pct() - self._last_pct >= self.every_pct and now - self._last_t >= 1.0
        if due_pct or now - self._last_t >= self.every_s:
            self._write()

    def set_postfix(self, ordered_dict: dict[str, Any] | None = None, **kwargs: Any) -> None:
        """Show ``key=value`` pairs at the end of the next line."""
        items = {**(ordered_dict or {}), **kwargs}
        self._postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def set_postfix_str(self, s: str = "") -> None:
        self._postfix = s

    def close(self) -> None:
        """Write the last line (once), unless no work was counted in this run."""
        if not self._closed and self.n > self._start:
            self._write()
        self._closed = True

    def __iter__(self) -> Iterator[T]:
        if self.iterable is None:
            raise TypeError("LineProgress: nothing to iterate (pass an iterable)")
        try:
            for item in self.iterable:
                yield item
                self.update(1)
        finally:
            self.close()

    def __enter__(self) -> LineProgress[T]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def progress(
    iterable: Iterable[T] | None = None,
    *,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    initial: int = 0,
    enabled: bool = True,
    stream: IO[str] | None = None,
    every_s: float = 60.0,
    every_pct: float = 10.0,
) -> Any:
    """A progress bar on a terminal, :class:`LineProgress` lines otherwise (see the module doc).

    Args:
        iterable / total / desc / unit / initial: as tqdm.
        enabled: ``False`` shows nothing (other ranks, ``--no-progress``).
        stream: where to write (default ``sys.stderr``); its ``isatty()`` picks the form.
        every_s / every_pct: the cadence of lines when the stream is not a terminal.

    Returns:
        an object with tqdm's interface: iterate it, or ``update`` / ``set_postfix`` /
        ``set_postfix_str`` / ``close`` it.
    """
    out = stream or sys.stderr
    if enabled and getattr(out, "isatty", lambda: False)():
        from tqdm.auto import tqdm

        return tqdm(
            iterable, total=total, desc=desc, unit=unit, initial=initial, dynamic_ncols=True, file=out
        )
    if not enabled:
        from tqdm.auto import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=True)
    return LineProgress(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        every_s=every_s,
        every_pct=every_pct,
        stream=stream,
    )
