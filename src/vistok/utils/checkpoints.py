"""Read checkpoint files as released by other projects, without running any of their code.

Published tokenizers come as ``torch.save`` pickles (a bare state dict, or a dict holding it
under ``"model"``), PyTorch Lightning ``.ckpt`` files (``"state_dict"`` plus hyper-parameters,
callbacks and optimizer states), safetensors files, Hugging Face ``PyTorchModelHubMixin``
folders (``config.json`` + ``model.safetensors``) and TorchScript archives.

Safety policy (docs/zoo.md):

* safetensors are read as they are;
* pickles go through :func:`read_pickle`, an unpickler that rebuilds tensors, storages and
  plain containers (the globals ``torch.load(weights_only=True)`` allows) and turns every
  other global the file names (``argparse.Namespace``, OmegaConf configs, Lightning
  callbacks, ...) into an inert :class:`Opaque` record: nothing is imported and no code of
  the checkpoint runs. The names it stood for are reported, so a caller can say what it
  skipped;
* TorchScript archives are read the same way (:mod:`vistok.utils.torchscript`), without
  compiling or running their code.

Every failure is a :class:`CheckpointError` whose message names the file and the reason.
"""

from __future__ import annotations

import io
import json
import pickle
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

__all__ = [
    "CheckpointError",
    "Opaque",
    "read_pickle",
    "read_safetensors",
    "read_state_dict",
    "state_dict_from",
]


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and the reason."""


class Opaque:
    """Stand-in for an object of a class the checkpoint names but vistok does not import.

    It records what the pickle said about it (constructor arguments, state, items) and does
    nothing else; ``qualname`` is the global it replaced (``"argparse.Namespace"``).
    """

    qualname = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.args = args
        self.kwargs = kwargs
        self.state: Any = None
        self.items: dict[Any, Any] = {}
        self.list: list[Any] = []

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list.append(value)

    def extend(self, values: Iterable[Any]) -> None:
        self.list.extend(values)

    def __repr__(self) -> str:
        return f"<opaque {self.qualname}>"


def _allowed_globals() -> dict[str, Any]:
    """``"module.name" -> object`` for what ``torch.load(weights_only=True)`` rebuilds."""
    try:
        from torch import _weights_only_unpickler as wou

        allowed = dict(wou._get_allowed_globals())
        allowed.update(wou._get_user_allowed_globals())
        return allowed
    except (ImportError, AttributeError):  # pragma: no cover - a torch without the helper
        import collections

        return {
            "collections.OrderedDict": collections.OrderedDict,
            "torch._utils._rebuild_tensor_v2": torch._utils._rebuild_tensor_v2,
            "torch._utils._rebuild_parameter": torch._utils._rebuild_parameter,
        }


class _SafeUnpickler(pickle.Unpickler):
    """Rebuilds tensors and containers; any other global becomes an :class:`Opaque` subclass."""

    allowed: ClassVar[dict[str, Any]] = {}
    skipped: ClassVar[set[str]] = set()

    def find_class(self, module: str, name: str) -> Any:
        key = f"{module}.{name}"
        obj = type(self).allowed.get(key)
        if obj is not None:
            return obj
        if module == "torch" and name.endswith("Storage"):
            return getattr(torch, name)  # legacy typed storages (FloatStorage, ...)
        type(self).skipped.add(key)
        return type(name, (Opaque,), {"qualname": key})


def _pickle_module(skipped: set[str]) -> types.ModuleType:
    """A module object ``torch.load(pickle_module=...)`` accepts, built on :class:`_SafeUnpickler`."""
    unpickler = type("Unpickler", (_SafeUnpickler,), {"allowed": _allowed_globals(), "skipped": skipped})
    mod = types.ModuleType("vistok_safe_pickle")
    mod.Unpickler = unpickler  # type: ignore[attr-defined]
    mod.load = lambda f, **kw: unpickler(f, **kw).load()  # type: ignore[attr-defined]
    mod.loads = lambda b, **kw: unpickler(io.BytesIO(b), **kw).load()  # type: ignore[attr-defined]
    mod.__dict__["UnpicklingError"] = pickle.UnpicklingError
    return mod


def read_pickle(path: str | Path) -> tuple[Any, set[str]]:
    """Read a ``torch.save`` file (zip or legacy format) without running code from it.

    Returns:
        ``(obj, skipped)``: the unpickled object, with tensors on the CPU and every
        non-allowed object an :class:`Opaque`; ``skipped`` the globals that were replaced.

    Raises:
        CheckpointError: a missing or unreadable file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    skipped: set[str] = set()
    try:
        obj = torch.load(
            str(path), map_location="cpu", pickle_module=_pickle_module(skipped), weights_only=False
        )
    except Exception as e:  # torch raises many types for bad files
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    return obj, skipped


def read_safetensors(path: str | Path) -> dict[str, Tensor]:
    """All tensors of a safetensors file. Raises :class:`CheckpointError` naming the file."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable safetensors file ({e})") from None


def _tensor_dict(obj: Any) -> bool:
    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def state_dict_from(obj: Any, *, path: str | Path, keys: Iterable[str] = ()) -> dict[str, Tensor]:
    """The state dict inside an unpickled checkpoint.

    ``keys`` are tried in order (``"model"`` for LlamaGen/MAR, ``"state_dict"`` for
    Lightning); a bare ``{name: tensor}`` dict is returned as it is. Non-tensor entries of
    the chosen dict (Lightning keeps none, but some trainers keep counters) raise.

    Raises:
        CheckpointError: naming ``path``, the keys it holds and the keys that were looked for.
    """
    keys = list(keys)
    if _tensor_dict(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for k in keys:
            if k in obj:
                inner = obj[k]
                if not isinstance(inner, Mapping):
                    raise CheckpointError(f"{path}: {k!r} holds a {type(inner).__name__}, not a state dict")
                bad = [n for n, v in inner.items() if not isinstance(v, Tensor)]
                if bad:
                    raise CheckpointError(f"{path}: {k!r} holds non-tensor entries {bad[:5]}")
                return dict(inner)
        found = ", ".join(repr(k) for k in list(obj)[:12])
        want = " or ".join(repr(k) for k in keys) or "a {name: tensor} dict"
        raise CheckpointError(f"{path}: no state dict under {want}; the file holds keys {found}")
    raise CheckpointError(f"{path}: holds a {type(obj).__name__}, not a state dict")


def is_torchscript(path: Path) -> bool:
    """Whether ``path`` is a TorchScript archive (a zip with ``code/`` and ``constants.pkl``)."""
    import zipfile

    if not path.is_file() or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def read_state_dict(path: str | Path, *, keys: Iterable[str] = ("state_dict", "model")) -> dict[str, Tensor]:
    """The tensors of any supported checkpoint file or folder, by what it is.

    * a folder: ``model.safetensors`` (a ``PyTorchModelHubMixin`` or diffusers folder), else
      ``pytorch_model.bin``;
    * ``*.safetensors``: the file;
    * a TorchScript archive: refused here (its layout is a module tree; see
      :func:`vistok.utils.torchscript.read_torchscript`);
    * anything else: a torch pickle read by :func:`read_pickle`, then :func:`state_dict_from`
      with ``keys``.

    Raises:
        CheckpointError: naming the file and the reason.
    """
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "diffusion_pytorch_model.safetensors", "pytorch_model.bin"):
            if (path / name).is_file():
                return read_state_dict(path / name, keys=keys)
        raise CheckpointError(f"{path}: folder holds no model.safetensors or pytorch_model.bin")
    if not path.exists():
        raise CheckpointError(f"{path}: no such file or folder")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if is_torchscript(path):
        raise CheckpointError(f"{path}: a TorchScript archive; this family reads plain checkpoints")
    obj, _ = read_pickle(path)
    return state_dict_from(obj, path=path, keys=keys)


def read_json(path: str | Path) -> dict[str, Any]:
    """A JSON object from ``path``; :class:`CheckpointError` naming the file otherwise."""
    path = Path(path)
    try:
        out = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except (OSError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{path}: not a JSON file ({e})") from None
    if not isinstance(out, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(out).__name__}")
    return out
