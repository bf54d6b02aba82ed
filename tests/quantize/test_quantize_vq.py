"""VQ: exact chunked nearest-code search, gradients, EMA fitting, k-means init, restarts."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vistok.quantize import VectorQuantizer, _search, kmeans, nearest_code, rotation_trick, topk_codes
from vistok.utils import native


def _brute(x: torch.Tensor, cb: torch.Tensor, cosine: bool) -> torch.Tensor:
    if cosine:
        return (x.double() @ cb.double().t()).argmax(1)
    return torch.cdist(x.double(), cb.double()).argmin(1)


needs_cc = pytest.mark.skipif(native._compiler() is None, reason="no C compiler for the native kernel")
BACKENDS = ["torch", pytest.param("native", marks=needs_cc)]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize(
    ("n", "k", "chunk"),
    [
        (300, 1000, 1 << 19),  # one chunk, single block
        (300, 1000, 64),  # chunk much smaller than the codebook
        (257, 3000, 1 << 19),  # two-level blocks with padding (3000 -> 3072)
        (64, 20000, 1 << 19),  # several code chunks with a running best
        (100, 5000, 5000),  # rows == 1 per chunk
    ],
)
def test_nearest_code_equals_brute_force(cosine: bool, n: int, k: int, chunk: int, backend: str) -> None:
    g = torch.Generator().manual_seed(n + k)
    x, cb = torch.randn(n, 8, generator=g), torch.randn(k, 8, generator=g)
    if cosine:
        x, cb = F.normalize(x, dim=1), F.normalize(cb, dim=1)
    got = nearest_code(x, cb, cosine=cosine, chunk_size=chunk, backend=backend)
    assert torch.equal(got, _brute(x, cb, cosine))


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearest_code_ties_go_to_lowest_index(backend: str) -> None:
    cb = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]).repeat(1000, 1)
    x = torch.tensor([[2.0, 0.1], [0.1, 2.0]])
    assert nearest_code(x, cb, chunk_size=512, backend=backend).tolist() == [0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize(("k", "chunk"), [(40000, 1 << 19), (3000, 1 << 12), (16384, 1 << 19)])
def test_nearest_code_ties_across_blocks_and_chunks_go_to_lowest_index(
    cosine: bool, k: int, chunk: int, backend: str
) -> None:
    """Exact duplicates of the best code in later blocks and code chunks never win."""
    g = torch.Generator().manual_seed(k)
    x, cb = (
        F.normalize(torch.randn(70, 8, generator=g), dim=1),
        F.normalize(torch.randn(k, 8, generator=g), dim=1),
    )
    best = _brute(x, cb, cosine)
    # copy each row's best code to a later position (other block, other chunk when K is large)
    later = torch.randint(k // 2, k, (70,), generator=g)
    keep = later > best
    cb[later[keep]] = cb[best[keep]]
    got = nearest_code(x, cb, cosine=cosine, chunk_size=chunk, backend=backend)
    assert torch.equal(got, _brute(x, cb, cosine))
    assert torch.equal(got[keep], best[keep])


@pytest.mark.parametrize("backend", BACKENDS)
def test_nearest_code_all_codes_equal_gives_index_zero(backend: str) -> None:
    cb = torch.ones(5000, 4)
    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(0))
    assert nearest_code(x, cb, chunk_size=1 << 12, backend=backend).eq(0).all()
    xn, cbn = F.normalize(x, dim=1), F.normalize(cb, dim=1)
    assert nearest_code(xn, cbn, cosine=True, backend=backend).eq(0).all()


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cosine", [False, True])
def test_nearest_code_row_remainder_and_padded_codes(cosine: bool, backend: str) -> None:
    """N not a multiple of the chunk rows, K not a multiple of the block: padding never wins."""
    g = torch.Generator().manual_seed(3)
    x, cb = torch.randn(1001, 8, generator=g), torch.randn(16383, 8, generator=g)
    if cosine:
        x, cb = F.normalize(x, dim=1), F.normalize(cb, dim=1)
    got = nearest_code(x, cb, cosine=cosine, backend=backend)
    assert int(got.max()) < 16383
    assert torch.equal(got, _brute(x, cb, cosine))


@needs_cc
@pytest.mark.parametrize("cosine", [False, True])
@pytest.mark.parametrize(
    ("n", "k", "d"), [(1, 1, 1), (3, 15, 3), (5, 17, 8), (17, 33, 65), (6, 300, 200), (9, 5000, 1)]
)
def test_native_search_on_odd_shapes_equals_brute_force(cosine: bool, n: int, k: int, d: int) -> None:
    """Rows not a multiple of the row block, codes not a multiple of the lanes, any width."""
    g = torch.Generator().manual_seed(n * k + d)
    x, cb = torch.randn(n, d, generator=g), torch.randn(k, d, generator=g)
    if cosine:
        x, cb = F.normalize(x, dim=1), F.normalize(cb, dim=1)
    got = nearest_code(x, cb, cosine=cosine, backend="native")
    assert torch.equal(got, _brute(x, cb, cosine))


@needs_cc
@pytest.mark.parametrize("cosine", [False, True])
def test_native_search_ties_inside_one_step_go_to_the_lowest_lane(cosine: bool) -> None:
    """Copies of each row's best code at every other offset of the same 16-code step and the next."""
    g = torch.Generator().manual_seed(11)
    x, cb = (
        F.normalize(torch.randn(40, 8, generator=g), dim=1),
        F.normalize(torch.randn(4096, 8, generator=g), dim=1),
    )
    best = _brute(x, cb, cosine)
    for b in best.tolist():
        for j in range(b + 1, min(b + 32, 4096)):
            if j not in set(best.tolist()):
                cb[j] = cb[b]
    got = nearest_code(x, cb, cosine=cosine, backend="native")
    assert torch.equal(got, _brute(x, cb, cosine))


@needs_cc
def test_native_search_is_the_same_for_any_thread_count() -> None:
    g = torch.Generator().manual_seed(5)
    x, cb = torch.randn(4099, 8, generator=g), torch.randn(3000, 8, generator=g)
    before = torch.get_num_threads()
    try:
        runs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            runs.append(nearest_code(x, cb, backend="native"))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(runs[0], r) for r in runs)
    assert torch.equal(runs[0], nearest_code(x, cb, backend="torch"))


def test_native_backend_off_or_unsuitable_input_raises_and_auto_falls_back(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    x, cb = torch.randn(10, 4), torch.randn(50, 4)
    with pytest.raises(RuntimeError, match="float32 CPU"):
        nearest_code(x.double(), cb.double(), backend="native")
    assert torch.equal(nearest_code(x.double(), cb.double()), _brute(x, cb, False))
    monkeypatch.setenv("VISTOK_NATIVE", "0")
    monkeypatch.setattr(native, "_loaded", {})
    assert _search._kernel() is None
    with pytest.raises(RuntimeError, match="could not be built"):
        nearest_code(x, cb, backend="native")
    assert torch.equal(nearest_code(x, cb), _brute(x, cb, False))
    with pytest.raises(ValueError, match="backend"):
        nearest_code(x, cb, backend="cuda")


@pytest.mark.parametrize("cosine", [False, True])
def test_topk_codes_equals_brute_force(cosine: bool) -> None:
    g = torch.Generator().manual_seed(0)
    cb = torch.randn(700, 6, generator=g)
    if cosine:
        cb = F.normalize(cb, dim=1)
    rows = torch.arange(0, 700, 7)
    got = topk_codes(cb[rows], cb, 5, cosine=cosine, exclude=rows, chunk_size=128)
    d = torch.cdist(cb[rows].double(), cb.double())
    d[torch.arange(len(rows)), rows] = float("inf")
    assert torch.equal(got, d.topk(5, largest=False).indices)


@pytest.mark.parametrize("update", ["ema", "loss"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine"])
def test_vq_indices_are_the_nearest_codes(update: str, distance: str) -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(128, 8, distance=distance, update=update, kmeans_init=False).eval()
    x = torch.randn(4, 50, 8)
    out = q(x)
    cb = q.normalized_codebook()
    xs = F.normalize(x, dim=-1) if distance == "cosine" else x
    assert torch.equal(out.indices.reshape(-1), _brute(xs.reshape(-1, 8), cb, distance == "cosine"))
    assert torch.equal(out.quantized, cb[out.indices])
    if distance == "cosine":
        assert torch.allclose(out.quantized.norm(dim=-1), torch.ones(4, 50))


@pytest.mark.parametrize("rotation", [False, True])
def test_vq_gradient_reaches_input(rotation: bool) -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(64, 16, code_dim=4, rotation_trick=rotation)
    x = torch.randn(8, 16, 16, requires_grad=True)
    out = q(x)
    (out.quantized.pow(2).sum() + out.loss).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert q.project_in.weight.grad is not None and q.project_out.weight.grad is not None


def test_rotation_trick_forward_is_q_and_gradient_is_rotated() -> None:
    torch.manual_seed(0)
    z = torch.randn(32, 5, requires_grad=True)
    q = torch.randn(32, 5)
    out = rotation_trick(z, q)
    assert torch.allclose(out, q, atol=1e-5)
    g = torch.randn(32, 5)
    (out * g).sum().backward()
    # d out / d z = (|q|/|z|) R: the gradient is the upstream one rotated back and rescaled,
    # so its norm is scaled by |q|/|z| (rotations keep norms) -- unlike straight-through.
    ratio = q.norm(dim=1) / z.detach().norm(dim=1)
    assert torch.allclose(z.grad.norm(dim=1), g.norm(dim=1) * ratio, rtol=1e-4)
    assert not torch.allclose(z.grad, g)


def test_loss_mode_trains_the_codebook_by_the_codebook_loss() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(32, 8, update="loss", kmeans_init=False)
    x = torch.randn(256, 8)
    out = q(x)
    out.loss.backward()
    used = torch.unique(out.indices)
    assert q.codebook.grad is not None
    assert q.codebook.grad[used].abs().sum() > 0
    unused = torch.ones(32, dtype=torch.bool)
    unused[used] = False
    assert q.codebook.grad[unused].abs().sum() == 0
    assert float(out.stats["codebook"]) > 0 and float(out.stats["commit"]) > 0


def _mixture(k: int, n: int, d: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``k`` fixed well-separated centers; ``n`` samples drawn with ``seed``."""
    centers = torch.randn(k, d, generator=torch.Generator().manual_seed(1234)) * 4
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(k, (n,), generator=g)
    return centers, centers[labels] + 0.05 * torch.randn(n, d, generator=g)


def test_ema_vq_fits_a_known_mixture() -> None:
    torch.manual_seed(0)
    k = 16
    centers, _ = _mixture(k, 1)
    q = VectorQuantizer(k, 8, update="ema", kmeans_init=True, decay=0.9)
    for step in range(15):
        _, x = _mixture(k, 2048, seed=step + 1)
        out = q(x)
    assert float(out.stats["usage"]) == 1.0
    assert float(out.stats["perplexity"]) > 0.9 * k
    # every center has a code on it, every code sits on a center
    d = torch.cdist(centers, q.codebook)
    assert d.min(1).values.max() < 0.05 and d.min(0).values.max() < 0.05


def test_ema_vq_with_restarts_recovers_from_a_bad_init() -> None:
    """No k-means: codes start far from the data; EMA + dead-code restarts reach ~all clusters."""
    torch.manual_seed(0)
    k = 16
    q = VectorQuantizer(k, 8, update="ema", kmeans_init=False, dead_code_threshold=0.1, decay=0.8)
    with torch.no_grad():
        q.codebook.add_(20.0)  # all codes on one side, far away: collapse without restarts
    for step in range(40):
        _, x = _mixture(k, 2048, seed=step + 1)
        out = q(x)
    assert float(out.stats["usage"]) >= 0.9
    assert float(out.stats["perplexity"]) > 0.8 * k


def test_kmeans_plus_plus_finds_separated_clusters() -> None:
    torch.manual_seed(0)
    centers, x = _mixture(8, 4000)
    found = kmeans(x, 8, iters=5)
    assert torch.cdist(centers, found).min(1).values.max() < 0.05


def test_kmeans_init_with_fewer_samples_than_codes() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(512, 4)
    x = torch.randn(100, 4)
    q.init_codebook(x)
    assert bool(q.initialized)
    d = torch.cdist(x.double(), q.codebook.double()).min(1).values
    assert d.max() < 1e-6  # every sample became a code
    assert torch.unique(q.codebook, dim=0).shape[0] == 512


def test_dead_code_restart_moves_dead_codes_onto_inputs() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(64, 4, kmeans_init=False, dead_code_threshold=0.5)
    x = torch.randn(1000, 4)
    q(x)  # initializes the usage statistics
    with torch.no_grad():
        q.cluster_size[:10] = 0.0
        before = q.codebook.clone()
    n = q.restart_dead_codes(x)
    assert n >= 10
    moved = (q.codebook != before).any(1)
    assert moved[:10].all()
    assert torch.cdist(q.codebook[:10].double(), x.double()).min(1).values.max() < 1e-6
    assert float(q.cluster_size[:10].min()) > 0


def test_eval_mode_learns_nothing() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(32, 4).eval()
    state = {k: v.clone() for k, v in q.state_dict().items()}
    q(torch.randn(100, 4))
    assert all(torch.equal(state[k], v) for k, v in q.state_dict().items())


def test_vq_neighbours_equal_brute_force() -> None:
    torch.manual_seed(0)
    q = VectorQuantizer(300, 6, kmeans_init=False)
    idx = torch.tensor([[0, 5, 5], [299, 17, 0]])
    nb = q.neighbours(idx, 4)
    assert nb.shape == (2, 3, 4)
    d = torch.cdist(q.codebook.double(), q.codebook.double())
    d.fill_diagonal_(float("inf"))
    ref = d.topk(4, largest=False).indices
    assert torch.equal(nb, ref[idx])
