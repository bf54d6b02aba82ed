"""Invariants every registered quantizer must satisfy, on tiny configs (timm-style registry sweep)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load, save

import vistok.quantize as Q
from vistok.quantize import QUANTIZERS, QuantizerOutput, quantize_bchw
from vistok.registry import SpecError

C = 12  # model channels: divisible by the factorized quantizer's factors

# Overrides that keep a family small; entries not listed run with their defaults.
TINY: dict[str, dict] = {
    "vq": {"codebook_size": 64},
    "rvq": {"codebook_size": 32, "num_stages": 3},
    "fvq": {"codebook_size": 32},
    "msvq": {"codebook_size": 64, "scales": [1, 2, 4]},
    "lfq": {"bits": 10},
    "bsq": {"bits": 10},
    "ptq": {"bits": 4},
}


def _make(name: str):
    entry = QUANTIZERS.get(name)  # variants keep their other presets
    return QUANTIZERS.create(name, dim=C, **TINY.get(entry.base or entry.name, {}))


def _input(q, seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if getattr(q, "requires_spatial_input", False):
        side = q.scales[-1]
        return torch.randn(2, side, side, C, generator=g).to(dtype)
    return torch.randn(2, 5, 6, C, generator=g).to(dtype)


def _index_shape(q, x: torch.Tensor) -> tuple[int, ...]:
    if getattr(q, "requires_spatial_input", False):
        return (x.shape[0], q.num_tokens(x.shape[1], x.shape[2]))
    return (*x.shape[:-1], *q.index_shape_suffix)


NAMES = QUANTIZERS.names()


def test_registry_lists_every_part() -> None:
    for family in ["vq", "fsq", "lfq", "bsq", "rvq", "msvq", "fvq", "ptq", "gaussian"]:
        assert family in NAMES


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_ranges_and_gradient(name: str) -> None:
    torch.manual_seed(0)
    q = _make(name).train()
    x = _input(q).requires_grad_(True)
    out = q(x)
    assert isinstance(out, QuantizerOutput)
    assert out.quantized.shape == x.shape and out.quantized.dtype == x.dtype
    assert out.loss.ndim == 0 and out.loss.dtype == torch.float32 and torch.isfinite(out.loss)
    for key, value in out.stats.items():
        assert value.ndim == 0 and value.is_floating_point() and torch.isfinite(value), key
    assert q.bits_per_index > 0
    if q.is_discrete:
        assert {"perplexity", "usage"} <= set(out.stats)
        assert out.indices is not None and out.indices.dtype == torch.long
        assert tuple(out.indices.shape) == _index_shape(q, x)
        assert int(out.indices.min()) >= 0 and int(out.indices.max()) < q.codebook_size
        assert q.bits_per_index == pytest.approx(math.log2(q.codebook_size))
        assert 0 < float(out.stats["usage"]) <= 1
    else:
        assert out.indices is None
    weight = torch.randn_like(out.quantized)
    ((out.quantized * weight).sum() + out.loss).backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@pytest.mark.parametrize("name", NAMES)
def test_codes_of_indices_equal_quantized_in_eval(name: str) -> None:
    torch.manual_seed(0)
    q = _make(name)
    x = _input(q)
    q.train()(x)  # first batch: k-means / bin fitting
    q.eval()
    with torch.no_grad():
        out = q(x)
        if not q.is_discrete:
            with pytest.raises(NotImplementedError):
                q.codes(torch.zeros(1, dtype=torch.long))
            return
        assert torch.allclose(q.codes(out.indices), out.quantized, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_safetensors_round_trip(name: str) -> None:
    torch.manual_seed(0)
    q = _make(name)
    x = _input(q)
    q.train()(x)
    q.eval()
    blob = save({k: v.contiguous() for k, v in q.state_dict().items()})
    torch.manual_seed(123)  # a different random init, overwritten by the load
    fresh = _make(name)
    fresh.load_state_dict(load(blob))
    fresh.eval()
    with torch.no_grad():
        a, b = q(x), fresh(x)
    assert torch.equal(a.quantized, b.quantized)
    if a.indices is not None:
        assert torch.equal(a.indices, b.indices)


@pytest.mark.parametrize("name", NAMES)
def test_autocast_bfloat16(name: str) -> None:
    torch.manual_seed(0)
    q = _make(name).train()
    x = _input(q, dtype=torch.bfloat16).requires_grad_(True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = q(x)
        assert out.quantized.dtype == torch.bfloat16
        assert out.loss.dtype == torch.float32
        (out.quantized.float().sum() + out.loss).backward()
    assert x.grad is not None and x.grad.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out32 = q(_input(q))  # float32 input under autocast stays float32
    assert out32.quantized.dtype == torch.float32


@pytest.mark.parametrize("name", NAMES)
def test_neighbours_shape_range_and_exclusion(name: str) -> None:
    """Every discrete quantizer gives k other codes per index element (the trainer relies on it)."""
    torch.manual_seed(0)
    q = _make(name)
    x = _input(q)
    out = q.train()(x)
    if not q.is_discrete:
        with pytest.raises(NotImplementedError):
            q.neighbours(torch.zeros(1, dtype=torch.long), 2)
        return
    nb = q.neighbours(out.indices, 3)
    assert nb.shape == (*out.indices.shape, 3) and nb.dtype == torch.long
    assert int(nb.min()) >= 0 and int(nb.max()) < q.codebook_size
    assert (nb != out.indices.unsqueeze(-1)).all()
    q.eval()
    assert q.codes(nb[..., 0]).shape == out.quantized.shape  # swapped indices decode


@pytest.mark.parametrize("name", NAMES)
def test_spec_round_trip(name: str) -> None:
    q = _make(name)
    again = QUANTIZERS.create(q.spec, dim=C)
    assert type(again) is type(q) and again.config == q.config


def test_quantize_bchw_maps_channel_first() -> None:
    q = QUANTIZERS.create("fsq:levels=[5,5,5]", dim=6)
    x = torch.randn(2, 6, 4, 3)
    out = quantize_bchw(q, x)
    assert out.quantized.shape == x.shape and out.indices.shape == (2, 4, 3)
    ref = q(x.permute(0, 2, 3, 1))
    assert torch.equal(out.quantized, ref.quantized.permute(0, 3, 1, 2))


def test_wrong_channel_count_is_a_clear_error() -> None:
    q = QUANTIZERS.create("fsq", dim=8)
    with pytest.raises(ValueError, match=r"expected channel-last input \[\.\.\., 8\]"):
        q(torch.randn(2, 3, 4, 5))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("fsq:levels=[8,1,5]", "every level must be an integer >= 2"),
        ("fsq:levels=[]", "every level must be an integer >= 2"),
        ("vq:codebook_size=1", "codebook_size must be an integer >= 2"),
        ("vq:decay=1.5", "decay must be in"),
        ("fvq:num_factors=5", "not divisible by num_factors"),
        ("rvq:num_stages=0", "num_stages must be an integer >= 1"),
        ("rvq:quantizer_dropout=2", "quantizer_dropout must be in"),
        ("lfq:bits=0", "bits must be an integer >= 1"),
        ("bsq:bits=80", "bits must be <= 62"),
        ("msvq:scales=[4,2]", "strictly increasing"),
        ("ptq:bits=0", "bits must be an integer >= 1"),
        ("vq:distance=manhattan", "not a valid one of euclidean|cosine"),
    ],
)
def test_bad_configuration_fails_at_construction(spec: str, message: str) -> None:
    with pytest.raises(SpecError, match=message):
        QUANTIZERS.create(spec, dim=12)


def test_bad_configuration_direct_construction_raises_value_error() -> None:
    with pytest.raises(ValueError, match="levels"):
        Q.FSQ([4, 0])
    with pytest.raises(ValueError, match="give dim"):
        Q.VectorQuantizer(16)
    with pytest.raises(ValueError, match="dim"):
        QUANTIZERS.create("ptq")


def test_usage_stats_are_computed_on_first_read_only() -> None:
    from vistok.quantize import usage_stats
    from vistok.quantize.base import LazyStats

    q = QUANTIZERS.create("fsq:levels=[8,5,5,5]", dim=4)
    out = q(torch.randn(2, 64, 4, generator=torch.Generator().manual_seed(0)))
    assert isinstance(out.stats, LazyStats) and out.stats._compute is not None
    assert list(out.stats) == ["perplexity", "usage"] and "usage" in out.stats  # no compute
    assert out.stats._compute is not None
    eager = usage_stats(out.indices, q.codebook_size)
    assert torch.equal(out.stats["usage"], eager["usage"]) and out.stats._compute is None
    assert torch.allclose(dict(out.stats)["perplexity"], eager["perplexity"])
    calls = []
    lazy = LazyStats(lambda: calls.append(1) or {"a": torch.tensor(1.0)}, ("a",))
    lazy.update(b=torch.tensor(2.0))
    assert sorted(lazy) == ["a", "b"] and float(lazy["b"]) == 2.0 and not calls
    assert {k: float(v) for k, v in lazy.items()} == {"a": 1.0, "b": 2.0} and calls == [1]
    _ = lazy["a"]
    assert calls == [1]
