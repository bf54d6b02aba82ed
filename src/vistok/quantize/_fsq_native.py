"""FSQ's CPU fast path: one C pass forward, one backward (``_fsq_kernel.c``).

The torch path (``fsq._FSQRound`` plus the index) runs about ten whole-tensor ops and as
many dispatches per step; the kernel computes the bound, the rounding, the codes, the
mixed-radix index and the tie check in one pass over ``z`` (OpenMP threads), and the
backward in one pass. Same formula and tie rule: tokens holding a value within the
kernel's error margin of a rounding boundary are recomputed here with ``torch.tanh`` (the
textbook formula), so indices and codes equal the torch path's (tested on values straddling
every boundary). Used for float32 CPU tensors in eager mode, codebooks below 2^24 codes
(the kernel sums the index in float32) and at most 64 channels, when
:mod:`vistok.utils.native` can build the kernel; ``VISTOK_NATIVE=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import torch
from torch import Tensor

from vistok.utils import native

__all__ = ["fsq_native", "kernel", "usable"]

_KERNEL = Path(__file__).with_name("_fsq_kernel.c")
_PARALLEL_ELEMENTS = 1 << 14  # below this, one thread
_FLAG_CAP = 256  # flagged tokens listed by the kernel; beyond, they are found from the per-token flags


_I64, _PTR, _INT = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
_SIGNATURES = {
    "vistok_fsq_forward": (
        [_PTR, _I64, _I64, _PTR, _PTR, ctypes.c_float, _INT, _PTR, _PTR, _PTR, _PTR, _PTR, _I64],
        _I64,
    ),
    "vistok_fsq_fix": ([_PTR, _PTR, _I64, _I64, _PTR, _PTR, _PTR, _PTR], None),
    "vistok_fsq_backward": ([_PTR, _PTR, _I64, _I64, _PTR, _INT, _PTR], _INT),
}


def kernel() -> ctypes.CDLL | None:
    """The compiled FSQ kernel with its ctypes signatures, or ``None``."""
    return native.load(_KERNEL, _SIGNATURES)


def usable(z: Tensor, codebook_size: int) -> ctypes.CDLL | None:
    """The kernel when ``z`` (``[N, d]``) can take the native path, else ``None``."""
    if z.device.type != "cpu" or z.dtype != torch.float32 or codebook_size >= 1 << 24:
        return None
    if _compiling():
        return None
    lib = kernel()
    if lib is None or z.shape[1] > lib.vistok_fsq_max_channels():
        return None
    return lib


def _compiling() -> bool:
    """Whether ``torch.compile`` is tracing (a ctypes call cannot be traced); torch >= 2.3 says."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling()) if is_compiling is not None else False


def _threads(elements: int) -> int:
    return torch.get_num_threads() if elements >= _PARALLEL_ELEMENTS else 1


def _padded(t: Tensor, rows: int) -> Tensor:
    """``t`` ``[N, d]`` contiguous, with zero rows appended up to ``rows``."""
    n = t.shape[0]
    return t.contiguous() if rows == n else torch.cat([t, t.new_zeros(rows - n, t.shape[1])])


class _FSQNative(torch.autograd.Function):
    """``(q, index) = FSQ(z)`` for ``z`` ``[N, d]``; gradient straight through the bound."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        z: Tensor,
        lib: ctypes.CDLL,
        packed: Tensor,
        basis: Tensor,
        exact: dict[str, Tensor],
        tie: float,
    ) -> tuple[Tensor, Tensor]:
        n, d = z.shape
        w = lib.vistok_fsq_tokens_per_block()
        n_pad = math.ceil(n / w) * w
        zc = _padded(z, n_pad)
        q, s = torch.empty_like(zc), torch.empty_like(zc)
        index = torch.empty(n_pad, dtype=torch.long)
        near = torch.empty(n_pad, dtype=torch.uint8)
        flags = torch.empty(_FLAG_CAP, dtype=torch.long)
        flagged = lib.vistok_fsq_forward(
            zc.data_ptr(), n_pad, d, packed.data_ptr(), basis.data_ptr(), tie, _threads(n_pad * d),
            q.data_ptr(), s.data_ptr(), index.data_ptr(), near.data_ptr(), flags.data_ptr(), _FLAG_CAP,
        )  # fmt: skip
        if flagged < 0:
            raise RuntimeError(f"fsq kernel: bad arguments (n={n_pad}, d={d})")
        if flagged:  # values within the kernel's error of a rounding boundary: the textbook b
            rows = flags[:flagged] if flagged <= _FLAG_CAP else near.nonzero().squeeze(1)
            b = torch.tanh(zc[rows] + exact["shift"]).mul_(exact["half_l"]).sub_(exact["offset"])
            lib.vistok_fsq_fix(
                b.data_ptr(), rows.data_ptr(), rows.numel(), d, packed.data_ptr(), basis.data_ptr(),
                q.data_ptr(), index.data_ptr(),
            )  # fmt: skip
        q, index = q[:n], index[:n]
        ctx.save_for_backward(s)
        ctx.lib, ctx.deriv, ctx.n = lib, packed[5], n  # type: ignore[attr-defined]
        ctx.mark_non_differentiable(index)
        ctx.set_materialize_grads(False)
        return q, index

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_q: Tensor, grad_index: Tensor) -> tuple:  # type: ignore[override]
        if grad_q is None:
            return (None,) * 6
        (s,) = ctx.saved_tensors  # type: ignore[attr-defined]
        lib, deriv, n = ctx.lib, ctx.deriv, ctx.n  # type: ignore[attr-defined]
        n_pad, d = s.shape
        g = _padded(grad_q.float(), n_pad)
        grad = torch.empty_like(s)
        rc = lib.vistok_fsq_backward(
            g.data_ptr(), s.data_ptr(), n_pad, d, deriv.data_ptr(), _threads(n_pad * d), grad.data_ptr()
        )
        if rc != 0:
            raise RuntimeError(f"fsq kernel: bad arguments (n={n_pad}, d={d})")
        return grad[:n], None, None, None, None, None


def fsq_native(
    z: Tensor, lib: ctypes.CDLL, packed: Tensor, basis: Tensor, exact: dict[str, Tensor], tie: float
) -> tuple[Tensor, Tensor]:
    """Codes ``[N, d]`` in ``[-1, 1]`` and long indices ``[N]`` of ``z`` ``[N, d]`` float32.

    Args:
        lib: the kernel (:func:`usable`).
        packed: float32 ``[6, W * d]``: ``shift2, a, nb, inv_hw, hw, deriv``, each per
            channel tiled ``W`` (the kernel's tokens per block) times.
        basis: long ``[d]``, the mixed-radix place values.
        exact: untiled float32 ``[d]`` constants ``shift, half_l, offset`` of the textbook
            bound, for the flagged tokens.
        tie: the kernel flags values with ``|b - round(b)| > tie``.
    """
    return _FSQNative.apply(z, lib, packed, basis, exact, tie)
