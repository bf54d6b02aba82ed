"""Read the tensors of a TorchScript archive without compiling or running any of its code.

Some releases (NVIDIA's Cosmos tokenizers, for one) ship only ``torch.jit.save`` archives.
``torch.jit.load`` would compile the TorchScript source the archive carries and rebuild
its modules, i.e. trust the file's code; vistok only needs the weights, so it reads them
the way :mod:`vistok.utils.checkpoints` reads pickles, and no ``trust_code`` switch is
needed:

* the archive is a zip whose one top folder ``ARCHIVE/`` holds ``data.pkl`` (the module
  tree, pickled), ``data/N`` (the raw bytes of each storage), ``constants.pkl`` (tensors the
  code refers to), ``code/`` (the TorchScript source of every class) and ``byteorder``;
* ``data.pkl`` goes through the safe unpickler of :mod:`vistok.utils.checkpoints`: tensors
  and plain containers are rebuilt, every ``__torch__.*`` class becomes an inert
  :class:`~vistok.utils.checkpoints.Opaque` record whose ``__setstate__`` keeps the attribute
  dict, and a ``persistent_load`` rebuilds each storage from its ``data/N`` entry (checked
  against the byte count the pickle declares);
* which attributes of a module are parameters and which are buffers is declared in its
  class's source as ``__parameters__ = [...]`` / ``__buffers__ = [...]``; those two lists are
  read from ``code/`` with :func:`ast.parse` and :func:`ast.literal_eval` (syntax only:
  nothing is compiled, imported or evaluated beyond literals);
* :func:`read_torchscript` walks the tree and returns ``{dotted.name: tensor}`` in the order
  and with the names of ``torch.jit.load(path).state_dict()`` (own parameters, own buffers,
  then the submodules). TorchScript does not record whether a buffer was persistent in
  Python, so, like ``torch.jit.load(...).state_dict()``, the result holds every buffer
  (e.g. the fixed wavelet filters a module registered with ``persistent=False``); a
  family's key map drops what its module recomputes.

Every failure is a one-line :class:`~vistok.utils.checkpoints.CheckpointError` naming the
file and the reason.
"""

from __future__ import annotations

import ast
import io
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from vistok.utils.checkpoints import CheckpointError, Opaque, _allowed_globals, _SafeUnpickler

__all__ = ["TorchScriptArchive", "read_torchscript", "read_torchscript_archive"]


def _restore_type_tag(value: Any, _type: Any = None) -> Any:
    return value


def _as_list(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


# ``torch.jit._pickle`` helpers a TorchScript pickle may name: pure container rebuilders,
# replaced by these equivalents rather than imported.
_JIT_PICKLE = {
    "torch.jit._pickle.restore_type_tag": _restore_type_tag,
    "torch.jit._pickle.build_intlist": _as_list,
    "torch.jit._pickle.build_doublelist": _as_list,
    "torch.jit._pickle.build_boollist": _as_list,
    "torch.jit._pickle.build_tensorlist": _as_list,
}


class TorchScriptArchive:
    """What :func:`read_torchscript_archive` found in an archive.

    Attributes:
        path: the file read.
        prefix: the archive's top folder (``"encoder"``, ``"archive"``, ...).
        root: the top module, an :class:`Opaque` whose ``state`` is its attribute dict.
        constants: the tensors of ``constants.pkl`` (a tuple; empty when absent).
        classes: ``qualname -> (parameters, buffers)`` as declared in ``code/``.
    """

    def __init__(
        self,
        path: Path,
        prefix: str,
        root: Any,
        constants: tuple[Any, ...],
        classes: dict[str, tuple[list[str], list[str]]],
    ) -> None:
        self.path = path
        self.prefix = prefix
        self.root = root
        self.constants = constants
        self.classes = classes

    def state_dict(self) -> dict[str, Tensor]:
        """``{dotted.name: tensor}``: parameters and buffers, as ``ScriptModule.state_dict()`` names them."""
        out: dict[str, Tensor] = {}
        self._walk(self.root, "", out)
        return out

    def _walk(self, module: Any, prefix: str, out: dict[str, Tensor]) -> None:
        state = getattr(module, "state", None)
        if not isinstance(state, dict):
            raise CheckpointError(
                f"{self.path}: module {prefix.rstrip('.') or '<root>'} has no attribute dict"
            )
        qualname = type(module).qualname
        declared = self.classes.get(qualname)
        if declared is None:
            raise CheckpointError(
                f"{self.path}: no declaration of class {qualname} under {self.prefix}/code/"
            )
        params, buffers = declared
        for name in [*params, *buffers]:
            value = state.get(name)
            if isinstance(value, Tensor):  # an absent optional parameter (bias=None) is skipped
                out[prefix + name] = value
        for name, value in state.items():
            if _is_module(value):
                self._walk(value, f"{prefix}{name}.", out)


def _is_module(value: Any) -> bool:
    return (
        isinstance(value, Opaque)
        and isinstance(getattr(value, "state", None), dict)
        and "training" in value.state
    )


def _declared_members(source: str, class_name: str) -> tuple[list[str], list[str]] | None:
    """``(__parameters__, __buffers__)`` of ``class_name`` in TorchScript ``source`` (parsed, not run)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            found: dict[str, list[str]] = {"__parameters__": [], "__buffers__": []}
            for stmt in node.body:
                if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                    target = stmt.targets[0]
                    if isinstance(target, ast.Name) and target.id in found:
                        value = ast.literal_eval(stmt.value)
                        found[target.id] = [str(v) for v in value]
            return found["__parameters__"], found["__buffers__"]
    return None


def _top_prefix(path: Path, names: list[str]) -> str:
    tops = sorted({n.split("/", 1)[0] for n in names if n.count("/") == 1 and n.endswith("/data.pkl")})
    if len(tops) != 1:
        if any(n.endswith("attributes.pkl") for n in names) or "model.json" in {
            n.split("/")[-1] for n in names
        }:
            raise CheckpointError(
                f"{path}: a TorchScript archive of the pre-1.4 format; re-save it with a current torch"
            )
        raise CheckpointError(f"{path}: not a TorchScript archive (no ARCHIVE/data.pkl entry)")
    return tops[0]


def _unpickler(
    z: zipfile.ZipFile, path: Path, prefix: str, folder: str, storages: dict[str, Any], skipped: set[str]
) -> type[pickle.Unpickler]:
    allowed = {**_allowed_globals(), **_JIT_PICKLE}

    class Unpickler(_SafeUnpickler):
        def persistent_load(self, pid: Any) -> Any:
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
                raise CheckpointError(f"{path}: unexpected persistent id {pid!r:.80} in {folder}.pkl")
            _, storage_type, key, _location, numel = pid
            key = str(key)
            if key in storages:
                return storages[key]
            if storage_type is torch.UntypedStorage:
                dtype = torch.uint8
            else:
                dtype = getattr(storage_type, "dtype", None)
                if not isinstance(dtype, torch.dtype):
                    raise CheckpointError(
                        f"{path}: storage {folder}/{key} has an unknown type {storage_type!r}"
                    )
            entry = f"{prefix}/{folder}/{key}"
            try:
                raw = z.read(entry)
            except KeyError:
                raise CheckpointError(
                    f"{path}: missing entry {entry} (truncated or edited archive?)"
                ) from None
            itemsize = torch.empty((), dtype=dtype).element_size()
            if len(raw) != int(numel) * itemsize:
                raise CheckpointError(
                    f"{path}: entry {entry} holds {len(raw)} bytes, the pickle declares {numel} x {itemsize}"
                )
            untyped = (
                torch.UntypedStorage.from_buffer(raw, dtype=torch.uint8) if raw else torch.UntypedStorage(0)
            )
            storage = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
            storages[key] = storage
            return storage

    Unpickler.allowed = allowed
    Unpickler.skipped = skipped
    return Unpickler


def _load_pickle(z: zipfile.ZipFile, path: Path, prefix: str, folder: str, skipped: set[str]) -> Any:
    data = z.read(f"{prefix}/{folder}.pkl")
    unpickler = _unpickler(z, path, prefix, folder, {}, skipped)
    return unpickler(io.BytesIO(data)).load()


def read_torchscript_archive(path: str | Path) -> TorchScriptArchive:
    """Open a ``torch.jit.save`` archive as data: its module tree, constants and class declarations.

    Raises:
        CheckpointError: a missing file, not a TorchScript zip, a big-endian archive, a
            truncated or inconsistent archive; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    if not zipfile.is_zipfile(path):
        raise CheckpointError(f"{path}: not a TorchScript archive (not a zip file)")
    try:
        with zipfile.ZipFile(path) as z:
            names = z.namelist()
            prefix = _top_prefix(path, names)
            if f"{prefix}/byteorder" in names and z.read(f"{prefix}/byteorder").strip() not in (
                b"little",
                b"",
            ):
                raise CheckpointError(
                    f"{path}: a big-endian TorchScript archive; vistok reads little-endian ones"
                )
            skipped: set[str] = set()
            root = _load_pickle(z, path, prefix, "data", skipped)
            constants: tuple[Any, ...] = ()
            if f"{prefix}/constants.pkl" in names:
                loaded = _load_pickle(z, path, prefix, "constants", skipped)
                constants = tuple(loaded) if isinstance(loaded, (tuple, list)) else (loaded,)
            classes = _read_declarations(z, path, prefix, skipped)
    except CheckpointError:
        raise
    except (
        zipfile.BadZipFile,
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        SyntaxError,
        KeyError,
        OSError,
    ) as e:
        raise CheckpointError(f"{path}: unreadable TorchScript archive ({type(e).__name__}: {e})") from None
    if not _is_module(root):
        raise CheckpointError(f"{path}: data.pkl does not hold a module tree")
    return TorchScriptArchive(path, prefix, root, constants, classes)


def _read_declarations(
    z: zipfile.ZipFile, path: Path, prefix: str, qualnames: set[str]
) -> dict[str, tuple[list[str], list[str]]]:
    """``qualname -> (parameters, buffers)`` for every ``__torch__`` class the pickle named."""
    out: dict[str, tuple[list[str], list[str]]] = {}
    sources: dict[str, str | None] = {}
    for qualname in sorted(q for q in qualnames if q.startswith("__torch__")):
        module, _, cls = qualname.rpartition(".")
        entry = f"{prefix}/code/{module.replace('.', '/')}.py"
        if entry not in sources:
            try:
                sources[entry] = z.read(entry).decode("utf-8")
            except KeyError:
                sources[entry] = None
        source = sources[entry]
        if source is None:
            continue  # reported by the walk if a module of this class holds tensors
        declared = _declared_members(source, cls)
        if declared is not None:
            out[qualname] = declared
    return out


def read_torchscript(path: str | Path) -> dict[str, Tensor]:
    """The parameters and buffers of a TorchScript archive, named as ``state_dict()`` names them.

    Reads ``path`` as data (see the module docstring): no TorchScript is compiled and no
    code of the archive runs. Tensors are on the CPU, in the dtype they were saved in.

    Raises:
        CheckpointError: naming the file and the reason.
    """
    return read_torchscript_archive(path).state_dict()
