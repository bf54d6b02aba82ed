"""docs/training.md documents every recipe key."""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path

from vistok.train.config import TrainConfig

DOC = Path(__file__).resolve().parents[2] / "docs" / "training.md"


def test_every_config_key_is_documented() -> None:
    text = DOC.read_text()
    hints = typing.get_type_hints(TrainConfig)
    missing = [
        f"{s.name}.{f.name}"
        for s in dataclasses.fields(TrainConfig)
        for f in dataclasses.fields(hints[s.name])
        if f"`{s.name}.{f.name}`" not in text
    ]
    assert not missing, f"undocumented recipe keys: {missing}"
