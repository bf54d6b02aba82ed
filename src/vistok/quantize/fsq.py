"""Finite scalar quantization (FSQ, Mentzer et al. 2023): round each bounded channel.

Channel i (of ``len(levels)``) is squashed with ``tanh`` to ``L_i`` integer levels, rounded
(straight-through) and rescaled to ``[-1, 1]``: codes are ``(d_i - h_i) / h_i`` with digit
``d_i`` in ``[0, L_i)`` and ``h_i = L_i // 2`` (for even ``L_i`` the top code is
``1 - 1/h_i``). The index is the mixed-radix number of the digits, the first channel least
significant -- the same convention as vector-quantize-pytorch's ``FSQ``, so both give the
same indices for the same codes. No codebook, no loss; index <-> code is an exact bijection.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from vistok.quantize import _fsq_native
from vistok.quantize._grid import digits_to_index, fsq_neighbours, index_to_digits, mixed_radix_basis
from vistok.quantize.base import Quantizer, QuantizerOutput
from vistok.registry import QUANTIZERS

__all__ = ["FSQ"]

_EPS = 1e-3  # keeps the outer levels strictly inside tanh's range
_FOLD = 256  # rows folded into one, so per-channel constants broadcast along a long contiguous row


class _FSQRound(torch.autograd.Function):
    """Bound, round and rescale in one autograd node (the FSQ hot path).

    Textbook forward: ``b = tanh(z + shift) * half_l - offset``, ``r = round(b)``,
    ``q = r / half_width``; backward (straight-through round): ``dq/dz = (1 - t^2) half_l /
    half_width``. Computed as ``b = A sigmoid(2 (z + shift)) - B`` with ``A = 2 half_l`` and
    ``B = half_l + offset`` (``torch.tanh`` is ~10x slower than ``sigmoid`` on CPU) and
    ``1 - t^2 = 4 s (1 - s)``. The fast ``b`` is within ``margin`` of the textbook one, so
    the values that close to a rounding boundary ``k + 1/2`` are recomputed with
    ``torch.tanh``: the digits are bit-identical to the textbook formula. One whole-tensor
    ``aminmax`` finds whether there are any (a per-row reduction costs ~14x more); with
    ~1e-5 of values near a boundary, more than half of the 16k-token batches have one or two.

    Inputs are ``[R, F]`` rows of ``F = fold * d`` channels with constants tiled to ``[F]``.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: torch.autograd.function.FunctionCtx,
        z: Tensor,
        consts: dict[str, Tensor],
        margin: float,
    ) -> tuple[Tensor, Tensor]:
        s = torch.add(consts["shift2"], z, alpha=2.0).sigmoid_()  # sigmoid(2 (z + shift))
        b = torch.addcmul(consts["neg_b"], s, consts["a"])
        r = torch.round(b)
        frac = b.sub_(r)  # b - r in [-1/2, 1/2]
        lo, hi = torch.aminmax(frac)  # one vectorized pass over the whole tensor
        tie = 0.5 - margin
        if float(hi) > tie or float(lo) < -tie:  # some value is near a rounding boundary
            rows, cols = (frac.abs_() > tie).nonzero().unbind(1)
            exact = torch.tanh(z[rows, cols] + consts["shift"][cols]) * consts["half_l"][cols]
            r[rows, cols] = torch.round(exact - consts["offset"][cols])
        ctx.save_for_backward(s, consts["deriv"])
        ctx.mark_non_differentiable(r)
        ctx.set_materialize_grads(False)  # no zero gradient tensor for r
        return torch.mul(r, consts["inv_hw"], out=frac), r  # frac's memory is free again: reuse it

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_q: Tensor, grad_r: Tensor) -> tuple:  # type: ignore[override]
        if grad_q is None:
            return None, None, None
        s, deriv = ctx.saved_tensors  # type: ignore[attr-defined]
        # grad_q s (1 - s) in one fused pass, times 4 half_l / hw
        grad = torch.ops.aten.sigmoid_backward(grad_q, s).mul_(deriv)
        return grad, None, None


@QUANTIZERS.register(
    "fsq", doc="Finite scalar quantization: per-channel rounding to ``levels`` (no codebook, no loss)."
)
class FSQ(Quantizer):
    """Finite scalar quantizer over ``len(levels)`` channels.

    Args:
        levels: number of levels per code channel, each ``>= 2`` (e.g. ``[8, 5, 5, 5]``).
        dim: input channels; ``None`` means ``len(levels)`` (no projection).

    Indices are long ``[...]`` in ``[0, prod(levels))``; ``bits_per_index = log2(prod(levels))``.
    """

    def __init__(self, levels: tuple[int, ...] = (8, 5, 5, 5), dim: int | None = None) -> None:
        levels = list(levels)
        if not levels or any(not isinstance(n, int) or n < 2 for n in levels):
            raise ValueError(f"fsq: every level must be an integer >= 2, got levels={levels}")
        super().__init__(dim if dim is not None else len(levels), len(levels))
        self.levels = levels
        self.codebook_size = math.prod(levels)
        self.bits_per_index = math.log2(self.codebook_size)
        self.register_buffer("_levels", torch.tensor(levels), persistent=False)
        self.register_buffer("_basis", torch.tensor(mixed_radix_basis(levels)), persistent=False)
        self._const_cache: dict[tuple[int, torch.device], dict[str, Tensor]] = {}
        self._native_cache: dict[tuple[str, torch.device], tuple[Tensor, Tensor]] = {}
        # Bound on |fast b - textbook b|: measured <= 3.6e-7 * half_l (fp32 rounding of values
        # up to ~half_l, sigmoid vs tanh); ~3x safety.
        self._margin = 1e-6 * (1.0 + float(self._consts(1, torch.device("cpu"))["half_l"].max()))

    @property
    def index_factors(self) -> list[int]:
        """The levels: digit ``i`` of an index is channel ``i``'s level (first least significant)."""
        return list(self.levels)

    def _consts(self, fold: int, device: torch.device) -> dict[str, Tensor]:
        """Float32 constants, tiled ``fold`` times for the fused path, cached per device.

        Built from ``self.levels`` rather than stored as buffers, so casting the module
        (``.half()``) cannot degrade them. ``shift``/``half_l``/``offset`` are the textbook
        bound's constants: ``b = tanh(z + shift) * half_l - offset``.
        """
        key = (fold, device)
        if key not in self._const_cache:
            lv = torch.tensor(self.levels, dtype=torch.float32)
            half_l = (lv - 1) * (1 + _EPS) / 2
            offset = torch.where(lv % 2 == 0, 0.5, 0.0)
            shift = torch.atanh(offset / half_l)
            hw = torch.div(lv, 2, rounding_mode="floor")  # half width: codes are (d - hw) / hw
            raw = {
                "shift": shift,
                "half_l": half_l,
                "offset": offset,
                "shift2": 2 * shift,
                "a": 2 * half_l,
                "neg_b": -(half_l + offset),
                "inv_hw": 1.0 / hw,
                "deriv": 4 * half_l / hw,
            }
            consts = {k: v.repeat(fold).to(device) for k, v in raw.items()}
            basis = torch.tensor(mixed_radix_basis(self.levels), dtype=torch.float32)
            consts["basis"] = basis.to(device)
            consts["index_offset"] = (hw * basis).sum().to(device)
            consts["hw"] = hw.to(device)
            self._const_cache[key] = consts
        return self._const_cache[key]

    def bound(self, z: Tensor) -> Tensor:
        """Squash code-space ``z`` ``[..., d]`` to ``(-L/2, L/2)`` so rounding gives L levels."""
        c = self._consts(1, z.device)
        return torch.tanh(z + c["shift"]) * c["half_l"] - c["offset"]

    def _forward(self, x: Tensor) -> QuantizerOutput:
        z = self.project_in(x) if self.dim != self.code_dim else x
        d = len(self.levels)
        flat = z.reshape(-1, d)
        lib = _fsq_native.usable(flat, self.codebook_size)
        if lib is not None:  # CPU: one C pass, same digits (vistok.quantize._fsq_native)
            packed, basis = self._native_consts(lib, flat.device)
            exact = self._consts(1, flat.device)
            q, indices = _fsq_native.fsq_native(flat, lib, packed, basis, exact, 0.5 - self._margin)
            return self._output(x, z, q, indices)
        fold = math.gcd(flat.shape[0], _FOLD) or 1
        consts = self._consts(fold, flat.device)
        q, rounded = _FSQRound.apply(flat.reshape(-1, fold * d), consts, self._margin)
        q, rounded = q.reshape(flat.shape), rounded.reshape(flat.shape)
        if self.codebook_size < 1 << 24:  # float32 holds the index exactly: one matrix-vector product
            indices = torch.addmv(consts["index_offset"], rounded, consts["basis"]).long()
        else:
            indices = digits_to_index((rounded + consts["hw"]).long(), self._basis)
        return self._output(x, z, q, indices)

    def _output(self, x: Tensor, z: Tensor, q: Tensor, indices: Tensor) -> QuantizerOutput:
        """Codes ``[N, d]`` and indices ``[N]`` back to the input's shape and space."""
        indices = indices.reshape(z.shape[:-1])
        loss = torch.zeros((), device=x.device)
        out = q.reshape(z.shape)
        out = self.project_out(out) if self.dim != self.code_dim else out
        return QuantizerOutput(out, indices, loss, self.usage(indices))

    def _native_consts(self, lib: object, device: torch.device) -> tuple[Tensor, Tensor]:
        """The kernel's packed float32 ``[6, W * d]`` constants and long ``[d]`` basis, cached."""
        key = ("native", device)
        if key not in self._native_cache:
            w = lib.vistok_fsq_tokens_per_block()  # type: ignore[attr-defined]
            c = self._consts(w, device)
            hw = self._consts(1, device)["hw"].repeat(w)
            packed = torch.stack([c["shift2"], c["a"], c["neg_b"], c["inv_hw"], hw, c["deriv"]]).contiguous()
            basis = torch.tensor(mixed_radix_basis(self.levels), dtype=torch.long, device=device)
            self._native_cache[key] = (packed, basis)
        return self._native_cache[key]

    def embed(self, indices: Tensor) -> Tensor:
        """Codes ``[..., d]`` in ``[-1, 1]`` of long ``indices`` ``[...]``."""
        hw = self._consts(1, indices.device)["hw"]
        digits = index_to_digits(indices.long(), self._levels, self._basis)
        return (digits.float() - hw) / hw

    def index_of(self, codes: Tensor) -> Tensor:
        """Inverse of :meth:`embed`: code-space grid points ``[..., d]`` -> long ``[...]``."""
        hw = self._consts(1, codes.device)["hw"]
        digits = torch.round(codes.float() * hw + hw).long()
        return digits_to_index(digits, self._basis)

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The ``k`` nearest other FSQ codes (L2 in ``[-1, 1]`` code space); ``[...] -> [..., k]``.

        Found on the grid without enumerating the codebook (see ``vistok.quantize._grid``).
        """
        return fsq_neighbours(indices, list(self.levels), k, generator=generator)

    def extra_repr(self) -> str:
        return f"levels={self.levels}, dim={self.dim}"


# Level choices recommended in the FSQ paper for each codebook size.
QUANTIZERS.register_variant("fsq-256", "fsq", levels=[8, 6, 5], doc="FSQ with 2^8 codes")
QUANTIZERS.register_variant("fsq-1k", "fsq", levels=[8, 5, 5, 5], doc="FSQ with ~2^10 codes")
QUANTIZERS.register_variant("fsq-4k", "fsq", levels=[7, 5, 5, 5, 5], doc="FSQ with ~2^12 codes")
QUANTIZERS.register_variant("fsq-16k", "fsq", levels=[8, 8, 8, 6, 5], doc="FSQ with ~2^14 codes")
QUANTIZERS.register_variant("fsq-64k", "fsq", levels=[8, 8, 8, 5, 5, 5], doc="FSQ with ~2^16 codes")
