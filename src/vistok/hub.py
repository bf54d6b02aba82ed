"""Build tokenizers by name, save them as ``config.json`` + ``model.safetensors``, load them back.

Loading never unpickles and never runs code from the checkpoint: the config names a
registered family and its typed parameters; the weights are safetensors.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from vistok.configurable import jsonable
from vistok.registry import TOKENIZERS, SpecError, split_point
from vistok.tokenizer import Tokenizer
from vistok.utils.checkpoints import CheckpointError
from vistok.utils.io import atomic_write_bytes, atomic_write_text

__all__ = ["CheckpointError", "create", "list_tokenizers", "load", "save_pretrained"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

# Modules that register built-in tokenizers. Importing vistok stays cheap; the first
# create/list imports these.
_BUILTIN_MODULES = ["vistok.models.codecs"]
_OPTIONAL_MODULES = [
    "vistok.models.conv2d",
    "vistok.models.vit2d",
    "vistok.models.latent1d",
    "vistok.models.latent1d_grid",
    "vistok.models.pca",
    "vistok.models.pretrained",
    "vistok.models.adapters",
    "vistok.models.zoo",
]
_loaded = False

# Parameters added to a family after checkpoints of it were published: when a saved config
# lacks one, it gets the value that reproduces what those checkpoints were trained with
# (not the current default).
LEGACY_DEFAULTS: dict[str, dict[str, Any]] = {
    "conv2d": {"norm": "group"},  # vistok < 0.2: GroupNorm everywhere
}

# vistok < 0.3 called its own latent1d sizes ``titok-*``; those names now build the official
# TiTok architectures (docs/zoo.md). A saved config of the old kind (it has latent1d's
# ``nested`` parameter, which the official TiTok lacks) loads as the renamed variant.
LEGACY_NAMES: dict[str, str] = {
    f"titok-{v}": f"latent1d-{v}"
    for v in ("s", "b", "l", "s-128", "b-64", "l-32", "s-256-nested", "s-256-taildrop", "tiny")
}


def _ensure_registered() -> None:
    global _loaded
    if _loaded:
        return
    for mod in _BUILTIN_MODULES:
        importlib.import_module(mod)
    for mod in _OPTIONAL_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:  # a real missing dependency inside an existing module
                raise
    _loaded = True


def _family(name: str) -> str:
    """The root family of a registered name (a variant's base, followed to the end)."""
    if name not in TOKENIZERS:
        return name
    entry = TOKENIZERS.get(name)
    while entry.base is not None and entry.base in TOKENIZERS:
        entry = TOKENIZERS.get(entry.base)
    return entry.name


def list_tokenizers() -> list[str]:
    """Names of every registered tokenizer family and variant."""
    _ensure_registered()
    return TOKENIZERS.names()


def _on_disk(spec: str, *, folder: bool = False) -> bool:
    """Whether ``spec`` names an existing path (a folder, with ``folder``); never raises.

    A long registry spec is no file name: the OS refuses it (``ENAMETOOLONG``), which
    ``Path.exists`` / ``is_dir`` raise instead of answering False.
    """
    try:
        return Path(spec).is_dir() if folder else Path(spec).exists()
    except OSError:
        return False


def _is_path(spec: str) -> bool:
    """A checkpoint folder or hub repo rather than a registry spec (no ``family:`` before a ``/``)."""
    return ("/" in spec or _on_disk(spec)) and ":" not in spec.split("/")[0]


def create(spec: str, **overrides: Any) -> Tokenizer:
    """Build a tokenizer from any spec; ``create(tok.spec)`` rebuilds ``tok`` (weights included).

    Accepts ``family:key=value,...`` (``jpeg:quality=30``), a shipped name (``vistok-f8``),
    a checkpoint folder or hub repo (``path/to/checkpoint``), ``diffusers:org/name``, each
    optionally followed by ``@k`` for the point at ``k`` tokens (``vistok-1d@4``).

    Raises:
        SpecError: unknown names or parameters (with "did you mean"), or an invalid ``@k``.
        CheckpointError: a checkpoint folder that cannot be loaded.
    """
    _ensure_registered()
    if _on_disk(spec, folder=True):  # an existing folder wins, even if its name contains "@"
        return load(spec)
    base, k = split_point(spec)
    if k is not None:
        return TOKENIZERS.at_point(create(base, **overrides), k, spec=spec)
    if _is_path(spec):
        return load(spec)
    return TOKENIZERS.create(spec, **overrides)


def save_pretrained(tokenizer: Tokenizer, directory: str | Path) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (each atomically) into ``directory``."""
    from safetensors.torch import save

    import vistok

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in tokenizer.state_dict().items()}
    config = {
        "vistok_version": vistok.__version__,
        "name": tokenizer.registry_name,
        "config": jsonable(
            {k: v for k, v in tokenizer.config.items() if k not in tokenizer.source_keys}
        ),  # where weights came from (source_keys) is not architecture
    }
    atomic_write_bytes(directory / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2, sort_keys=True) + "\n")
    return directory


def _resolve_dir(name_or_path: str | Path, *, revision: str | None) -> Path:
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise CheckpointError(f"{path}: expected a checkpoint folder with {CONFIG_NAME} and {WEIGHTS_NAME}")
    name = str(name_or_path)
    if name.count("/") != 1 or name.startswith((".", "/")):
        raise CheckpointError(f"{name}: no such checkpoint folder")
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise CheckpointError(
            f"{name}: not a local folder, and loading from the Hugging Face Hub needs "
            "`pip install huggingface_hub`"
        ) from None
    try:
        return Path(snapshot_download(name, revision=revision, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except Exception as e:
        raise CheckpointError(
            f"{name}: could not fetch from the Hugging Face Hub ({type(e).__name__}: {e}). "
            "Offline? Download the folder elsewhere and pass its local path."
        ) from None


def load(name_or_path: str | Path, *, revision: str | None = None, strict: bool = True) -> Tokenizer:
    """Rebuild a saved tokenizer from a local folder or a hub repo ``org/name``.

    Raises:
        CheckpointError: missing files, an unknown family, or tensors that do not match.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    _ensure_registered()
    directory = _resolve_dir(name_or_path, revision=revision)
    cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    for p in (cfg_path, w_path):
        if not p.is_file():
            raise CheckpointError(
                f"{p}: missing (a vistok checkpoint holds {CONFIG_NAME} and {WEIGHTS_NAME})"
            )
    try:
        cfg = json.loads(cfg_path.read_text())
        name, params = cfg["name"], cfg["config"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise CheckpointError(f"{cfg_path}: not a vistok config ({type(e).__name__}: {e})") from None
    if name in LEGACY_NAMES and isinstance(params, dict) and "nested" in params:
        name = LEGACY_NAMES[name]
    try:
        family = _family(name)
        params = {**LEGACY_DEFAULTS.get(family, {}), **params}
        model = TOKENIZERS.create(name, **params)
    except SpecError as e:
        raise CheckpointError(f"{cfg_path}: {e}") from None
    try:
        state = load_file(str(w_path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{w_path}: unreadable safetensors file ({e})") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if strict and (missing or unexpected):
        raise CheckpointError(
            f"{w_path}: tensors do not match {name!r}: missing {missing[:8]}{'...' if len(missing) > 8 else ''}, "
            f"unexpected {unexpected[:8]}{'...' if len(unexpected) > 8 else ''}"
        )
    bad = [k for k in own if k in state and own[k].shape != state[k].shape]
    if bad:
        k = bad[0]
        raise CheckpointError(
            f"{w_path}: tensor {k!r} has shape {tuple(state[k].shape)}, model expects {tuple(own[k].shape)}"
        )
    model.load_state_dict(state, strict=strict)
    model.eval()
    model.spec = str(name_or_path)  # rebuilds it with its weights (vistok.create accepts folders)
    return model
