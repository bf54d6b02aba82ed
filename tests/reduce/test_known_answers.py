"""Known answers: each method does what its paper says on inputs where the answer is known."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

import vistok.reduce as vr
from vistok.reduce._greedy import farthest_first
from vistok.reduce._state import TokenState
from vistok.reduce.base import LayerContext, spread_plan, stage_plan
from vistok.reduce.divprune import DivPrune
from vistok.reduce.dymu import DyMU
from vistok.reduce.kcenter import KCenter
from vistok.reduce.matryoshka import nested_pool, nested_scales
from vistok.reduce.pool import Pool
from vistok.reduce.tome import ToMe

from .conftest import load_hf


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _ctx(x: torch.Tensor, remove: int, **kw) -> LayerContext:
    return LayerContext(x, torch.ones(x.shape[:2]), remove, 0, **kw)


def test_tome_merges_the_most_similar_pair_first() -> None:
    keys = F.normalize(torch.randn(4, 10, 16), dim=-1)
    # make A token 2*i and B token 2*j+1 a near-duplicate pair, different per image
    pairs = [(0, 3), (4, 1), (8, 9), (6, 5)]
    for b, (a, bb) in enumerate(pairs):
        keys[b, a] = keys[b, bb] + 1e-3
    x = torch.randn(4, 10, 8)
    red = ToMe(r=1).reduce(_ctx(x, 1, keys=keys))
    assert red.m == 9
    for b, (a, bb) in enumerate(pairs):
        assert red.assign[b, a] == red.assign[b, bb]  # the pair shares one slot
        others = [i for i in range(10) if i not in (a, bb)]
        assert len(set(red.assign[b, others].tolist())) == 8  # nobody else merged
    # the merged slot holds the size-weighted mean of the pair
    st = TokenState(x, prefix=0, suffix=0, track_source=True, prop_attn=True)
    out = st.apply(x, red)
    a, bb = pairs[0]
    assert torch.allclose(out[0, red.assign[0, a]], (x[0, a] + x[0, bb]) / 2)
    assert st.size is not None and st.size[0].sum() == 10 and st.size[0].max() == 2
    assert torch.equal(st.source[0, a], st.source[0, bb])


def test_tome_r13_on_vit_b16_shape_counts() -> None:
    # the paper's main setting: 197 tokens, r = 13 in each of 12 blocks -> 41 tokens at the end
    plan = spread_plan(196, 12, keep=None, r=13)
    left, token_layers = 196, 0
    for r in plan:
        token_layers += left + 1
        left -= r
    assert left + 1 == 41 and token_layers == 197 + sum(197 - 13 * i for i in range(1, 12))


def test_kcenter_covers_the_farthest_point_first() -> None:
    x = torch.randn(3, 12, 5)
    kept = KCenter(keep=2 / 12, at=0).reduce(_ctx(x, 10))
    for b in range(3):
        centre = (x[b] - x[b].mean(0)).norm(dim=-1).argmax()
        second = (x[b] - x[b, centre]).norm(dim=-1).argmax()
        slots = {int(kept.assign[b, centre]), int(kept.assign[b, second])}
        assert len(slots) == 2 and kept.weight[b, centre] > 0 and kept.weight[b, second] > 0
        assert int((kept.weight[b] > 0).sum()) == 2


def _min_pairwise(points: torch.Tensor) -> float:
    d = torch.cdist(points, points)
    return float(d[~torch.eye(len(points), dtype=torch.bool)].min())


@pytest.mark.parametrize("seed", range(5))
def test_divprune_max_min_against_brute_force(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 9, 4, generator=g)
    k = 4
    red = DivPrune(keep=k / 9, at=0).reduce(_ctx(x, 9 - k))
    chosen = (red.weight[0] > 0).nonzero().flatten()
    assert len(chosen) == k
    xn = F.normalize(x[0], dim=-1)  # cosine-distance ranking == chord metric on the sphere
    greedy = _min_pairwise(xn[chosen])
    best = max(_min_pairwise(xn[list(c)]) for c in itertools.combinations(range(9), k))
    assert greedy >= best / 2 - 1e-6  # the greedy max-min guarantee
    assert greedy <= best + 1e-6
    # each greedy pick maximised its min distance to the picks before it
    dist = torch.cdist(xn, xn)[None]
    first = chosen[0:1]
    again = farthest_first(
        dist, k, dist[0].masked_fill(torch.eye(9, dtype=torch.bool), 9).amin(-1).argmax()[None]
    )
    assert set(again[0].nonzero().flatten().tolist()) == set(chosen.tolist()), first


def test_proportional_attention_equals_duplicated_tokens(hf_folders) -> None:
    """Attention with log(size) bias over merged tokens == attention over size copies."""
    model = load_hf(hf_folders, "vit", "sdpa")
    attn = model.layers[0].attention
    x = torch.randn(1, 5, 32)
    sizes = torch.tensor([1.0, 3.0, 1.0, 2.0, 1.0])
    dup = x.repeat_interleave(sizes.long(), dim=1)  # [1, 8, 32]
    bias = sizes.log()[None, None, None, :]
    with torch.no_grad():
        for impl in ("sdpa", "eager"):
            attn.config._attn_implementation = impl
            merged = attn(x, bias)[0]
            full = attn(dup, None)[0]
            first = torch.cumsum(sizes.long(), 0) - sizes.long()
            assert torch.allclose(merged[0], full[0, first], atol=1e-5), impl


def test_dymu_counts_vary_and_batching_matches_single_images(hf_folders) -> None:
    model = load_hf(hf_folders, "vit", "sdpa")
    g = torch.Generator().manual_seed(4)
    flat = torch.full((1, 3, 64, 64), 0.5) + 0.01 * torch.rand(1, 3, 64, 64, generator=g)
    busy = torch.rand(2, 3, 64, 64, generator=g)
    x = torch.cat([flat, busy])
    red = DyMU(keep=0.5)
    with torch.no_grad():
        handle = vr.apply(model, red)
        model(pixel_values=x)  # calibrates thresholds on this batch
        red.freeze()
        batched = model(pixel_values=x)
        counts = (handle.state.size > 0).sum(1)
        single = [model(pixel_values=x[i : i + 1]) for i in range(3)]
        vr.remove(model)
    assert counts[0] < counts[1:].min(), counts  # the flat image keeps fewer tokens
    for i in range(3):
        n = single[i].last_hidden_state.shape[1]
        assert n == int(counts[i])
        # padding slots carry no weight: the class token equals the image's single run
        torch.testing.assert_close(
            batched.last_hidden_state[i, 0], single[i].last_hidden_state[0, 0], atol=2e-5, rtol=1e-4
        )


def test_batch_with_padding_has_the_same_pooled_output(hf_folders) -> None:
    """CLS-pooled outputs of a padded DyMU batch equal each image run alone (SigLIP's
    attention-pooling head gets the padding mask too)."""
    for host in ("clip-proj", "siglip"):
        model = load_hf(hf_folders, host, "sdpa")
        g = torch.Generator().manual_seed(5)
        x = torch.cat([torch.full((1, 3, 64, 64), 0.3), torch.rand(2, 3, 64, 64, generator=g)])
        red = DyMU(keep=0.4)
        with torch.no_grad():
            h = vr.apply(model, red)
            model(pixel_values=x)
            red.freeze()
            batched = _pooled(model(pixel_values=x))
            counts = (h.state.size > 0).sum(1)
            single = torch.cat([_pooled(model(pixel_values=x[i : i + 1])) for i in range(3)])
            vr.remove(model)
        assert len(set(counts.tolist())) > 1, counts
        torch.testing.assert_close(batched, single, atol=2e-5, rtol=1e-4)


def _pooled(out) -> torch.Tensor:
    return out.image_embeds if hasattr(out, "image_embeds") else out.pooler_output


def test_evit_keeps_the_most_attended_tokens_and_fuses_the_rest() -> None:
    x = torch.randn(2, 8, 4)
    attn = torch.tensor([[0.3, 0.01, 0.2, 0.02, 0.25, 0.03, 0.04, 0.05]] * 2)
    red = vr.REDUCERS.create("evit", keep=0.5).reduce(_ctx(x, 4, cls_attn=attn))
    kept = [0, 2, 4]  # 8 - 4 removed - 1 fused token
    assert red.m == 4
    assert red.assign[0, kept].tolist() == [0, 1, 2]
    assert (red.assign[0, [1, 3, 5, 6, 7]] == 3).all()
    st = TokenState(x, prefix=0, suffix=0, track_source=False, prop_attn=True)
    out = st.apply(x, red)
    w = attn[0, [1, 3, 5, 6, 7]]
    assert torch.allclose(out[0, 3], (x[0, [1, 3, 5, 6, 7]] * w[:, None]).sum(0) / w.sum())
    assert st.size is not None and st.size[0].tolist() == [1, 1, 1, 5]


def test_pool_and_matryoshka_average_the_grid() -> None:
    x = torch.randn(1, 16, 3)
    red = Pool(keep=0.25, at=0).reduce(_ctx(x, 12, grid=(4, 4)))
    out = TokenState(x, prefix=0, suffix=0, track_source=False, prop_attn=True).apply(x, red)
    grid = x[0].reshape(4, 4, 3)
    assert torch.allclose(out[0, 0], grid[:2, :2].reshape(-1, 3).mean(0), atol=1e-6)
    assert nested_scales((14, 14)) == [(14, 14), (7, 7), (4, 4), (2, 2), (1, 1)]
    sets = nested_pool(x, (4, 4))
    assert [s.shape[1] for s in sets] == [16, 4, 1]
    assert torch.allclose(sets[1], out, atol=1e-6) and torch.allclose(sets[2][0, 0], x[0].mean(0), atol=1e-6)
    m3 = vr.REDUCERS.create("matryoshka", keep=0.3).reduce(_ctx(x, 11, grid=(4, 4)))
    assert m3.m == 4 and torch.equal(m3.assign, red.assign)


def test_schedules() -> None:
    assert spread_plan(196, 12, keep=0.5, r=None) == [9] * 2 + [8] * 10
    assert sum(stage_plan(196, 12, keep=0.5, stages=(0.25, 0.5, 0.75))) == 98
    assert [i for i, r in enumerate(stage_plan(196, 12, keep=0.5, stages=(0.25, 0.5, 0.75))) if r] == [
        3,
        6,
        9,
    ]
