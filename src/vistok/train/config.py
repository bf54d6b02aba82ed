"""Training recipes: flat, typed dataclass sections, loaded from YAML, overridden with dotted keys.

A recipe is a YAML file with up to seven sections (``model``, ``data``, ``loss``, ``optim``,
``schedule``, ``log``, ``run``); every key is a field of one of the dataclasses below, with
its type and default. ``--set optim.lr=3e-4`` (or :func:`apply_overrides`) changes one
value; unknown sections or keys and values of the wrong type raise :class:`ConfigError`
naming the key, its type and close matches. The resolved config is written beside every
checkpoint (``config.yaml``), so a run can always be reproduced from its outputs.

Example::

    cfg = load_config("configs/tiny.yaml", ["optim.lr=1e-3", "schedule.steps=20"])
    cfg.optim.lr  # 0.001
"""

from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vistok.registry import SpecError, coerce

__all__ = [
    "ConfigError",
    "DataConfig",
    "LogConfig",
    "LossConfig",
    "ModelConfig",
    "OptimConfig",
    "RunConfig",
    "ScheduleConfig",
    "TrainConfig",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "dump_config",
    "load_config",
]


class ConfigError(ValueError):
    """A recipe key or value that does not fit the schema (message names the key)."""


@dataclass
class ModelConfig:
    """What to train."""

    spec: str = "conv2d-tiny"  # tokenizer spec, e.g. "conv2d-f8:quantizer=fsq:levels=8-8-8-5-5-5"
    init_from: str | None = None  # checkpoint folder or registered name to start from (fine-tuning)
    channels_last: bool = True  # conv models: channels-last memory format (faster CPU convs)
    nested: Literal["none", "uniform", "pow2"] | None = None  # latent1d prefix sampling (None: spec's)
    nested_prob: float | None = None  # latent1d: fraction of images truncated (<1: tail drop)
    nested_start: int = 0  # latent1d: train with all tokens before this step, then nested
    warm_start: int = 0  # crops passed to model.warm_start(images) before step 0 (latent1d-grid PCA path)


@dataclass
class DataConfig:
    """Where images come from and how they are cropped."""

    sources: list[str] = field(default_factory=lambda: ["samples:photos+text+faces"])
    size: int = 128  # training crop side (pixels)
    min_scale: float = 0.25  # random-resized crop: area fraction range of the (resized) image
    max_scale: float = 1.0
    ratio: float = 1.333  # aspect ratio range [1/ratio, ratio] of the crop
    hflip: bool = True
    resize_short: int | None = 256  # downscale so the short side is at most this, once on load
    preload: bool = True  # decode every image once at start (bad files skipped and counted)
    batch_size: int = 8  # per rank and micro-step
    workers: int = 0  # DataLoader worker processes
    optional_sources: list[str] = field(default_factory=list)  # used when present, skipped if missing


@dataclass
class LossConfig:
    """Loss weights (0 disables a term) and their options."""

    l1: float = 1.0
    l2: float = 0.0
    perceptual: float = 0.0  # MobileNetV2 feature loss
    perceptual_layers: list[int] = field(default_factory=lambda: [1, 3, 6])
    lpips: float = 0.0
    lpips_weights: str | None = None  # path to LPIPS linear-layer weights (.pth), never downloaded
    quantizer: float = 1.0  # weight of ModelOutput.loss
    gan: float = 0.0  # generator hinge loss weight
    gan_start: int = 0  # step at which the discriminator starts
    gan_adaptive: bool = True  # VQGAN adaptive weight (ratio of grad norms at the last layer)
    disc_width: int = 64
    disc_layers: int = 3
    disc_lr: float = 1e-4
    lecam: float = 0.0  # LeCam regularization weight
    lecam_decay: float = 0.999
    semantic: float = 0.0  # cosine alignment of encoder features to MobileNetV2 features
    semantic_layer: int = 13  # MobileNetV2 features index to align to
    perturb_prob: float = 0.0  # RobustTok: fraction of token indices swapped for a neighbour
    perturb_k: int = 4  # ... among the k nearest codebook entries
    perturb_start: int = 0


@dataclass
class OptimConfig:
    """AdamW and gradient handling."""

    lr: float = 1e-3
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 1e-4
    grad_clip: float = 1.0  # max global grad norm (0: off)
    accum: int = 1  # micro-steps per optimizer step
    ema: float = 0.0  # EMA decay of the weights (0: off); exported when on
    ema_start: int = 0


@dataclass
class ScheduleConfig:
    """Length of the run and the learning-rate schedule (linear warmup, cosine decay)."""

    steps: int = 100
    warmup: int = 10
    min_lr_ratio: float = 0.1
    max_minutes: float | None = None  # stop (with a checkpoint and export) after this wall time


@dataclass
class LogConfig:
    """Outputs: logs, grids, checkpoints."""

    every: int = 10  # metrics line every N steps
    grid_every: int = 50  # reconstruction grid PNG every N steps (0: only at the end)
    grid_images: int = 4
    ckpt_every: int = 100
    keep: int = 2  # checkpoints kept
    tensorboard: bool = True  # when installed
    progress: bool = True


@dataclass
class RunConfig:
    """Device, precision, seed."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    threads: int | None = None  # torch.set_num_threads (None: torch's default)
    find_unused: bool = False  # DDP find_unused_parameters


@dataclass
class TrainConfig:
    """A whole recipe."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    log: LogConfig = field(default_factory=LogConfig)
    run: RunConfig = field(default_factory=RunConfig)


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def _field_types(section: type) -> dict[str, Any]:
    hints = typing.get_type_hints(section)
    return {f.name: hints[f.name] for f in dataclasses.fields(section)}


def _unknown(kind: str, name: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(name, valid, n=3)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ConfigError(f"unknown {kind} {name!r}.{hint} Valid: {', '.join(valid)}")


def _set(cfg: TrainConfig, key: str, value: Any) -> None:
    section_name, dot, name = key.partition(".")
    sections = _sections()
    if not dot:
        raise ConfigError(f"config key {key!r} must be 'section.key' (sections: {', '.join(sections)})")
    if section_name not in sections:
        raise _unknown("config section", section_name, list(sections))
    types = _field_types(sections[section_name])
    if name not in types:
        raise _unknown("config key", key, [f"{section_name}.{k}" for k in types])
    if isinstance(value, str) and typing.get_origin(types[name]) is list and "," in value:
        value = value if value.strip().startswith("[") else f"[{value}]"
    try:
        typed = coerce(value, types[name], where=f"config key {key!r}")
    except SpecError as e:
        raise ConfigError(str(e)) from None
    setattr(getattr(cfg, section_name), name, typed)


def config_from_dict(data: dict[str, Any] | None) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested ``{section: {key: value}}`` (validated)."""
    cfg = TrainConfig()
    for section, values in (data or {}).items():
        if section not in _sections():
            raise _unknown("config section", str(section), list(_sections()))
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be a mapping, got {type(values).__name__}")
        for k, v in values.items():
            _set(cfg, f"{section}.{k}", v)
    return cfg


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``section.key=value`` strings in order (values parsed by the field's type)."""
    for item in overrides:
        key, eq, value = item.partition("=")
        if not eq:
            raise ConfigError(f"override {item!r} is not of the form section.key=value")
        _set(cfg, key.strip(), value.strip())
    return cfg


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML recipe (``None``: all defaults) and apply dotted ``overrides``."""
    import yaml

    data: dict[str, Any] | None = None
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"{p}: no such recipe file")
        try:
            data = yaml.safe_load(p.read_text())
        except yaml.YAMLError as e:
            raise ConfigError(f"{p}: not valid YAML ({e})") from None
        if data is not None and not isinstance(data, dict):
            raise ConfigError(f"{p}: a recipe is a mapping of sections, got {type(data).__name__}")
    try:
        cfg = config_from_dict(data)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    return apply_overrides(cfg, overrides or [])


def config_to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Nested plain dict (YAML/JSON-serializable) of ``cfg``."""
    return dataclasses.asdict(cfg)


def dump_config(cfg: TrainConfig) -> str:
    """The resolved recipe as YAML text (loads back with :func:`load_config`)."""
    import yaml

    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False)
