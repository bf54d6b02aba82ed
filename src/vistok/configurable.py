"""Configuration captured at construction (the idea of diffusers' ``register_to_config``).

Every tokenizer, quantizer, prior and reducer derives from :class:`Configurable`. Each
subclass's ``__init__`` is wrapped once, when the class is defined: when the *outermost*
constructor call returns, its keyword arguments (defaults applied) are the object's
``config``, so a model built directly, ``Conv2dTokenizer(channels=64)``, knows how to
rebuild itself exactly as one built by name, ``vistok.create("conv2d:channels=64")``.

What the object records (attributes the constructor did not set itself):

- ``init_config``: the constructor's arguments: always the architecture;
- ``config``: the same, unless a registry *function* factory (a shipped checkpoint, an
  adapter) stamps its own arguments instead;
- ``registry_name``: the name the class was registered under (:meth:`Registry.register
  <vistok.registry.Registry.register>` stamps it on the class), or the class name;
- ``family``: that name, or a variant's base when built through the variant;
- ``spec``: ``registry_name`` with the arguments that differ from the defaults.

The registry only stamps names (``registry_name``, ``family``, ``spec``) when it builds a
class; the configuration is the object's own.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any, ClassVar

__all__ = ["Configurable", "architecture_spec", "jsonable", "registered_name"]

_DEPTH = "_vistok_init_depth"
_STAMPED = ("spec", "family", "registry_name", "config")


def registered_name(cls: type) -> str:
    """The name ``cls`` itself was registered under (not a parent's), else its class name."""
    return str(cls.__dict__.get("registered_as") or cls.__name__)


def _capture(init: Callable[..., None]) -> Callable[..., None]:
    sig = inspect.signature(init)
    params = list(sig.parameters.values())[1:]  # without self
    defaults = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}

    @functools.wraps(init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        d = self.__dict__
        depth = d.get(_DEPTH, 0)
        d[_DEPTH] = depth + 1
        try:
            init(self, *args, **kwargs)
        finally:
            d[_DEPTH] = depth
        if depth:
            return  # a base class's __init__ called through super(): the outermost call records
        del d[_DEPTH]
        bound = sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        config: dict[str, Any] = {}
        for p in params:
            if p.kind is p.VAR_KEYWORD:
                config.update(bound.arguments.get(p.name, {}))
            elif p.kind is not p.VAR_POSITIONAL:
                config[p.name] = bound.arguments[p.name]
        config = self.normalize_config(
            {k: v for k, v in config.items() if k not in type(self).config_exclude}
        )
        self.init_config = config
        name = registered_name(type(self))
        changed = {k: v for k, v in config.items() if k not in defaults or defaults[k] != v}
        from vistok.registry import format_spec

        own = {
            "spec": format_spec(name, changed),
            "family": name,
            "registry_name": name,
            "config": dict(config),
        }
        for key in _STAMPED:
            if key not in d:  # the constructor's own value wins (e.g. a spec naming a folder)
                setattr(self, key, own[key])

    __init__._vistok_captures = True  # type: ignore[attr-defined]
    return __init__


class Configurable:
    """Mixin: the outermost constructor call's arguments become ``config`` (module docstring).

    Class attributes:
        registered_as: the registry name, stamped on the class by ``Registry.register``.
        config_exclude: constructor parameters that are context, not configuration (a
            prior's ``space``, saved beside its config).
    """

    registered_as: ClassVar[str | None] = None
    config_exclude: ClassVar[tuple[str, ...]] = ()
    spec: str
    family: str
    registry_name: str
    config: dict[str, Any]
    init_config: dict[str, Any]

    def normalize_config(self, config: dict[str, Any]) -> dict[str, Any]:
        """Hook: the captured arguments as they should be saved (e.g. a nested model's name
        replaced by its architecture); called once, after construction. The identity here."""
        return config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is not None and not getattr(init, "_vistok_captures", False):
            cls.__init__ = _capture(init)  # type: ignore[method-assign]


def architecture_spec(obj: Configurable, *, exclude: tuple[str, ...] = ()) -> str:
    """A spec that rebuilds ``obj``'s architecture from the registry alone (no files): its
    class's registered name and its constructor arguments, less ``exclude``."""
    from vistok.registry import format_spec

    cfg = {k: v for k, v in obj.init_config.items() if k not in exclude}
    return format_spec(registered_name(type(obj)), cfg)


def jsonable(value: Any) -> Any:
    """``value`` as JSON holds it: tuples as lists, paths as strings, recursively."""
    from pathlib import PurePath

    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, PurePath):
        return str(value)
    return value
