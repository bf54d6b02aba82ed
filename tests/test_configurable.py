"""Configuration is captured at construction: any object, however it was built, saves and loads back.

Every registered tokenizer *class* is built here directly (``Cls(**kwargs)``, no registry), saved,
loaded with ``vistok.load`` and compared: type, configuration, tensors and outputs. The same for
quantizers (rebuilt from their ``spec``), priors (``save_prior``/``load_prior``) and reducers.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any

import pytest
import torch

import vistok
from vistok.configurable import Configurable, architecture_spec
from vistok.registry import QUANTIZERS, TOKENIZERS, parse_spec

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "official"

# The small configuration each registered tokenizer class is built with, as a spec (its keys are
# passed straight to the class). Zoo families use the configuration of their parity fixture.
OWN = {
    "conv2d": "conv2d-tiny",
    "vit2d": "vit2d-tiny",
    "latent1d": "latent1d-tiny:quantizer=[vq:codebook_size=32]",
    "latent1d-grid": "latent1d-grid:backbone=[conv2d-tiny:latent_norm=true],image_size=32,grid_patch=1,"
    "tokens=8,width=48,depth=1,num_heads=2,latent_dim=4,quantizer=[fsq:levels=8-5-5-5]",
    "pca": "pca:basis_size=16,tokens=8,coeffs_per_token=2,bits=6",
    "jpeg": "jpeg:quality=40",
    "webp": "webp:quality=40",
    "avif": "avif:quality=40",
    "png": "png",
    "resize": "resize:factor=4",
    "thumbnail": "thumbnail:bytes=512",
}
FIXTURE_CASES = {
    "cosmos-ci": "cosmos/ci", "cosmos-di": "cosmos/di", "llamagen-vq": "llamagen/tiny", "mar-kl": "mar/kl_tiny",
    "maskbit": "maskbit/lfq", "vqgan-plus": "maskbit/vq", "one-d-piece": "one_d_piece/prefix",
    "ibq": "seed_voken/ibq_small", "open-magvit2": "seed_voken/lfq_small", "taesd": "taesd/taesd-w4",
    "taming-vqgan": "taming/f4_tiny", "titok-vae": "titok/bl_vae", "titok": "titok/legacy",
    "maskgit-vqgan": "titok/maskgit_vqgan", "var-vqvae": "var/scales10",
}  # fmt: skip


def _class_families() -> list[str]:
    vistok.list()
    return [e.name for e in TOKENIZERS.entries() if e.base is None and inspect.isclass(e.factory)]


def _small_spec(family: str) -> str:
    if family in FIXTURE_CASES:
        return json.loads((FIXTURES / FIXTURE_CASES[family] / "case.json").read_text())["spec"]
    return OWN[family]


def _direct_kwargs(spec: str) -> tuple[type, dict[str, Any]]:
    """The class of ``spec``'s family and the typed keyword arguments the spec sets (and only those)."""
    entry, kwargs = TOKENIZERS.resolve(spec)
    _, raw = parse_spec(spec)
    keys = set(raw) | set(entry.presets)  # a variant's presets are arguments too, when built directly
    return entry.factory, {k: kwargs[k] for k in keys}  # type: ignore[return-value]


def test_every_class_family_has_a_small_configuration_here() -> None:
    missing = sorted(set(_class_families()) - set(OWN) - set(FIXTURE_CASES))
    assert not missing, f"add a small configuration for {missing} to this file"


@pytest.mark.parametrize("family", _class_families())
def test_built_directly_saves_and_loads_back_identically(family: str, tmp_path: Path) -> None:
    entry = TOKENIZERS.get(family)
    if entry.available is not None and entry.available():
        pytest.skip(f"{family}: {entry.available()}")
    cls, kwargs = _direct_kwargs(_small_spec(family))
    torch.manual_seed(0)
    tok = cls(**kwargs).eval()
    assert isinstance(tok, Configurable)
    assert tok.registry_name == family and tok.family == family
    by_name = vistok.create(tok.spec)  # the spec a directly built model records rebuilds it by name
    assert type(by_name) is cls and by_name.config == tok.config == tok.init_config
    assert tok.config == tok.normalize_config({**TOKENIZERS.resolve(family)[1], **kwargs})
    if family == "pca":  # a fitted basis is part of the model
        tok.fit(torch.rand(32, 3, 16, 16))
    with torch.no_grad():
        for p in tok.parameters():  # weights that differ from any fresh init
            p.add_(0.01 * torch.randn_like(p))
    tok.save_pretrained(tmp_path / "m")
    torch.manual_seed(1)
    back = vistok.load(tmp_path / "m")
    assert type(back) is cls and back.init_config == tok.init_config
    assert architecture_spec(back, exclude=cls.source_keys) == architecture_spec(tok, exclude=cls.source_keys)
    own, loaded = tok.state_dict(), back.state_dict()
    assert own.keys() == loaded.keys() and all(torch.equal(own[k], loaded[k]) for k in own)
    side = tok.input_size or 32
    x = torch.rand(1, 3, side, side, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(back.reconstruct(x), tok.reconstruct(x), rtol=0, atol=0)


def test_a_variant_built_by_name_keeps_its_name_and_the_class_config() -> None:
    vistok.list()
    tok = vistok.create("latent1d-tiny:tokens=6")
    assert tok.registry_name == "latent1d-tiny" and tok.family == "latent1d"
    assert tok.spec == "latent1d-tiny:tokens=6" and tok.config == tok.init_config
    assert tok.config["tokens"] == 6 and tok.config["image_size"] == 32
    assert architecture_spec(tok).startswith("latent1d:")  # the class's own name: no variant needed


def test_a_function_factory_stamps_its_own_arguments_and_keeps_the_architecture() -> None:
    from vistok.models.conv2d import Conv2dTokenizer
    from vistok.registry import Registry

    reg: Registry[Any] = Registry("thing")

    @reg.register("small-conv")
    def small_conv(*, width: int = 16) -> Any:
        return Conv2dTokenizer(width=width, image_size=32, channel_mult=[1, 2], stem_factor=4)

    tok = reg.create("small-conv:width=32")
    assert tok.registry_name == "small-conv" and tok.config == {"width": 32}
    assert tok.init_config["width"] == 32 and tok.init_config["image_size"] == 32
    assert architecture_spec(tok).startswith("conv2d:")


def test_a_constructor_may_set_its_own_spec() -> None:
    class Named(Configurable):
        def __init__(self, *, root: str = "x") -> None:
            self.spec = f"reconstructions:{root}"

    obj = Named(root="here")
    assert obj.spec == "reconstructions:here" and obj.config == {"root": "here"}
    assert obj.registry_name == "Named"  # not registered: its class name


def test_only_the_outermost_constructor_records() -> None:
    class Base(Configurable):
        def __init__(self, *, a: int = 1) -> None:
            self.a = a

    class Child(Base):
        def __init__(self, *, b: int = 2, **rest: Any) -> None:
            super().__init__(a=b + 1)
            self.rest = rest

    c = Child(b=5, extra=3)
    assert c.config == {"b": 5, "extra": 3} and c.a == 6 and c.spec == "Child:b=5,extra=3"
    assert "_vistok_init_depth" not in vars(c)
    with pytest.raises(TypeError):
        Child(1)  # a wrong call fails as the plain constructor would
    bad = Base.__new__(Base)
    with pytest.raises(TypeError):
        Base.__init__(bad, a=1, z=2)
    assert "_vistok_init_depth" not in vars(bad) or vars(bad)["_vistok_init_depth"] == 0


@pytest.mark.parametrize("family", sorted(e.name for e in QUANTIZERS.entries() if e.base is None))
def test_a_quantizer_built_directly_is_rebuilt_by_its_spec(family: str) -> None:
    import vistok.quantize  # noqa: F401  (registers the quantizers)

    cls = QUANTIZERS.get(family).factory
    kwargs: dict[str, Any] = {"dim": 8}
    if family == "msvq":
        kwargs["scales"] = (1, 2)
    q = cls(**kwargs)
    assert q.registry_name == family and q.config["dim"] == 8
    again = QUANTIZERS.create(q.spec)
    assert type(again) is cls and again.init_config == q.init_config
    assert again.state_dict().keys() == q.state_dict().keys()
    again.load_state_dict(q.state_dict())


def test_a_prior_built_directly_saves_and_loads(tmp_path: Path) -> None:
    from vistok.prior.ar import ARPrior
    from vistok.prior.base import load_prior, save_prior
    from vistok.prior.space import TokenSpace

    space = TokenSpace(token_shape=(6,), layout="sequence", vocab_sizes=(16,))
    torch.manual_seed(0)
    prior = ARPrior(space, dim=32, depth=1, heads=2)
    assert prior.registry_name == "ar" and "space" not in prior.config and prior.config["dim"] == 32
    save_prior(prior, tmp_path / "p")
    back = load_prior(tmp_path / "p")
    assert type(back) is ARPrior and back.config == prior.config and back.space == space
    ids = torch.randint(0, 16, (3, 6))
    torch.testing.assert_close(back.log_prob(ids), prior.log_prob(ids), rtol=0, atol=0)


def test_a_reducer_records_its_arguments() -> None:
    from vistok.reduce.tome import ToMe

    r = ToMe(r=4)
    assert r.config["r"] == 4 and "r=4" in repr(r)
