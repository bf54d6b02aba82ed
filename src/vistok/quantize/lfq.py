"""Lookup-free quantization (LFQ, MAGVIT-v2): one bit per channel, ``sign`` of each value.

Codes are ``{-s, +s}^bits`` (``s = codebook_scale``); the index is ``sum_i [z_i > 0] 2^i``
(first channel least significant). The entropy loss asks each token's soft assignment to
be confident (low per-sample entropy) and the batch as a whole to spread over the
codebook (high codebook entropy).

Entropy without enumerating the codebook. The soft assignment of a token is
``p(c | z) ∝ exp(-||z/s - c/s||^2 / tau)`` over all ``2^bits`` codes, which factorizes
over bits: ``p(bit_i = 1 | z) = sigmoid(a_i)`` with ``a_i = 4 z_i / (s tau)``. Hence

* the per-sample entropy is exactly ``sum_i H(sigmoid(a_i))`` -- O(tokens x bits);
* the codebook entropy ``H(mean_batch p(c | z))`` does not factorize. It is computed
  exactly within groups of at most ``group_bits`` bits (O(tokens x 2^group_bits) each) and
  summed over groups. By subadditivity of entropy this sum is an *upper bound* of the
  full codebook entropy, equal to it when ``bits <= group_bits``; it ignores dependence
  between groups (a batch that varies only jointly across groups is over-credited).

Both entropies are in nats, computed on this rank's batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from vistok.quantize._grid import bit_flip_neighbours, digits_to_index, index_to_digits
from vistok.quantize.base import Quantizer, QuantizerOutput, check_positive, straight_through
from vistok.registry import QUANTIZERS

__all__ = ["LFQ", "binary_entropy_terms"]


def _group_sizes(bits: int, group_bits: int) -> list[int]:
    """Split ``bits`` into ``ceil(bits / group_bits)`` groups of near-equal size."""
    n = math.ceil(bits / group_bits)
    base, extra = divmod(bits, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _code_bits(g: int, device: torch.device, dtype: torch.dtype) -> Tensor:
    """``[g, 2^g]`` float: bit ``j`` of code ``c`` (code ``c`` = sum_j bit_j 2^j)."""
    codes = torch.arange(1 << g, device=device)
    return ((codes.unsqueeze(0) >> torch.arange(g, device=device).unsqueeze(1)) & 1).to(dtype)


class _GroupMeanProbs(torch.autograd.Function):
    """Batch-mean joint distribution of ``g`` independent bits, in row chunks.

    ``log p[n, c] = sum_j log sigmoid(-a_nj) + sum_j bit_j(c) a_nj`` (``log p1 - log p0 = a``),
    returns ``mean_n p[n, :]`` of shape ``[2^g]``. Never holds more than a chunk of
    ``p`` (~1 MiB): the backward recomputes it, using
    ``d log p[n, c] / d a_nj = bit_j(c) - sigmoid(a_nj)``. Log-probabilities are clamped at
    -80 (``exp(-80)`` is negligible in a mean; it keeps ``exp`` out of the slow denormal range).
    """

    @staticmethod
    def _chunk_probs(a: Tensor, bits: Tensor) -> Tensor:
        log_p = torch.addmm(F.logsigmoid(-a).sum(1, keepdim=True), a, bits)
        return log_p.clamp_(min=-80.0).exp_()

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, a: Tensor) -> Tensor:  # type: ignore[override]
        n, g = a.shape
        bits = _code_bits(g, a.device, a.dtype)
        rows = max(1, (1 << 18) >> g)
        total = a.new_zeros(1 << g)
        for s in range(0, n, rows):
            total += _GroupMeanProbs._chunk_probs(a[s : s + rows], bits).sum(0)
        ctx.save_for_backward(a)
        return total / n

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_avg: Tensor) -> Tensor:  # type: ignore[override]
        (a,) = ctx.saved_tensors  # type: ignore[attr-defined]
        n, g = a.shape
        bits = _code_bits(g, a.device, a.dtype)
        rows = max(1, (1 << 18) >> g)
        grad = torch.empty_like(a)
        for s in range(0, n, rows):
            ar = a[s : s + rows]
            w = _GroupMeanProbs._chunk_probs(ar, bits).mul_(grad_avg)  # [r, 2^g]
            grad[s : s + rows] = (w @ bits.t()).sub_(torch.sigmoid(ar) * w.sum(1, keepdim=True))
        return grad / n


def binary_entropy_terms(logits: Tensor, group_bits: int) -> tuple[Tensor, Tensor]:
    """Per-sample and (grouped) codebook entropy of factorized binary assignments.

    Args:
        logits: ``[N, bits]`` float32, ``a_i`` with ``p(bit_i = 1) = sigmoid(a_i)``.
        group_bits: largest group whose ``2^group_bits`` joint codes are enumerated.

    Returns:
        ``(sample_entropy, codebook_entropy)`` float32 scalars in nats: the mean over tokens
        of the exact per-token entropy, and the sum over bit groups of the entropy of the
        batch-averaged group distribution (an upper bound of the full codebook entropy;
        exact for a single group). Both lie in ``[0, bits * ln 2]``. Memory: O(N * bits)
        plus a ~1 MiB chunk; time O(N * 2^group_bits) per group.
    """
    log_p1, log_p0 = F.logsigmoid(logits), F.logsigmoid(-logits)
    sample = -(log_p1.exp() * log_p1 + log_p0.exp() * log_p0).sum(-1).mean()
    codebook = logits.new_zeros(())
    start = 0
    for g in _group_sizes(logits.shape[-1], group_bits):
        avg = _GroupMeanProbs.apply(logits[:, start : start + g].contiguous())
        start += g
        codebook = codebook - (avg * torch.log(avg.clamp_min(1e-30))).sum()
    return sample, codebook


@QUANTIZERS.register(
    "lfq", doc="Lookup-free quantization: sign of each of ``bits`` channels, with the entropy loss."
)
class LFQ(Quantizer):
    """Lookup-free (binary) quantizer with ``2^bits`` codes.

    Args:
        bits: code channels = bits per index (``>= 1``); ``codebook_size = 2^bits``.
        dim: input channels; ``None`` means ``bits`` (no projection).
        entropy_weight: weight of ``sample_entropy - diversity_weight * codebook_entropy``.
        diversity_weight: weight of the codebook entropy inside the entropy term.
        commitment_weight: weight of ``mean((z - sg(q))^2)``.
        temperature: ``tau`` of the soft assignment (smaller = sharper).
        group_bits: bits per group for the codebook entropy (memory ``N * 2^group_bits``).
        codebook_scale: ``s``, the magnitude of each code channel.
    """

    normalize_input = False

    def __init__(
        self,
        bits: int = 16,
        dim: int | None = None,
        *,
        entropy_weight: float = 0.1,
        diversity_weight: float = 1.0,
        commitment_weight: float = 0.25,
        temperature: float = 0.1,
        group_bits: int = 9,
        codebook_scale: float = 1.0,
    ) -> None:
        check_positive("bits", bits)
        if bits > 62:
            raise ValueError(f"bits must be <= 62 so indices fit in int64, got {bits}")
        check_positive("group_bits", group_bits)
        if group_bits > 16:
            raise ValueError(f"group_bits must be <= 16 (memory grows as 2^group_bits), got {group_bits}")
        if temperature <= 0 or codebook_scale <= 0:
            raise ValueError(
                f"temperature and codebook_scale must be > 0, got {temperature}, {codebook_scale}"
            )
        super().__init__(dim if dim is not None else bits, bits)
        self.bits = bits
        self.codebook_size = 1 << bits
        self.bits_per_index = float(bits)
        self.entropy_weight = entropy_weight
        self.diversity_weight = diversity_weight
        self.commitment_weight = commitment_weight
        self.temperature = temperature
        self.group_bits = group_bits
        self.scale = self._code_scale(codebook_scale)
        self.register_buffer("_basis", 2 ** torch.arange(bits), persistent=False)
        self.register_buffer("_levels", torch.full((bits,), 2), persistent=False)

    @property
    def index_factors(self) -> list[int]:
        """``[2] * bits``: bit ``i`` of an index is the sign of channel ``i`` (first least significant)."""
        return [2] * self.bits

    def _code_scale(self, codebook_scale: float) -> float:
        return codebook_scale

    def _forward(self, x: Tensor) -> QuantizerOutput:
        z = self.project_in(x)
        if self.normalize_input:
            z = F.normalize(z, dim=-1)
        positive = z.detach() > 0
        hard = torch.where(positive, self.scale, -self.scale)
        indices = digits_to_index(positive.long(), self._basis)
        commit = F.mse_loss(z, hard)
        flat = z.reshape(-1, self.bits)
        sample_h, codebook_h = binary_entropy_terms(
            4 * flat / (self.scale * self.temperature), self.group_bits
        )
        entropy = sample_h - self.diversity_weight * codebook_h
        loss = self.commitment_weight * commit + self.entropy_weight * entropy
        stats = self.usage(indices)
        stats.update(
            commit=commit.detach(),
            entropy=entropy.detach(),
            sample_entropy=sample_h.detach(),
            codebook_entropy=codebook_h.detach(),
        )
        return QuantizerOutput(self.project_out(straight_through(z, hard)), indices, loss, stats)

    def embed(self, indices: Tensor) -> Tensor:
        """Codes ``[..., bits]`` with values ``±scale`` of long ``indices`` ``[...]``."""
        digits = index_to_digits(indices.long(), self._levels, self._basis)
        return (2 * digits.float() - 1) * self.scale

    def index_of(self, codes: Tensor) -> Tensor:
        """Inverse of :meth:`embed` (any code-space vector -> index of its sign pattern)."""
        return digits_to_index((codes > 0).long(), self._basis)

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The ``k`` nearest other codes: fewest flipped bits first; ``[...] -> [..., k]``."""
        return bit_flip_neighbours(indices, self.bits, k, generator=generator)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, dim={self.dim}, entropy_weight={self.entropy_weight}"
