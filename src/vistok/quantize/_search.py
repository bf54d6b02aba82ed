"""Nearest-code search in cache-sized chunks, top-k codes, and k-means++ / Lloyd.

Scores, not distances: for euclidean codes ``argmin ||x - c||^2 = argmax (x.c - ||c||^2/2)``
(one ``addmm`` per chunk); for l2-normalized (cosine) codes the bias is zero. The search
walks ``rows x codes`` chunks of at most ``chunk_size`` scores (2 MiB by default, about an
L2 cache), so a 2^18 codebook never materializes an ``N x K`` matrix. Inside a chunk the
argmax is two-level: ``amax`` over blocks of 256 codes (a fast vectorized reduction),
``argmax`` over the block maxima, then ``argmax`` inside the winning block only -- an
index-tracking ``max`` over the whole chunk is ~10x slower than ``amax`` on CPUs. Ties go
to the lowest index, as with a brute-force ``argmin``.

On CPU, float32 inputs go to a fused C kernel when one can be built
(``_search_kernel.c`` through :mod:`vistok.utils.native`): the scores live in registers
and never reach memory, which the matmul-then-argmax path (storing and re-reading every
score, with a GEMM whose inner dimension is only D) cannot avoid: 46-50 % of ``torch.mm``'s
GFLOP/s at 16384 x 16384 x 8 on 2 cores, against 9-24 % for the torch path
(benchmarks/quantizers.py). Both paths give the exact nearest
code, ties to the lowest index; ``VISTOK_NATIVE=0`` or ``backend="torch"`` selects the torch one.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import torch
from torch import Tensor

from vistok.utils import native

__all__ = ["code_neighbours", "kmeans", "nearest_code", "topk_codes"]

_MAX_CODES_PER_CHUNK = 16384
_CHUNK = 1 << 19
_MIN_ROWS = 32
_KERNEL = Path(__file__).with_name("_search_kernel.c")
_PARALLEL_FLOPS = 1 << 22  # below this, one thread: a pool hand-off costs more than it saves
_BACKENDS = ("auto", "native", "torch")


_I64, _PTR = ctypes.c_int64, ctypes.c_void_p
_SIGNATURES = {"vistok_nearest_code": ([_PTR, _I64, _PTR, _PTR, _I64, _I64, _I64, _PTR], ctypes.c_int)}


def _kernel() -> ctypes.CDLL | None:
    """The compiled search kernel with its ctypes signature, or ``None`` (no compiler / disabled)."""
    return native.load(_KERNEL, _SIGNATURES)


def _nearest_code_native(lib: ctypes.CDLL, x: Tensor, codebook: Tensor, cosine: bool) -> Tensor:
    """The fused kernel: rows padded to its row block, codes to its lanes (bias ``-inf``)."""
    n, d = x.shape
    rows, lanes = lib.vistok_nearest_code_rows(), lib.vistok_nearest_code_lanes()
    kp = math.ceil(codebook.shape[0] / lanes) * lanes
    cb, bias = _scores_setup(codebook, cosine, kp)
    ct, bias = cb.t().contiguous(), bias.contiguous()
    n_pad = math.ceil(n / rows) * rows
    xs = x.contiguous() if n_pad == n else torch.cat([x, x[-1:].expand(n_pad - n, d)])
    out = torch.empty(n_pad, dtype=torch.long)
    args = (xs.data_ptr(), d, ct.data_ptr(), bias.data_ptr(), kp)
    threads = torch.get_num_threads() if 2 * n * kp * d >= _PARALLEL_FLOPS else 1
    native.parallel_rows(
        lambda lo, hi: lib.vistok_nearest_code(*args, lo, hi, out.data_ptr()),
        n_pad,
        threads=threads,
        align=rows,
    )
    return out[:n]


def _scores_setup(codebook: Tensor, cosine: bool, pad_to: int) -> tuple[Tensor, Tensor]:
    """Codebook ``[K', D]`` and score bias ``[K']``, padded with ``-inf`` codes."""
    k, d = codebook.shape
    bias = codebook.new_zeros(k) if cosine else -0.5 * codebook.pow(2).sum(1)
    if pad_to > k:
        codebook = torch.cat([codebook, codebook.new_zeros(pad_to - k, d)])
        bias = torch.cat([bias, bias.new_full((pad_to - k,), -math.inf)])
    return codebook.contiguous(), bias


class _ChunkArgmax:
    """Per-row max over the ``[r, kc]`` scores of one chunk, with preallocated buffers.

    ``scores`` (``r * kc`` floats, ``<= chunk_size``) is the only large buffer, rows x codes:
    codes run along the matmul's vector lanes, so equal codes get bit-equal scores wherever
    they sit (in the codes x rows layout MKL's ``C x^T`` was ~1.5x faster but rounded equal
    codes differently by position, breaking lowest-index ties). All views are made once, so
    a chunk costs its matmul plus six small ops (the loop is dominated by dispatch otherwise).

    Two-level argmax: ``amax`` over blocks of ``block`` codes (a vectorized reduction; an
    index-tracking ``max`` over all ``kc`` codes is ~10x slower), ``argmax`` of the block
    maxima (the first block holding the row's max), a gather of each row's winning block
    and an index-tracking ``max`` over its ``block`` codes (the first position): the lowest
    index among equal scores, as a brute-force argmax.
    """

    def __init__(self, x: Tensor, kc: int, r: int, block: int) -> None:
        nb = kc // block
        self.nb, self.r, self.block = nb, r, block
        self.scores = x.new_empty(r, kc)
        self.block_max = x.new_empty(r, nb)
        self.winners = x.new_empty(r, block)
        self.blk = torch.empty(r, dtype=torch.long, device=x.device)
        self.flat = torch.empty_like(self.blk)
        self.within = torch.empty_like(self.blk)
        self.row_base = torch.arange(r, device=x.device) * nb  # row i's first block in [r * nb]

    def __call__(self, xr: Tensor, codes_t: Tensor, val: Tensor, idx: Tensor) -> None:
        """Scores ``xr [r, D'] @ codes_t [D', kc]``; their row maxima into ``val``, ``idx`` ``[r]``."""
        torch.mm(xr, codes_t, out=self.scores)
        blocks = self.scores.view(self.r * self.nb, self.block)
        torch.amax(blocks.view(self.r, self.nb, self.block), 2, out=self.block_max)
        torch.argmax(self.block_max, 1, out=self.blk)
        torch.add(self.row_base, self.blk, out=self.flat)
        torch.index_select(blocks, 0, self.flat, out=self.winners)
        torch.max(self.winners, 1, out=(val, self.within))
        torch.add(self.within, self.blk, alpha=self.block, out=idx)


def _block_size(kc: int) -> int:
    """Codes per block of the two-level argmax: about ``sqrt(kc)`` (a power of two), which
    balances the two index-tracking steps (``kc / block`` block maxima, ``block`` winners);
    the whole chunk for small ones."""
    return 1 << math.ceil(math.log2(kc) / 2) if kc >= 64 else kc


@torch.no_grad()
def nearest_code(
    x: Tensor,
    codebook: Tensor,
    *,
    cosine: bool = False,
    chunk_size: int = _CHUNK,
    backend: str = "auto",
) -> Tensor:
    """Index of the nearest code of each row, without an ``N x K`` distance matrix.

    Args:
        x: ``[N, D]`` float32.
        codebook: ``[K, D]`` float32 (both l2-normalized when ``cosine``).
        cosine: maximize ``x.c`` instead of minimizing ``||x - c||``.
        chunk_size: most scores held at once by the torch path (rows x codes of a chunk).
        backend: ``"auto"`` (the C kernel for float32 CPU tensors when it builds, else
            torch), ``"native"`` (the C kernel; raises when unavailable) or ``"torch"``.

    Returns:
        long ``[N]`` in ``[0, K)``; equal to ``cdist(x, codebook).argmin(1)`` (ties: lowest).
    """
    if backend not in _BACKENDS:
        raise ValueError(f"nearest_code: backend must be one of {_BACKENDS}, got {backend!r}")
    fits = (
        x.device.type == codebook.device.type == "cpu"
        and x.dtype == codebook.dtype == torch.float32
        and x.shape[0] > 0
    )
    if backend != "torch" and fits:
        lib = _kernel()
        if lib is not None:
            return _nearest_code_native(lib, x, codebook, cosine)
    if backend == "native":
        why = "float32 CPU tensors only" if not fits else "the kernel could not be built (see the warning)"
        raise RuntimeError(f"nearest_code: no native backend here: {why}")
    n, k = x.shape[0], codebook.shape[0]
    # at least _MIN_ROWS rows per chunk (the block reduction over [.., block, rows] is slow on
    # narrower rows), then as many codes as fit
    kc = max(1, min(k, _MAX_CODES_PER_CHUNK, chunk_size // min(n, _MIN_ROWS)))
    block = _block_size(kc)
    kc = math.ceil(kc / block) * block
    n_chunks = math.ceil(k / kc)
    cb, bias = _scores_setup(codebook, cosine, n_chunks * kc)
    if cosine and n_chunks * kc == k:  # no bias: scores = x C^T
        xs = x
    else:  # bias folded into the matmul, [x, 1] [C, b]^T: no broadcast copy per chunk
        cb = torch.cat([cb, bias[:, None]], 1)
        xs = torch.cat([x, x.new_ones(n, 1)], 1)
    ct = cb.t().contiguous()
    code_chunks = [ct[:, lo : lo + kc] for lo in range(0, n_chunks * kc, kc)]
    rows = max(1, min(n, chunk_size // kc))
    out = torch.empty(n, dtype=torch.long, device=x.device)
    val = x.new_empty(n_chunks, rows)  # best score and index of each code chunk, per row
    idx = torch.empty(n_chunks, rows, dtype=torch.long, device=x.device)
    step = _ChunkArgmax(x, kc, rows, block)
    for s in range(0, n, rows):
        if s + rows > n:  # last, narrower row chunk
            rows = n - s
            step, val, idx = _ChunkArgmax(x, kc, rows, block), val[:, :rows], idx[:, :rows]
        xr = xs[s : s + rows]
        if n_chunks == 1:
            step(xr, code_chunks[0], val[0], out[s : s + rows])
            continue
        for c, codes_t in enumerate(code_chunks):
            step(xr, codes_t, val[c], idx[c])
        best = val.argmax(0, keepdim=True)  # first chunk holding the max: ties stay lowest
        torch.add(idx.gather(0, best)[0], best[0], alpha=kc, out=out[s : s + rows])
    return out


@torch.no_grad()
def topk_codes(
    x: Tensor,
    codebook: Tensor,
    k: int,
    *,
    cosine: bool = False,
    exclude: Tensor | None = None,
    chunk_size: int = 1 << 19,
) -> Tensor:
    """Indices of the ``k`` nearest codes of each row, nearest first.

    Args:
        x: ``[N, D]``; codebook: ``[K, D]`` (normalized when ``cosine``).
        k: neighbours per row (``<= K``, or ``<= K - 1`` with ``exclude``).
        exclude: optional long ``[N]``: a code index to skip for each row (itself).

    Returns:
        long ``[N, k]``.
    """
    n, kk = x.shape[0], codebook.shape[0]
    kc = max(k + 1, min(kk, chunk_size, _MAX_CODES_PER_CHUNK))
    n_chunks = math.ceil(kk / kc)
    cb, bias = _scores_setup(codebook, cosine, n_chunks * kc)
    ct = cb.t().contiguous()
    rows = max(1, chunk_size // kc)
    out = torch.empty(n, k, dtype=torch.long, device=x.device)
    for s in range(0, n, rows):
        xr = x[s : s + rows]
        best_v = best_i = None
        for c in range(n_chunks):
            lo = c * kc
            scores = torch.addmm(bias[lo : lo + kc], xr, ct[:, lo : lo + kc])
            if exclude is not None:
                ex = exclude[s : s + rows] - lo
                hit = (ex >= 0) & (ex < kc)
                scores[hit.nonzero().squeeze(1), ex[hit]] = -math.inf
            v, i = scores.topk(min(k, kc), dim=1)
            i = i + lo
            if best_v is not None:
                v, j = torch.cat([best_v, v], 1).topk(k, dim=1)
                i = torch.cat([best_i, i], 1).gather(1, j)
            best_v, best_i = v, i
        out[s : s + xr.shape[0]] = best_i
    return out


def _kmeans_pp_seeds(x: Tensor, k: int, generator: torch.Generator | None) -> Tensor:
    """Row indices of ``k`` distinct seeds by D^2 sampling (k-means++), ``k < N``.

    Exact k-means++ draws one seed per step (k sequential steps). For large ``k`` this draws
    ``ceil(k / 512)`` seeds per step from the same D^2 distribution (repeats dropped) before
    updating the distances -- batched k-means++: about 512 steps, each one ``[N, D] x [D, b]``
    matmul; the Lloyd iterations that follow smooth the difference.
    """
    n = x.shape[0]
    per_step = math.ceil(k / 512)
    sq = x.pow(2).sum(1)
    chosen = torch.empty(k, dtype=torch.long, device=x.device)
    chosen[0] = torch.randint(n, (1,), generator=generator).item()
    d2 = (x - x[chosen[0]]).pow(2).sum(1)
    taken = torch.zeros(n, dtype=torch.bool, device=x.device)
    taken[chosen[0]] = True
    i = 1
    while i < k:
        b = min(per_step, k - i)
        weights = d2.masked_fill(taken, 0.0)
        if float(weights.sum()) > 0:  # with replacement is ~40x faster; drop repeats
            idx = torch.multinomial(weights, b, replacement=True, generator=generator).unique()
        else:  # duplicates everywhere: fill with untaken samples uniformly
            idx = (~taken).nonzero().squeeze(1)
            idx = idx[torch.randperm(idx.numel(), generator=generator)[:b]]
        chosen[i : i + idx.numel()] = idx
        taken[idx] = True
        c = x[idx]
        dist = (sq[:, None] - 2 * (x @ c.t()) + sq[idx][None, :]).amin(1).clamp_min_(0.0)
        torch.minimum(d2, dist, out=d2)
        i += idx.numel()
    return chosen


@torch.no_grad()
def kmeans(
    x: Tensor,
    k: int,
    *,
    iters: int = 10,
    cosine: bool = False,
    chunk_size: int = 1 << 19,
    generator: torch.Generator | None = None,
) -> Tensor:
    """k-means++ seeding followed by ``iters`` Lloyd steps.

    Args:
        x: ``[N, D]`` float32 samples (normalized when ``cosine``).
        k: number of centers.
        cosine: spherical k-means (centers re-normalized after each step).

    Returns:
        ``[k, D]`` centers. With ``N <= k`` the centers are the samples in random order,
        the remainder samples plus small noise (k-means on fewer points than centers is
        undefined); empty clusters keep their previous center.
    """
    n, _d = x.shape
    perm = torch.randperm(n, generator=generator)
    if n <= k:
        extra = x[torch.randint(n, (k - n,), generator=generator)]
        noise = torch.randn(extra.shape, generator=generator) * (x.std(0, keepdim=True) * 0.01 + 1e-6)
        centers = torch.cat([x[perm], extra + noise])
        return torch.nn.functional.normalize(centers, dim=1) if cosine else centers
    centers = x[_kmeans_pp_seeds(x, k, generator)].clone()
    for _ in range(iters):
        assign = nearest_code(x, centers, cosine=cosine, chunk_size=chunk_size)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centers).index_add_(0, assign, x)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None]
        if cosine:
            centers = torch.nn.functional.normalize(centers, dim=1)
    return centers


def code_neighbours(
    codebook: Tensor, ids: Tensor, k: int, *, cosine: bool = False, who: str = "", chunk_size: int = 1 << 19
) -> Tensor:
    """The ``k`` nearest *other* codes of each id, nearest first: long ``[...]`` -> ``[..., k]``.

    What every codebook's ``neighbours`` is (the robustness suite and latent perturbation read
    it): the distinct ids are searched once with :func:`topk_codes`, each excluding itself.

    Args:
        codebook: ``[K, D]`` codes as the quantizer searches them (normalized when ``cosine``).
        ids: long ``[...]`` indices into ``codebook``.
        cosine: rank by inner product of the (unit) codes instead of squared L2.
        who: prefix of the error message (a tokenizer's spec).

    Raises:
        ValueError: unless ``1 <= k < K``.
    """
    kk = codebook.shape[0]
    if not 1 <= k < kk:
        raise ValueError(f"{who + ': ' if who else ''}k must be in [1, {kk - 1}], got {k}")
    cb = codebook.detach().float()
    uniq, inverse = torch.unique(ids.reshape(-1).long(), return_inverse=True)
    nb = topk_codes(cb[uniq], cb, k, cosine=cosine, exclude=uniq, chunk_size=chunk_size)
    return nb[inverse].reshape(*ids.shape, k)
