from __future__ import annotations

import inspect
from typing import Literal

import pytest

from vistok.registry import Registry, SpecError, coerce, format_spec, parse_spec


class Obj:
    def __init__(self, **kw: object):
        self.kw = kw


def make_registry() -> Registry[Obj]:
    reg: Registry[Obj] = Registry("widget")

    @reg.register("alpha")
    def alpha(
        *,
        size: int = 3,
        rate: float = 0.5,
        on: bool = False,
        levels: list[int] = [8, 5],  # noqa: B006
        mode: Literal["a", "b"] = "a",
        name: str = "x",
        opt: int | None = None,
    ) -> Obj:
        """An alpha widget."""
        return Obj(size=size, rate=rate, on=on, levels=levels, mode=mode, name=name, opt=opt)

    reg.register_variant("alpha-big", "alpha", size=99)
    return reg


def test_parse_spec_bracket_aware() -> None:
    assert parse_spec("fsq:levels=[8,5,5],dim=4") == ("fsq", {"levels": "[8,5,5]", "dim": "4"})
    assert parse_spec(" jpeg ") == ("jpeg", {})
    assert parse_spec("diffusers:org/name,dtype=float16") == (
        "diffusers",
        {"": "org/name", "dtype": "float16"},
    )
    with pytest.raises(SpecError, match="key=value"):
        parse_spec("jpeg:quality=1,fast")
    with pytest.raises(SpecError, match="key=value"):
        make_registry().create("alpha:size")  # a bare value where the entry takes none
    with pytest.raises(SpecError, match="given twice"):
        parse_spec("jpeg:quality=1,quality=2")


def test_create_types_all_parameters() -> None:
    reg = make_registry()
    o = reg.create("alpha:size=7,rate=2,on=yes,levels=[8,8,5],mode=b,name=hello,opt=none")
    assert o.kw == {
        "size": 7,
        "rate": 2.0,
        "on": True,
        "levels": [8, 8, 5],
        "mode": "b",
        "name": "hello",
        "opt": None,
    }
    assert reg.create("alpha:levels=4-4-3").kw["levels"] == [4, 4, 3]
    assert reg.create("alpha:opt=5").kw["opt"] == 5
    assert o.spec == "alpha:levels=[8,8,5],mode=b,name=hello,on=true,rate=2.0,size=7"
    assert reg.create(o.spec).kw == o.kw  # the canonical spec rebuilds the same object


def test_variant_presets_and_overrides() -> None:
    reg = make_registry()
    assert reg.create("alpha-big").kw["size"] == 99
    assert reg.create("alpha-big:size=4").kw["size"] == 4
    o = reg.create("alpha-big")
    assert o.family == "alpha" and o.registry_name == "alpha-big"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("alpah", r"unknown widget 'alpah'\. Did you mean 'alpha'.*Valid widgets: alpha, alpha-big"),
        ("alpha:szie=3", r"has no parameter 'szie'\. Did you mean 'size'.*Valid parameters: size \(int\)"),
        ("alpha:size=3.5", r"parameter 'size': '3.5' is not a valid int"),
        ("alpha:on=maybe", r"parameter 'on': 'maybe' is not a valid bool"),
        ("alpha:mode=c", r"'c' is not a valid one of a\|b"),
        ("alpha:levels=[8,x]", r"'x' is not a valid int"),
    ],
)
def test_errors_name_what_is_valid(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        make_registry().create(spec)


def test_factory_value_errors_become_spec_errors() -> None:
    reg: Registry[Obj] = Registry("thing")

    @reg.register("t")
    def t(*, n: int = 1) -> Obj:
        if n < 1:
            raise ValueError("n must be >= 1")
        return Obj(n=n)

    with pytest.raises(SpecError, match=r"'t:n=0': n must be >= 1"):
        reg.create("t:n=0")


def test_duplicate_registration_and_missing_default() -> None:
    reg = make_registry()
    with pytest.raises(ValueError, match="already registered"):
        reg.register("alpha")(lambda: Obj())
    with pytest.raises(TypeError, match="needs a default"):
        reg.register("nodefault")(lambda x: Obj())


def test_coerce_and_format_round_trip() -> None:
    assert coerce("1_000", int, where="w") == 1000
    assert coerce(3, float, where="w") == 3.0
    with pytest.raises(SpecError):
        coerce(True, int, where="w")
    assert format_spec("f", {"levels": [8, 5], "on": False, "x": None}) == "f:levels=[8,5],on=false,x=none"


def test_positional_parameter() -> None:
    reg: Registry[Obj] = Registry("adapter")

    @reg.register("hub", positional="model")
    def hub(*, model: str = "", dtype: str = "float32") -> Obj:
        return Obj(model=model, dtype=dtype)

    assert reg.create("hub:org/name,dtype=bf16").kw == {"model": "org/name", "dtype": "bf16"}
    assert reg.create("hub:model=/local/dir").kw["model"] == "/local/dir"
    with pytest.raises(SpecError, match="given twice"):
        reg.create("hub:org/a,model=org/b")
    with pytest.raises(TypeError, match="no parameter 'nope'"):
        reg.register("bad", positional="nope")(lambda *, x=1: Obj())


def test_nested_spec_values_round_trip() -> None:
    reg: Registry[Obj] = Registry("model")

    @reg.register("m")
    def m(*, quantizer: str = "fsq", width: int = 8) -> Obj:
        return Obj(quantizer=quantizer, width=width)

    o = reg.create("m:quantizer=[vq:codebook_size=16,beta=0.25],width=4")
    assert o.kw == {"quantizer": "vq:codebook_size=16,beta=0.25", "width": 4}
    assert o.spec == "m:quantizer=[vq:codebook_size=16,beta=0.25],width=4"
    assert reg.create(o.spec).kw == o.kw
    o2 = reg.create("m", quantizer="vq:codebook_size=16,beta=0.25")  # a Python keyword, unbracketed
    assert reg.create(o2.spec).kw == o2.kw


def test_registering_a_class_reads_its_constructor() -> None:
    """A parameter is declared once, in ``__init__``; the registry types and checks it from there."""
    reg: Registry[object] = Registry("thing")

    @reg.register("box")
    class Box:
        """A box with sides."""

        def __init__(self, size: int = 3, *, sides: list[int] = [1, 2], name: str | None = None) -> None:  # noqa: B006
            self.kw = {"size": size, "sides": sides, "name": name}

    assert (
        list(reg.get("box").params) == ["size", "sides", "name"] and reg.get("box").doc == "A box with sides."
    )
    o = reg.create("box:sides=4-5,size=7")
    assert isinstance(o, Box) and o.kw == {"size": 7, "sides": [4, 5], "name": None}
    assert o.spec == "box:sides=[4,5],size=7" and reg.create(o.spec).kw == o.kw
    with pytest.raises(SpecError, match="Did you mean 'sides'"):
        reg.create("box:side=3")
    with pytest.raises(TypeError, match="needs a default"):

        @reg.register("bad")
        class Bad:
            def __init__(self, size: int) -> None: ...


def test_quantizer_specs_reach_every_constructor_parameter() -> None:
    """The drift the factories had: vq dropped eps/kmeans_max_samples, rvq lacked rotation_trick/codebook_weight."""
    import vistok.quantize  # noqa: F401  (registers)
    from vistok.registry import QUANTIZERS

    q = QUANTIZERS.create("vq:eps=1e-3,kmeans_max_samples=100", dim=8)
    assert q.eps == 1e-3 and q.kmeans_max_samples == 100
    r = QUANTIZERS.create("rvq:num_stages=2,update=loss,rotation_trick=true,codebook_weight=0.5", dim=8)
    assert all(s.use_rotation_trick and s.codebook_weight == 0.5 for s in r.stages)
    for entry in QUANTIZERS.entries():  # every constructor parameter is a spec key
        if isinstance(entry.factory, type):
            init = inspect.signature(entry.factory).parameters
            assert set(entry.params) == set(init), entry.name
