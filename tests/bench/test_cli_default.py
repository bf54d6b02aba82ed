"""``vistok bench`` with no arguments runs the short default set; ``--full`` the complete sweep."""

from __future__ import annotations

import pytest

import vistok
from vistok.bench.cli import DEFAULT_TOKENIZERS, FULL_TOKENIZERS
from vistok.bench.points import expand_points
from vistok.cli import main


class _Stop(Exception):
    pass


def _specs_of(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> list[str]:
    import vistok.bench.runner as runner

    seen: list[list[str]] = []

    def fake(specs: list[str], *a: object, **k: object) -> None:
        seen.append(specs)
        raise _Stop

    monkeypatch.setattr(runner, "run_bench", fake)
    with pytest.raises(_Stop):
        main(["bench", "--data", "samples:photos", *argv])
    return seen[-1]


def test_default_run_is_the_short_set_and_full_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    default = _specs_of(monkeypatch, [])
    full = _specs_of(monkeypatch, ["--full"])
    assert default == DEFAULT_TOKENIZERS and full == FULL_TOKENIZERS  # every name is registered here
    short = expand_points(default, sweep=True, create=vistok.create)
    swept = expand_points(full, sweep=True, create=vistok.create)
    # both keep the shipped tokenizers, JPEG, WebP and the lossless bound ...
    for points in (short, swept):
        families = {p.spec.split(":")[0] for p in points}
        assert {"vistok-f8", "vistok-1d", "jpeg", "webp", "png"} <= families
    # ... the default at a few token counts and qualities, --full at all of them
    assert [p.num_tokens for p in short if p.spec == "vistok-1d"] == [8, 32, 256]
    assert [p.num_tokens for p in swept if p.spec == "vistok-1d"] == [1, 2, 4, 8, 16, 32, 64, 128, 256]
    assert len(short) == 11 and len(swept) > 2 * len(short)
    assert not any(p.spec == "vistok-pca" for p in short)


def test_full_with_explicit_tokenizers_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--full", "-t", "jpeg"]) != 0
    assert "--full" in capsys.readouterr().err
