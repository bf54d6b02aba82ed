"""Registries: build anything by name, with typed and validated overrides.

A *spec* is ``family`` or ``family:key=value,key=value``. Values are parsed to the
type annotated on the factory's keyword argument (``int``, ``float``, ``bool``,
``str``, ``list[int]``/``tuple[int, ...]`` written as ``[8,8,8]`` or ``8-8-8``,
``Literal[...]`` choices, ``X | None`` accepting ``none``). Unknown families, unknown
keys and badly typed values raise :class:`SpecError` with the list of what is valid.

A spec may end in ``@k``: *the point of this tokenizer at k tokens* (``vistok-1d@4``,
``latent1d-s-128:quantizer=fsq@32``; :func:`split_point`). The suffix is parsed here, once,
for every registry that gives a ``point`` hook (the tokenizer registry); the benchmark
labels its points with the same grammar.

Variants (``latent1d-s-128``) are entries that reuse a base factory with other defaults,
so a family keeps its named sizes as data beside the architecture.

Register a class and the registry reads its constructor: every named parameter with a
default (and its annotation) is a spec key, so a parameter is declared once, in
``__init__`` (the idea of diffusers' ``register_to_config``). A function works the same
way when building takes more than calling a constructor (loading weights, an adapter).

Example::

    TOKENIZERS = Registry("tokenizer")

    @TOKENIZERS.register("jpeg")
    class JPEG(Tokenizer):
        def __init__(self, *, quality: int = 75) -> None: ...

    TOKENIZERS.create("jpeg:quality=30")
"""

from __future__ import annotations

import difflib
import inspect
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

T = TypeVar("T")

__all__ = ["Entry", "Param", "Registry", "SpecError", "format_spec", "parse_spec", "split_point"]


class SpecError(ValueError):
    """A name or override that does not match any registry entry or parameter."""


@dataclass(frozen=True)
class Param:
    """One keyword parameter of a registry entry."""

    name: str
    annotation: Any
    default: Any

    @property
    def type_name(self) -> str:
        return _type_name(self.annotation)


@dataclass
class Entry(Generic[T]):
    """A registered factory with its parameters and preset defaults."""

    name: str
    factory: Callable[..., T]
    params: dict[str, Param]
    presets: dict[str, Any] = field(default_factory=dict)
    doc: str = ""
    base: str | None = None
    positional: str | None = None  # parameter a leading bare value sets (``diffusers:org/name``)
    available: Callable[[], str | None] | None = None  # returns a reason when unavailable

    def defaults(self) -> dict[str, Any]:
        out = {k: p.default for k, p in self.params.items()}
        out.update(self.presets)
        return out


def _split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets: ``a=[1,2],b=3`` -> ``["a=[1,2]", "b=3"]``."""
    parts, depth, cur = [], 0, []
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def _enclosed(text: str) -> bool:
    """Whether one bracket pair encloses all of ``text`` (``[a,b]`` yes; ``[a]-[b]`` no)."""
    if not (text.startswith("[") and text.endswith("]")):
        return False
    depth = 0
    for i, ch in enumerate(text):
        depth += ch == "["
        depth -= ch == "]"
        if depth == 0 and i < len(text) - 1:
            return False
    return True


_POINT = re.compile(r"^(?P<base>.*\S)@(?P<k>[0-9]+)$")


def split_point(spec: str) -> tuple[str, int | None]:
    """``NAME@k`` -> ``(NAME, k)``; a spec without the suffix -> ``(spec, None)``.

    ``NAME`` is anything ``vistok.create`` accepts (a registry spec, a shipped name, a
    checkpoint folder, ``diffusers:...``); ``k`` is the number of tokens to keep.

    Raises:
        SpecError: on ``NAME@`` with something other than a positive integer.
    """
    text = spec.strip()
    m = _POINT.match(text)
    if m:
        k = int(m.group("k"))
        if k < 1:
            raise SpecError(f"in {spec!r}: the token count after '@' must be >= 1")
        return m.group("base"), k
    tail = text.rpartition("@")[2]
    if "@" in text and tail and "/" not in tail and "=" not in tail and "]" not in tail:
        raise SpecError(f"in {spec!r}: expected NAME@k with k a number of tokens, got {tail!r} after '@'")
    return text, None


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """Split ``family:key=value,...`` into the family and raw string overrides.

    Raises:
        SpecError: on an empty family, a part without ``=``, or a repeated key.
    """
    family, _, rest = spec.strip().partition(":")
    family = family.strip()
    if not family:
        raise SpecError(f"empty name in {spec!r}; expected 'family' or 'family:key=value,...'")
    raw: dict[str, str] = {}
    for i, part in enumerate(_split_top_level(rest)):
        key, eq, value = part.partition("=")
        key = key.strip()
        if i == 0 and (not eq or "/" in key):  # a leading bare value: the entry's positional parameter
            raw[""] = part.strip()
            continue
        if not eq or not key:
            raise SpecError(f"in {spec!r}: {part!r} is not of the form key=value")
        if key in raw:
            raise SpecError(f"in {spec!r}: key {key!r} given twice")
        raw[key] = value.strip()
    return family, raw


def _format_value(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if value is None:
        return "none"
    if isinstance(value, str) and any(c in value for c in ",=[]"):
        return f"[{value}]"  # nested specs: brackets keep the outer spec splittable
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_spec(family: str, overrides: dict[str, Any]) -> str:
    """The inverse of :func:`parse_spec` for already-typed values."""
    if not overrides:
        return family
    body = ",".join(f"{k}={_format_value(v)}" for k, v in sorted(overrides.items()))
    return f"{family}:{body}"


def _type_name(ann: Any) -> str:
    origin = typing.get_origin(ann)
    if ann is inspect.Parameter.empty:
        return "any"
    if origin is Literal:
        return "one of " + "|".join(str(a) for a in typing.get_args(ann))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) if a is not type(None) else "none" for a in typing.get_args(ann))
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        inner = _type_name(args[0]) if args else "any"
        return f"list of {inner}"
    return getattr(ann, "__name__", str(ann))


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def coerce(value: Any, ann: Any, *, where: str) -> Any:
    """Convert ``value`` (a string from a spec, or a Python value) to annotation ``ann``.

    Raises:
        SpecError: naming ``where`` and the expected type when it does not fit.
    """
    if ann is inspect.Parameter.empty or ann is Any:
        return value
    origin = typing.get_origin(ann)
    bad = SpecError(f"{where}: {value!r} is not a valid {_type_name(ann)}")
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(ann)
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.lower() in {"none", "null"})
        ):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, where=where)
            except SpecError:
                continue
        raise bad
    if origin is Literal:
        choices = typing.get_args(ann)
        for c in choices:
            if value == c or (isinstance(value, str) and str(c) == value):
                return c
        raise bad
    if origin in (list, tuple, Sequence):
        args = [a for a in typing.get_args(ann) if a is not Ellipsis]
        inner = args[0] if args else Any
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):
                items = _split_top_level(text[1:-1])
            else:
                items = [t for t in text.replace("x", "-").split("-") if t] if text else []
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise bad
        out = [coerce(v, inner, where=where) for v in items]
        return out if origin is list else tuple(out)  # Sequence: immutable, like its defaults
    if ann is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise bad
    if ann is int:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value.replace("_", ""))
            except ValueError:
                raise bad from None
        raise bad
    if ann is float:
        if isinstance(value, bool):
            raise bad
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad from None
        raise bad
    if ann is str:
        if isinstance(value, str):
            v = value.strip()
            if _enclosed(v):
                return v[1:-1]  # a bracketed (nested) value: the brackets only protect its commas
            return value
        raise bad
    return value


def _params_of(fn: Callable[..., Any], *, skip: tuple[str, ...] = ()) -> dict[str, Param]:
    """The spec keys of a factory function, or of a class's constructor (``self`` aside).

    Every named parameter is a key and must have a default; ``*args``/``**kwargs`` and the
    registry's context parameters (``skip``) are not.
    """
    sig = inspect.signature(fn)  # for a class: its __init__ without self
    try:
        hints = typing.get_type_hints(fn.__init__ if inspect.isclass(fn) else fn)
    except Exception:  # pragma: no cover - unresolvable forward refs
        hints = {}
    params = {}
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in skip:
            continue
        if p.default is inspect.Parameter.empty:
            raise TypeError(f"registry factory {fn.__qualname__}: parameter {p.name!r} needs a default")
        params[p.name] = Param(p.name, hints.get(p.name, p.annotation), p.default)
    return params


class Registry(Generic[T]):
    """Name -> factory table with typed overrides and helpful errors."""

    def __init__(
        self, what: str, *, point: Callable[[T, int], T] | None = None, context: tuple[str, ...] = ()
    ):
        """``point(obj, k)`` makes ``NAME@k`` mean "obj at k tokens"; without it ``@k`` is an error.

        ``context`` names constructor arguments that every entry takes and that are not part
        of a spec (a prior's ``space``): :meth:`create` passes them through untyped.
        """
        self.what = what
        self._point = point
        self.context = context
        self._entries: dict[str, Entry[T]] = {}

    def register(
        self,
        name: str,
        *,
        doc: str | None = None,
        available: Callable[[], str | None] | None = None,
        positional: str | None = None,
    ) -> Callable[[Callable[..., T]], Callable[..., T]]:
        """Decorator: register a class (its constructor's parameters) or a factory function.

        Every named parameter needs a default; its annotation types the spec value.

        ``positional`` names the parameter that a leading bare value sets, so that
        ``family:VALUE,key=value`` means ``family:POSITIONAL=VALUE,key=value``.
        """

        def deco(fn: Callable[..., T]) -> Callable[..., T]:
            params = _params_of(fn, skip=self.context)
            if positional is not None and positional not in params:
                raise TypeError(f"registry factory {fn.__qualname__}: no parameter {positional!r}")
            self._add(
                Entry(
                    name=name,
                    factory=fn,
                    params=params,
                    doc=(doc or inspect.getdoc(fn) or "").split("\n")[0],
                    available=available,
                    positional=positional,
                )
            )
            if inspect.isclass(fn) and "registered_as" not in fn.__dict__:
                fn.registered_as = name  # type: ignore[attr-defined]  # what a directly built one saves as
            return fn

        return deco

    def register_variant(self, name: str, base: str, *, doc: str = "", **presets: Any) -> None:
        """Register ``name`` as ``base`` with other default values (validated now)."""
        entry = self.get(base)
        checked = self._typed(entry, presets, spec=name)
        self._add(
            Entry(
                name=name,
                factory=entry.factory,
                params=entry.params,
                presets={**entry.presets, **checked},
                doc=doc or entry.doc,
                base=entry.base or entry.name,
                positional=entry.positional,
                available=entry.available,
            )
        )

    def _add(self, entry: Entry[T]) -> None:
        if entry.name in self._entries:
            raise ValueError(f"{self.what} {entry.name!r} is already registered")
        self._entries[entry.name] = entry

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[Entry[T]]:
        return [self._entries[n] for n in self.names()]

    def get(self, name: str) -> Entry[T]:
        """The entry called ``name``; an unknown name lists close matches and all names."""
        try:
            return self._entries[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names(), n=3)
            hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
            raise SpecError(
                f"unknown {self.what} {name!r}.{hint} Valid {self.what}s: {', '.join(self.names())}"
            ) from None

    def _typed(self, entry: Entry[T], overrides: dict[str, Any], *, spec: str) -> dict[str, Any]:
        out = {}
        for key, value in overrides.items():
            if key not in entry.params:
                close = difflib.get_close_matches(key, list(entry.params), n=2)
                hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
                valid = ", ".join(f"{p.name} ({p.type_name})" for p in entry.params.values())
                raise SpecError(
                    f"{spec!r}: {self.what} {entry.name!r} has no parameter {key!r}.{hint} "
                    f"Valid parameters: {valid or '(none)'}"
                )
            out[key] = coerce(value, entry.params[key].annotation, where=f"{spec!r}: parameter {key!r}")
        return out

    def resolve(self, spec: str, **overrides: Any) -> tuple[Entry[T], dict[str, Any]]:
        """Parse ``spec`` and return the entry with its full, typed keyword arguments."""
        family, raw = parse_spec(spec)
        entry = self.get(family)
        if "" in raw:
            value = raw.pop("")
            if entry.positional is None:
                raise SpecError(f"in {spec!r}: {value!r} is not of the form key=value")
            if entry.positional in raw:
                raise SpecError(f"in {spec!r}: {entry.positional!r} given twice")
            raw = {entry.positional: value, **raw}
        kwargs = entry.defaults()
        kwargs.update(self._typed(entry, raw, spec=spec))
        kwargs.update(self._typed(entry, overrides, spec=spec))
        return entry, kwargs

    def create(self, spec: str, **overrides: Any) -> T:
        """Build the object named by ``spec``; keyword ``overrides`` win over the spec.

        ``spec@k`` builds ``spec`` and applies the registry's ``point`` hook with ``k``.
        Context arguments (see ``__init__``) go to the factory as they are.

        The object gets its names stamped: ``registry_name`` (the entry), ``family`` (a
        variant's base) and ``spec`` (the entry and the arguments that differ from its
        defaults). A class captures its own ``config`` at construction
        (:mod:`vistok.configurable`); a function factory's arguments are stamped as ``config``.
        """
        base, k = split_point(spec)
        if k is not None:
            return self.at_point(self.create(base, **overrides), k, spec=spec)
        context = {c: overrides.pop(c) for c in self.context if c in overrides}
        entry, kwargs = self.resolve(spec, **overrides)
        if entry.available is not None:
            reason = entry.available()
            if reason:
                raise SpecError(f"{self.what} {entry.name!r} is not available here: {reason}")
        try:
            obj = entry.factory(**context, **kwargs)
        except (ValueError, TypeError) as e:
            raise SpecError(f"{spec!r}: {e}") from e
        defaults = entry.defaults()
        changed = {k: v for k, v in kwargs.items() if defaults.get(k) != v}
        try:
            obj.spec = format_spec(entry.name, changed)  # type: ignore[attr-defined]
            obj.family = entry.base or entry.name  # type: ignore[attr-defined]
            obj.registry_name = entry.name  # type: ignore[attr-defined]
            if not (inspect.isclass(entry.factory) and hasattr(obj, "init_config")):
                obj.config = kwargs  # type: ignore[attr-defined]
        except AttributeError:  # pragma: no cover - objects that refuse attributes
            pass
        return obj

    def at_point(self, obj: T, k: int, *, spec: str) -> T:
        """``obj`` at ``k`` tokens (the ``@k`` of a spec) through the registry's ``point`` hook."""
        if self._point is None:
            raise SpecError(f"in {spec!r}: a {self.what} spec takes no '@k' (token count)")
        try:
            return self._point(obj, k)
        except (ValueError, TypeError) as e:
            raise SpecError(f"{spec!r}: {e}") from None


# The project's registries. Modules register into them on import; ``vistok.create``
# imports the built-in modules first (see ``vistok.hub``).
TOKENIZERS: Registry[Any] = Registry("tokenizer", point=lambda tok, k: tok.at_num_tokens(k))
QUANTIZERS: Registry[Any] = Registry("quantizer")
LOSSES: Registry[Any] = Registry("loss")
METRICS: Registry[Any] = Registry("metric")
