"""Guarantees on every method x host: nothing to reduce -> bit-identical output; the
patch/unpatch round trip restores the model; reduced runs produce the right shapes."""

from __future__ import annotations

import pytest
import torch

import vistok.reduce as vr

from .conftest import HF_HOSTS, VISTOK_HOSTS, hf_call, load_hf, vistok_host

METHODS = vr.list_methods()


@pytest.mark.parametrize(("host", "attn"), HF_HOSTS)
def test_hf_zero_reduction_is_bit_identical(hf_folders, host: str, attn: str) -> None:
    model = load_hf(hf_folders, host, attn)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = hf_call(model, x)
        for m in METHODS:
            vr.apply(model, m, keep=1.0)
            out = hf_call(model, x)
            vr.remove(model)
            assert torch.equal(out, ref), m
        # ToMe's per-block r = 0 is zero reduction too
        vr.apply(model, "tome", r=0)
        assert torch.equal(hf_call(model, x), ref)
        vr.remove(model)


@pytest.mark.parametrize("host", VISTOK_HOSTS)
def test_vistok_zero_reduction_is_bit_identical(host: str) -> None:
    tok, call = vistok_host(host)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    ref = call(x)
    for m in METHODS:
        vr.apply(tok, m, keep=1.0)
        out = call(x)
        vr.remove(tok)
        assert torch.equal(out, ref), m


@pytest.mark.parametrize(("host", "attn"), [("siglip", "sdpa"), ("vit-cls", "eager")])
def test_round_trip_restores_state_and_outputs(hf_folders, host: str, attn: str) -> None:
    model = load_hf(hf_folders, host, attn)
    x = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    state = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        ref = hf_call(model, x)
        for m in METHODS:
            handle = vr.apply(model, m, keep=0.5)
            reduced = hf_call(model, x)
            assert not torch.equal(reduced, ref), f"{m} reduced nothing"
            with pytest.raises(RuntimeError, match="already reduced"):
                vr.apply(model, "tome", keep=0.5)
            handle.remove()
            assert vr.get_handle(model) is None
            assert all("forward" not in vars(mod) for mod in model.modules()), m
            assert all(not mod._forward_hooks and not mod._forward_pre_hooks for mod in model.modules()), m
            assert torch.equal(hf_call(model, x), ref), m
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    ("host", "attn"), [(h, "sdpa") for h in ("vit", "clip-proj", "siglip")] + [("vit", "eager")]
)
@pytest.mark.parametrize("method", METHODS)
def test_hf_reduced_forward(hf_folders, host: str, attn: str, method: str) -> None:
    model = load_hf(hf_folders, host, attn)
    x = torch.rand(3, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        handle = vr.apply(model, method, keep=0.5)
        out = model(pixel_values=x)
        vr.remove(model)
    first = out[0]
    assert torch.isfinite(first).all()
    n_in = 64 + (0 if host == "siglip" else 1)
    if hasattr(out, "last_hidden_state") and out.last_hidden_state is not None:
        assert out.last_hidden_state.shape[1] < n_in
    st = handle.state
    assert st is not None and st.reductions >= 1
    if st.size is not None:  # merges keep every input patch accounted for (padding has size 0)
        prefix = 0 if host == "siglip" else 1
        kept = st.size[:, prefix:].sum(1)
        assert torch.all(kept <= 64 + 1e-3)
        if method in ("tome", "dymu", "pool", "matryoshka", "evit"):
            assert torch.allclose(kept, torch.full_like(kept, 64.0))


@pytest.mark.parametrize("host", VISTOK_HOSTS)
@pytest.mark.parametrize("method", METHODS)
def test_vistok_reduced_forward(host: str, method: str) -> None:
    tok, call = vistok_host(host)
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))
    handle = vr.apply(tok, method, keep=0.5, **({"at": 0} if method not in ("tome", "dymu", "evit") else {}))
    out = call(x)
    enc = tok.encode(x)
    vr.remove(tok)
    assert out.shape == x.shape and torch.isfinite(out).all()
    assert handle.state is not None and handle.state.reductions >= 1
    if host == "latent1d-tiny":  # the latent tokens are never reduced
        assert enc.ids is not None and enc.ids.shape[1] == tok.num_latent


def test_unknown_host_and_method_errors() -> None:
    with pytest.raises(TypeError, match="no host matches"):
        vr.apply(torch.nn.Linear(2, 2), "tome", keep=0.5)
    from vistok.registry import SpecError

    with pytest.raises(SpecError):
        vr.apply(torch.nn.Linear(2, 2), "tomee", keep=0.5)


@pytest.mark.slow  # a fresh interpreter importing torch: ~30 s on the shared CI machine
def test_import_does_not_import_transformers() -> None:
    import subprocess
    import sys

    code = "import sys, vistok, vistok.reduce.bench; print('transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_shipped_vistok_1d_encoder() -> None:
    """The shipped latent1d-grid model: grid tokens reduced, its 256 latent tokens kept."""
    import vistok

    tok = vistok.create("vistok-1d").eval()
    x = torch.rand(1, 3, tok.input_size, tok.input_size, generator=torch.Generator().manual_seed(6))
    ref = tok.encode(x).ids
    for m in ("tome", "random"):
        vr.apply(tok, m, keep=1.0)
        assert torch.equal(tok.encode(x).ids, ref), m
        vr.remove(tok)
        handle = vr.apply(tok, m, keep=0.75)
        ids = tok.encode(x).ids
        vr.remove(tok)
        assert ids is not None and ids.shape == ref.shape
        assert handle.trace[-1][1] - tok.num_latent == 48  # 64 grid tokens -> 48
