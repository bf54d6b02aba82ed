"""The originals' feature cache: hits return what the computation returned, misses are
computed once in one batch, the byte cap holds, and FD/DFD are the same with or without it."""

from __future__ import annotations

import pytest
import torch

from vistok.bench.metrics import cache as fc
from vistok.bench.metrics import frechet as fr
from vistok.nn import mobilenet as mn
from vistok.registry import METRICS


def _compute_counting(calls: list[int]):
    def compute(x: torch.Tensor) -> list[torch.Tensor]:
        calls.append(x.shape[0])
        return [x.mean((1, 2, 3)), x.flatten(1)[:, :5] * 2]

    return compute


def test_hits_skip_the_computation_and_return_its_values() -> None:
    cache, calls = fc.FeatureCache(), []
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 3, 8, 8, generator=g)
    first = cache.rows("ns", x[:4], _compute_counting(calls))
    second = cache.rows("ns", x, _compute_counting(calls))  # 4 cached, 2 new: one call of 2
    assert calls == [4, 2] and cache.hits == 4 and cache.misses == 6 and len(cache) == 6
    want = _compute_counting([])(x)
    for got, w in zip(second, want, strict=True):
        assert torch.equal(got, w)
    for got, w in zip(first, want, strict=True):
        assert torch.equal(got, w[:4])
    # another namespace, or one changed pixel, is a miss
    cache.rows("other", x[:1], _compute_counting(calls))
    y = x[:1].clone()
    y[0, 0, 0, 0] += 1e-6
    cache.rows("ns", y, _compute_counting(calls))
    assert calls == [4, 2, 1, 1]


def test_the_byte_cap_holds_and_a_full_cache_still_answers() -> None:
    per_image = (1 + 5) * 4  # two float32 outputs: 1 and 5 values
    cache, calls = fc.FeatureCache(max_bytes=3 * per_image), []
    x = torch.rand(5, 3, 8, 8)
    out = cache.rows("ns", x, _compute_counting(calls))
    assert len(cache) == 3 and cache.nbytes == 3 * per_image
    assert torch.equal(out[0], x.mean((1, 2, 3)))
    again = cache.rows("ns", x, _compute_counting(calls))
    assert calls == [5, 2] and torch.equal(again[1], out[1])  # the first 3 kept, the last 2 recomputed
    cache.clear()
    assert len(cache) == 0 and cache.nbytes == 0


def test_digest_depends_on_values_dtype_and_shape() -> None:
    x = torch.zeros(3, 4, 4)
    assert fc.image_digest(x) == fc.image_digest(x.clone())
    assert fc.image_digest(x) != fc.image_digest(x.double())
    assert fc.image_digest(x) != fc.image_digest(x.reshape(3, 2, 8))


@pytest.mark.skipif(mn.mobilenet_v2_weights_path() is None, reason="needs the MobileNetV2 weights")
def test_fd_and_dfd_equal_with_and_without_the_cache(photos_uint8, im) -> None:
    crops = [a[:128, :128] for a in photos_uint8.values()]
    x = torch.cat([im.to_tensor(c) for c in crops])
    ys = [torch.cat([im.to_tensor(im.jpeg(c, q)) for c in crops]) for q in (10, 60)]
    fc.ORIGINALS.clear()
    cached = []
    for y in ys:  # two "points" against the same originals: the second one hits
        fd, dfd = METRICS.create("fd"), METRICS.create("dfd")
        fd.update(x, y)
        dfd.update(x, y)
        cached.append((fd.compute()["fd"], dfd.compute()["dfd"]))
    assert fc.ORIGINALS.hits == 2 * len(crops)
    fc.ORIGINALS.clear()
    ex = fr.MobileNetV2Extractor()
    for y, (fd, dfd) in zip(ys, cached, strict=True):
        assert fd == pytest.approx(fr.frechet_distance_from_features(ex(x), ex(y)), rel=1e-9)
        assert dfd == pytest.approx(fr.deep_feature_distance(x, y).mean().item(), rel=1e-9)
    assert cached[0][1] > cached[1][1]  # the cache did not make the two points one
