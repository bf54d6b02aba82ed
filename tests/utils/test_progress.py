"""Progress in a log file: a few short lines, not bar frames."""

from __future__ import annotations

import io

from vistok.utils.progress import LineProgress, progress


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_300_steps_write_a_dozen_short_lines() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(total=300, desc="train", unit="step", stream=out, clock=clock)
    for _ in range(300):
        clock.t += 0.2  # a 60 s run
        bar.update(1)
        bar.set_postfix(loss="0.1234", psnr="21.50")
    bar.close()
    lines = out.getvalue().splitlines()
    assert 9 <= len(lines) <= 12 and len(out.getvalue()) < 2000
    assert lines[0].startswith("train: 30/300 step (10%), 6s elapsed, ~54s left, loss=0.1234")
    assert lines[-1].startswith("train: 300/300 step (100%), 1m00s elapsed")
    assert "\r" not in out.getvalue()


def test_slow_work_gets_a_line_every_interval_and_resume_counts_from_initial() -> None:
    out, clock = io.StringIO(), _Clock()
    bar = LineProgress(total=1000, initial=500, desc="train", stream=out, clock=clock, every_s=60)
    for _ in range(5):
        clock.t += 61  # 0.1% per step: only the time rule fires
        bar.update(1)
    assert len(out.getvalue().splitlines()) == 5
    assert "505/1000" in out.getvalue().splitlines()[-1]
    assert "left" in out.getvalue()  # the estimate uses this run's rate, not the resumed steps


def test_iterating_and_unknown_total() -> None:
    out = io.StringIO()
    assert list(LineProgress(iter(range(3)), desc="x", stream=out)) == [0, 1, 2]
    assert out.getvalue().splitlines() == ["x: 3 it, 0s elapsed"]


def test_progress_picks_lines_off_a_terminal_and_nothing_when_disabled() -> None:
    out = io.StringIO()  # not a terminal
    items = list(progress(range(4), desc="encode", unit="img", stream=out))
    assert items == [0, 1, 2, 3] and out.getvalue().splitlines()[-1].startswith("encode: 4/4 img (100%)")
    quiet = io.StringIO()
    assert list(progress(range(4), enabled=False, stream=quiet)) == [0, 1, 2, 3] and quiet.getvalue() == ""
