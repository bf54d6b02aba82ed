"""FSQ, LFQ and BSQ: exact index <-> code bijections, gradients, and the entropy loss."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from vistok.quantize import BSQ, FSQ, LFQ, _fsq_native, binary_entropy_terms
from vistok.utils import native


@pytest.fixture(
    params=[
        "torch",
        pytest.param(
            "native",
            marks=pytest.mark.skipif(
                native._compiler() is None, reason="no C compiler for the native kernel"
            ),
        ),
    ]
)
def fsq_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run an FSQ test on the torch path and on the C kernel (which must then be used)."""
    if request.param == "torch":
        monkeypatch.setattr(_fsq_native, "usable", lambda z, size: None)
    else:
        assert _fsq_native.kernel() is not None
    return request.param


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [2, 3, 4], [7, 6], [8, 8, 8, 5, 5, 5]])
def test_fsq_index_code_bijection_over_whole_codebook(levels: list[int]) -> None:
    q = FSQ(levels).eval()
    idx = torch.arange(q.codebook_size)
    codes = q.embed(idx)
    assert codes.shape == (q.codebook_size, len(levels))
    assert codes.min() >= -1 and codes.max() <= 1
    assert torch.equal(q.index_of(codes), idx)
    assert torch.unique(codes, dim=0).shape[0] == q.codebook_size  # distinct codes
    for i, n in enumerate(levels):  # L distinct, evenly spaced values per channel
        vals = torch.unique(codes[:, i])
        assert vals.numel() == n
        assert torch.allclose(vals.diff(), torch.full((n - 1,), 1.0 / (n // 2)))


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [2, 3, 4]])
def test_fsq_forward_reproduces_every_code(levels: list[int], fsq_path: str) -> None:
    """Inputs that bound() maps onto each grid point come out as exactly that code and index."""
    q = FSQ(levels).eval()
    idx = torch.arange(q.codebook_size)
    codes = q.embed(idx)
    c = q._consts(1, idx.device)
    target = codes * c["hw"]  # integers the bounded value must round to
    z = torch.atanh((target + c["offset"]) / c["half_l"]) - c["shift"]
    out = q(z)
    assert torch.equal(out.indices, idx)
    assert torch.equal(out.quantized, codes)
    assert torch.equal(q.codes(out.indices), out.quantized)


def test_fsq_fused_rounding_is_identical_to_the_textbook_formula(fsq_path: str) -> None:
    """The fast tanh + tie fix-up gives exactly round(tanh(z + shift) * half_l - offset)."""
    q = FSQ([8, 5, 5, 5, 2, 3]).eval()
    c = q._consts(1, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    z = [torch.randn(50000, 6, generator=g) * 2]
    for k in range(-4, 4):  # values straddling every rounding boundary k + 0.5
        boundary = torch.atanh(((k + 0.5) + c["offset"]) / c["half_l"]) - c["shift"]
        for eps in [0.0, 1e-7, -1e-7, 1e-6, -1e-6, 3e-5, -3e-5]:
            z.append((boundary + eps).nan_to_num(0.0).unsqueeze(0))
    z = torch.cat(z)
    ref = torch.round(torch.tanh(z + c["shift"]) * c["half_l"] - c["offset"])
    ref_idx = ((ref + c["hw"]).long() * q._basis).sum(-1)
    out = q(z)
    assert torch.equal(out.indices, ref_idx)
    assert torch.equal(out.quantized, ref / c["hw"])


def test_fsq_straight_through_gradient_is_the_bound_derivative(fsq_path: str) -> None:
    q = FSQ([8, 5, 5, 5])
    x = torch.randn(64, 4, requires_grad=True)
    q(x).quantized.sum().backward()
    xd = x.detach().requires_grad_(True)
    (q.bound(xd) / q._consts(1, xd.device)["hw"]).sum().backward()
    assert torch.allclose(x.grad, xd.grad, rtol=1e-4, atol=1e-6)  # fused path: tanh via sigmoid
    assert (x.grad > 0).all()


@pytest.mark.skipif(native._compiler() is None, reason="no C compiler for the native kernel")
@pytest.mark.parametrize("n", [1, 7, 8, 4099])
def test_fsq_native_and_torch_paths_agree_exactly(n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Codes, indices and gradients; odd token counts (padding) and > 256 flagged tokens."""
    q = FSQ([8, 5, 5, 5, 2, 3, 16])
    c = q._consts(1, torch.device("cpu"))
    g = torch.Generator().manual_seed(n)
    z = torch.randn(n, 7, generator=g) * 2
    if n > 1000:  # every fifth token straddles a rounding boundary by 1e-7: the kernel's list overflows
        k = torch.randint(-1, 1, (n // 5, 7), generator=g).float() + 0.5
        boundary = torch.atanh(((k + c["offset"]) / c["half_l"]).clamp(-0.999, 0.999)) - c["shift"]
        z[::5][: n // 5] = boundary + 1e-7 * torch.randn(boundary.shape, generator=g).sign()
    results = {}
    for path in ("native", "torch"):
        if path == "torch":
            monkeypatch.setattr(_fsq_native, "usable", lambda z, size: None)
        x = z.clone().requires_grad_(True)
        out = q(x)
        (out.quantized * torch.linspace(-1, 1, out.quantized.numel()).view_as(out.quantized)).sum().backward()
        results[path] = (out.quantized.detach(), out.indices, x.grad)
    (qa, ia, ga), (qb, ib, gb) = results["native"], results["torch"]
    assert torch.equal(ia, ib)
    assert torch.equal(qa, qb)
    assert torch.allclose(ga, gb, rtol=1e-5, atol=1e-7)


def test_fsq_survives_a_half_precision_module_cast(fsq_path: str) -> None:
    """Constants are not buffers: .half() on a model cannot corrupt the grid or the indices."""
    ref = FSQ([8, 8, 8, 5, 5, 5]).eval()
    cast = FSQ([8, 8, 8, 5, 5, 5]).half().eval()
    x = torch.randn(500, 6)
    assert torch.equal(ref(x).indices, cast(x).indices)
    assert torch.equal(ref.embed(torch.arange(64000)), cast.embed(torch.arange(64000)))


def test_fsq_with_projection_and_bits() -> None:
    q = FSQ([8, 8, 8, 5, 5, 5], dim=32)
    assert q.codebook_size == 64000 and q.bits_per_index == pytest.approx(math.log2(64000))
    assert isinstance(q.project_in, torch.nn.Linear) and q.project_in.out_features == 6


@pytest.mark.parametrize("cls", [LFQ, BSQ])
@pytest.mark.parametrize("bits", [1, 5, 12])
def test_binary_index_code_bijection_over_whole_codebook(cls: type[LFQ], bits: int) -> None:
    q = cls(bits).eval()
    idx = torch.arange(1 << bits)
    codes = q.embed(idx)
    assert torch.equal(q.index_of(codes), idx)
    out = q(codes)  # the codes are fixed points of the forward
    assert torch.equal(out.indices, idx)
    assert torch.allclose(out.quantized, codes, atol=1e-7)
    assert torch.equal(q.codes(out.indices), out.quantized)
    if cls is BSQ:
        assert torch.allclose(codes.norm(dim=-1), torch.ones(1 << bits))
    assert torch.equal(out.indices[: min(4, 1 << bits)], torch.arange(min(4, 1 << bits)))


def test_lfq_index_convention_first_channel_least_significant() -> None:
    q = LFQ(3)
    x = torch.tensor([[1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-0.1, -2.0, 3.0], [0.5, 0.5, 0.5]])
    assert q(x).indices.tolist() == [1, 2, 4, 7]


@pytest.mark.parametrize("cls", [LFQ, BSQ])
def test_binary_straight_through_gradient_reaches_input(cls: type[LFQ]) -> None:
    q = cls(8)
    x = torch.randn(32, 8, requires_grad=True)
    q(x).quantized.sum().backward()
    if cls is LFQ:  # identity straight-through
        assert torch.equal(x.grad, torch.ones_like(x))
    else:  # through the l2 normalization
        xd = x.detach().requires_grad_(True)
        torch.nn.functional.normalize(xd, dim=-1).sum().backward()
        assert torch.allclose(x.grad, xd.grad)


def _brute_entropies(logits: torch.Tensor) -> tuple[float, float]:
    """Enumerate all 2^bits codes: exact per-sample and codebook entropy."""
    bits = logits.shape[1]
    codes = torch.tensor(list(itertools.product([0, 1], repeat=bits)), dtype=torch.float64).flip(1)
    lp1 = torch.nn.functional.logsigmoid(logits.double())
    lp0 = torch.nn.functional.logsigmoid(-logits.double())
    logp = lp1 @ codes.t() + lp0 @ (1 - codes).t()  # [N, 2^bits]
    p = logp.exp()
    sample = -(p * logp).sum(1).mean()
    avg = p.mean(0)
    codebook = -(avg * avg.log()).sum()
    return float(sample), float(codebook)


def test_entropy_terms_match_enumeration() -> None:
    torch.manual_seed(0)
    logits = torch.randn(200, 6) * 2 + torch.tensor([0.0, 1.0, -1.0, 0.5, 0.0, 2.0])
    logits[:, 1] = logits[:, 0] * 1.5  # dependent bits: grouping then over-estimates
    sample_ref, codebook_ref = _brute_entropies(logits)
    sample, codebook = binary_entropy_terms(logits, group_bits=6)  # one group: exact
    assert float(sample) == pytest.approx(sample_ref, rel=1e-5)
    assert float(codebook) == pytest.approx(codebook_ref, rel=1e-5)
    sample2, grouped = binary_entropy_terms(logits, group_bits=2)  # three groups: upper bound
    assert float(sample2) == pytest.approx(sample_ref, rel=1e-5)  # per-sample stays exact
    assert codebook_ref < float(grouped) <= 6 * math.log(2) + 1e-6


def _train_free_latents(cls: type[LFQ], entropy_weight: float) -> tuple[float, float]:
    """Collapsed start: every latent has the same sign pattern (one code). Returns usage before/after."""
    torch.manual_seed(0)
    init = 0.05 + 0.01 * torch.randn(512, 8)
    init[:, 0] = 1.0  # a dominant direction, so BSQ's normalization keeps the others small
    z = torch.nn.Parameter(init)
    q = cls(8, entropy_weight=entropy_weight)
    opt = torch.optim.Adam([z], lr=0.01)
    before = q(z).stats["usage"] * q.codebook_size
    for _ in range(100):
        out = q(z)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    return float(before), float(q(z).stats["usage"] * q.codebook_size)


@pytest.mark.parametrize("cls", [LFQ, BSQ])
def test_entropy_loss_prevents_collapse(cls: type[LFQ]) -> None:
    before, without = _train_free_latents(cls, entropy_weight=0.0)
    assert before == 1 and without == 1  # commitment alone keeps the collapse
    _, with_entropy = _train_free_latents(cls, entropy_weight=0.1)
    assert with_entropy >= 30  # of 256 codes, 512 tokens


def test_lfq_large_codebook_entropy_memory_is_grouped() -> None:
    """2^18 codes: the entropy terms use 2 groups of 2^9, never a [tokens, 2^18] tensor."""
    q = LFQ(18)
    x = torch.randn(2048, 18, requires_grad=True)
    out = q(x)
    out.loss.backward()
    assert q.codebook_size == 1 << 18 and 0 < float(out.stats["codebook_entropy"]) <= 18 * math.log(2)
    assert x.grad is not None


def test_chunked_group_probabilities_gradient() -> None:
    """The memory-light entropy recomputes probabilities in backward: check it numerically."""
    from vistok.quantize.lfq import _GroupMeanProbs

    g = torch.Generator().manual_seed(0)
    for n, bits in [(300, 5), (3000, 7)]:  # one chunk, several chunks
        a = (torch.randn(n, bits, generator=g, dtype=torch.float64) * 3).requires_grad_(True)
        assert torch.autograd.gradcheck(_GroupMeanProbs.apply, (a,), fast_mode=True)


def _digits(ids: torch.Tensor, factors: list[int]) -> torch.Tensor:
    """Mixed-radix digits of ``ids``, the first factor least significant (the documented rule)."""
    out, rest = [], ids.clone()
    for f in factors:
        out.append(rest % f)
        rest = rest // f
    return torch.stack(out, -1)


@pytest.mark.parametrize("levels", [[8, 5, 5, 5], [8, 8, 8, 5, 5, 5], [3, 2, 7]])
def test_fsq_index_factors_are_the_digits_of_each_channel(levels: list[int]) -> None:
    q = FSQ(levels)
    assert q.index_factors == levels and math.prod(q.index_factors) == q.codebook_size
    ids = torch.randint(0, q.codebook_size, (500,))
    half = torch.tensor([n // 2 for n in levels])
    assert torch.equal(q.embed(ids), (_digits(ids, q.index_factors) - half) / half.float())


@pytest.mark.parametrize("cls", [LFQ, BSQ])
def test_binary_index_factors_are_the_sign_bits(cls: type[LFQ]) -> None:
    q = cls(bits=9)
    assert q.index_factors == [2] * 9
    ids = torch.randint(0, q.codebook_size, (500,))
    assert torch.equal(q.embed(ids) > 0, _digits(ids, q.index_factors).bool())


def test_learned_codebooks_have_no_index_factors() -> None:
    from vistok.quantize import VectorQuantizer

    assert VectorQuantizer(codebook_size=16, dim=4).index_factors is None
