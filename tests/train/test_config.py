from __future__ import annotations

from pathlib import Path

import pytest

from vistok.train.config import ConfigError, TrainConfig, apply_overrides, dump_config, load_config

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("recipe", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_load_and_round_trip(recipe: Path, tmp_path: Path) -> None:
    cfg = load_config(recipe)
    path = tmp_path / "resolved.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


def test_dotted_overrides_are_typed() -> None:
    cfg = apply_overrides(
        TrainConfig(),
        [
            "optim.lr=3e-4",
            "schedule.steps=7",
            "data.hflip=false",
            "optim.betas=[0.5,0.9]",
            "model.nested=pow2",
        ],
    )
    assert cfg.optim.lr == 3e-4 and cfg.schedule.steps == 7 and cfg.data.hflip is False
    assert cfg.optim.betas == [0.5, 0.9] and cfg.model.nested == "pow2"
    cfg = apply_overrides(cfg, ["data.sources=a,b", "loss.lpips_weights=none"])
    assert cfg.data.sources == ["a", "b"] and cfg.loss.lpips_weights is None


@pytest.mark.parametrize(
    ("override", "needle"),
    [
        ("optim.lrr=1", "Did you mean 'optim.lr'"),
        ("optimizer.lr=1", "unknown config section 'optimizer'"),
        ("schedule.steps=ten", "is not a valid int"),
        ("run.precision=fp8", "one of fp32|bf16|fp16"),
        ("steps=3", "must be 'section.key'"),
        ("schedule.steps", "section.key=value"),
    ],
)
def test_bad_keys_and_types_are_clear(override: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=None) as e:
        apply_overrides(TrainConfig(), [override])
    assert needle in str(e.value)


def test_unknown_key_in_yaml_names_the_file(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text("optim:\n  learning_rate: 1\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*learning_rate"):
        load_config(p)
