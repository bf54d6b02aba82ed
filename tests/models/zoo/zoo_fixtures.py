"""Shared pieces of the published-family parity tests (``from zoo_fixtures import ...``: pytest puts
this folder on ``sys.path`` for its test modules; not a conftest, which every folder names alike).

Fixtures live in ``tests/fixtures/official/<family>/<case>/``, made by the official code
(``scripts/make_official_fixtures.py``; ``SOURCE.json`` records the repository and commit).
A missing fixture is a failure, never a skip.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "official"


def fixture_case(family: str, case: str) -> Path:
    """The folder of one fixture case; fails (not skips) when it is missing."""
    src = FIXTURES / family / "SOURCE.json"
    d = FIXTURES / family / case
    if not src.is_file() or not d.is_dir():
        pytest.fail(
            f"parity fixture {d} is missing: run scripts/make_official_fixtures.py {family} "
            "--checkout OFFICIAL_CHECKOUT --commit SHA"
        )
    return d


def load_io(case_dir: Path, name: str = "io.safetensors") -> dict[str, torch.Tensor]:
    """The tensors the official code wrote for a case (inputs, codes, latents, reconstructions)."""
    path = case_dir / name
    if not path.is_file():
        pytest.fail(f"parity fixture file {path} is missing")
    return load_file(str(path))


def case_meta(case_dir: Path) -> dict[str, Any]:
    """``case.json`` of a case: the vistok spec to build, tolerances, notes."""
    path = case_dir / "case.json"
    if not path.is_file():
        pytest.fail(f"parity fixture file {path} is missing")
    return json.loads(path.read_text())


def source(family: str) -> dict[str, Any]:
    return json.loads((FIXTURES / family / "SOURCE.json").read_text())
