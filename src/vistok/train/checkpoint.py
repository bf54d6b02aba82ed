"""Training checkpoints: safetensors for every tensor, JSON for everything else.

A checkpoint is a folder ``<out>/checkpoints/step-<NNNNNNNN>/`` holding

* ``<group>.safetensors`` per tensor group (``model``, ``ema``, ``disc``, ``optim``,
  ``optim_disc``, ``aux``); optimizer state is flattened to ``state.<param>.<name>`` keys;
* ``state.json``: step, data position, optimizer param groups and non-tensor state,
  GradScaler state, and anything else JSON-serializable; written **last**, so a folder
  without it is an interrupted write and is ignored;
* ``config.yaml``: the resolved recipe.

Each file is written to a temporary name and renamed (:mod:`vistok.utils.io`); only the
newest ``keep`` complete checkpoints are kept.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vistok.utils.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "find_latest",
    "list_checkpoints",
    "load_checkpoint",
    "optimizer_state",
    "restore_optimizer",
    "save_checkpoint",
]

STATE_NAME = "state.json"


def optimizer_state(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split ``opt.state_dict()`` into flat tensors and a JSON-able rest."""
    sd = opt.state_dict()
    tensors: dict[str, Tensor] = {}
    other: dict[str, dict[str, Any]] = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, Tensor):
                tensors[f"state.{idx}.{k}"] = v.detach().cpu().contiguous()
            else:
                other.setdefault(str(idx), {})[k] = v
    groups = [{k: (list(v) if isinstance(v, tuple) else v) for k, v in g.items()} for g in sd["param_groups"]]
    return tensors, {"param_groups": groups, "state": other}


def restore_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], rest: dict[str, Any]) -> None:
    """Inverse of :func:`optimizer_state`."""
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = v
    for idx, st in rest.get("state", {}).items():
        state.setdefault(int(idx), {}).update(st)
    groups = []
    for g in rest["param_groups"]:
        g = dict(g)
        if "betas" in g:
            g["betas"] = tuple(g["betas"])
        groups.append(g)
    opt.load_state_dict({"state": state, "param_groups": groups})


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoint folders under ``root`` (those with ``state.json``), oldest first."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if (p / STATE_NAME).is_file())


def find_latest(root: Path) -> Path | None:
    """The newest complete checkpoint folder under ``root``, or ``None``."""
    ckpts = list_checkpoints(root)
    return ckpts[-1] if ckpts else None


def save_checkpoint(
    root: Path,
    step: int,
    groups: dict[str, dict[str, Tensor]],
    state: dict[str, Any],
    config_yaml: str,
    *,
    keep: int = 2,
) -> Path:
    """Write checkpoint ``step`` under ``root`` and prune all but the newest ``keep``."""
    from safetensors.torch import save

    folder = Path(root) / f"step-{step:08d}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / STATE_NAME).unlink(missing_ok=True)  # incomplete until state.json is back
    for name, tensors in groups.items():
        flat = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        atomic_write_bytes(folder / f"{name}.safetensors", save(flat, metadata={"format": "pt"}))
    atomic_write_text(folder / "config.yaml", config_yaml)
    atomic_write_text(folder / STATE_NAME, json.dumps({**state, "step": step}, indent=1) + "\n")
    for old in list_checkpoints(root)[: -max(keep, 1)]:
        shutil.rmtree(old, ignore_errors=True)
    return folder


def load_checkpoint(folder: Path) -> tuple[dict[str, dict[str, Tensor]], dict[str, Any]]:
    """Read a checkpoint folder: ``({group: tensors}, state)``."""
    from safetensors.torch import load_file

    folder = Path(folder)
    state = json.loads((folder / STATE_NAME).read_text())
    groups = {p.stem: load_file(str(p)) for p in sorted(folder.glob("*.safetensors"))}
    return groups, state
