"""The quantizer contract: one output type, channel-last input, float32 inside.

Every quantizer is an ``nn.Module`` called as ``q(x)`` with ``x`` of shape ``[..., dim]``
(channel-last; use :func:`quantize_bchw` for ``[B, C, H, W]`` maps) and returns a
:class:`QuantizerOutput`. Subclasses implement :meth:`Quantizer._forward` on a float32
tensor; :meth:`Quantizer.forward` disables autocast, casts to float32 and casts the
quantized output back to the input dtype, so quantization never happens in bfloat16.

Spaces: the *input space* has ``dim`` channels (the model's); the *code space* has
``code_dim`` channels (where the codebook or grid lives). ``project_in``/``project_out``
are ``nn.Linear`` layers when the two differ and ``nn.Identity`` otherwise.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass, replace
from typing import ClassVar

import torch
from torch import Tensor, nn

from vistok.configurable import Configurable

__all__ = [
    "LazyStats",
    "Quantizer",
    "QuantizerOutput",
    "check_positive",
    "quantize_bchw",
    "straight_through",
    "usage_stats",
]


@dataclass
class QuantizerOutput:
    """What every quantizer returns, whatever its flags.

    Attributes:
        quantized: ``[..., dim]`` in the input's dtype, in the input space; gradients
            flow to the input (straight-through or reparameterized).
        indices: long; ``[...]`` for one index per token, ``[..., K]`` for K indices per
            token (residual stages, factorized sub-codebooks, PTQ channels), ``[B, L]`` for
            the multi-scale quantizer; ``None`` for continuous bottlenecks. Values in
            ``[0, codebook_size)``.
        loss: float32 scalar, the weighted sum of the quantizer's own losses (add it to the
            model's loss as is).
        stats: float32 scalars (detached) for logging: for discrete quantizers always
            ``perplexity`` and ``usage`` (fraction of codes used in this batch on this
            rank), plus each loss term
            unweighted (``commit``, ``codebook``, ``entropy``, ``kl``...) and, for learned
            codebooks, ``dead_codes`` (count of codes below the restart threshold). The
            continuous Gaussian bottleneck reports ``kl`` and ``std`` only. ``perplexity``
            and ``usage`` are computed when first read (:class:`LazyStats`), so a training
            step that does not log them does not pay for the histogram.
    """

    quantized: Tensor
    indices: Tensor | None
    loss: Tensor
    stats: MutableMapping[str, Tensor]


class LazyStats(MutableMapping[str, Tensor]):
    """A stats mapping whose first keys are computed on first read, the rest set eagerly.

    Reading any lazy key (or printing the mapping) runs ``compute`` once; listing the keys
    does not. The code usage of a batch costs a histogram over the codebook (~0.15 ms for
    16k tokens, as much as the whole FSQ forward), which a step that logs every N steps
    should not pay on the others. ``compute`` must only read tensors that are not modified
    afterwards (the batch's indices).

    Args:
        compute: returns the lazy entries, ``{key: float32 scalar}``.
        keys: the keys ``compute`` returns, in order.
    """

    def __init__(self, compute: Callable[[], dict[str, Tensor]], keys: tuple[str, ...]) -> None:
        self._compute: Callable[[], dict[str, Tensor]] | None = compute
        self._lazy = keys
        self._data: dict[str, Tensor] = {}

    def _force(self) -> None:
        if self._compute is not None:
            computed, self._compute = self._compute(), None
            self._data = {**computed, **self._data}

    def __getitem__(self, key: str) -> Tensor:
        if key in self._lazy and key not in self._data:
            self._force()
        return self._data[key]

    def __setitem__(self, key: str, value: Tensor) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        self._force()
        del self._data[key]

    def _keys(self) -> list[str]:
        if self._compute is None:
            return list(self._data)
        return [*self._lazy, *(k for k in self._data if k not in self._lazy)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys())

    def __len__(self) -> int:
        return len(self._keys())

    def __contains__(self, key: object) -> bool:
        return key in self._lazy or key in self._data

    def __repr__(self) -> str:
        self._force()
        return f"LazyStats({self._data!r})"


def check_positive(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` or raise ``ValueError`` naming ``name`` when it is below ``minimum``."""
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def straight_through(z: Tensor, q: Tensor) -> Tensor:
    """Forward value ``q``, gradient of the identity to ``z`` (``z + (q - z).detach()``).

    Returns ``q.detach()`` when ``z`` needs no gradient, so eval outputs equal the codes
    exactly instead of up to float rounding (and, as with the formula, no gradient reaches
    a learned codebook through this path).
    """
    if not (torch.is_grad_enabled() and z.requires_grad):
        return q.detach()
    return z + (q - z).detach()


def usage_stats(
    indices: Tensor,
    codebook_size: int,
    weights: Tensor | None = None,
    scratch: Tensor | None = None,
) -> dict[str, Tensor]:
    """Perplexity and fraction of used codes of a batch of indices.

    Args:
        indices: long, any shape, values in ``[0, codebook_size)``.
        codebook_size: number of codes K.
        weights: optional float mask of ``indices``' shape (0 = ignore that index).
        scratch: optional long ``[codebook_size]`` buffer reused for the counts (a fresh
            multi-100 kB allocation per step costs more than the counting: page faults).

    Returns:
        ``{"perplexity": exp(H(counts)), "usage": (#codes used) / K}``, float32 scalars in
        ``[1, K]`` and ``[0, 1]``.

    Computed per token rather than per code, so the cost is O(tokens) plus one bincount:
    ``sum_c n_c log n_c = sum_tokens log n_{c(t)}`` and ``#used = sum_tokens 1 / n_{c(t)}``.
    """
    flat = indices.reshape(-1)
    w = None if weights is None else weights.reshape(-1).float()
    if codebook_size <= 1 << 22:
        if scratch is not None and w is None:
            counts = scratch.zero_().index_add_(0, flat, torch.ones_like(flat))
        else:
            counts = torch.bincount(flat, weights=w, minlength=codebook_size)
        per_token = counts.index_select(0, flat).float()
    else:  # huge codebooks: count only the codes present
        _, inverse, uniq_counts = torch.unique(flat, return_inverse=True, return_counts=True)
        if w is not None:
            uniq_counts = torch.zeros(uniq_counts.shape, device=flat.device).index_add_(0, inverse, w)
        per_token = uniq_counts.float()[inverse]
    if w is None and flat.device.type == "cpu":  # scalars in Python: no 0-dim tensor ops
        n = float(flat.numel())
        used_f = round(float(per_token.reciprocal().sum()))
        perplexity = math.exp(math.log(n) - float(per_token.log_().sum()) / n) if n > 0 else 1.0
        return {"perplexity": torch.tensor(perplexity), "usage": torch.tensor(used_f / codebook_size)}
    if w is None:
        n = float(flat.numel())
        used = per_token.reciprocal().sum()
        log_sum = per_token.log_().sum()
    else:
        keep = w > 0
        n = float(w.sum())
        safe = torch.where(keep, per_token, torch.ones_like(per_token))
        log_sum = (w * safe.log()).sum()
        used = torch.where(keep, w / safe, torch.zeros_like(w)).sum()
    if n <= 0:
        zero = torch.zeros((), device=flat.device)
        return {"perplexity": zero + 1, "usage": zero}
    entropy = math.log(n) - log_sum / n
    return {
        "perplexity": entropy.exp().detach(),
        "usage": (used.round() / codebook_size).detach(),
    }


class Quantizer(Configurable, nn.Module):
    """Base class: float32 compute, input/output projections, the common attributes.

    Attributes:
        dim: input channels (the model's).
        code_dim: channels of the code space.
        codebook_size: number of values one index element takes (``0`` for continuous).
        bits_per_index: ``log2(codebook_size)`` -- bits of *one index element*; a token
            with ``index_shape_suffix == (K,)`` costs ``K * bits_per_index`` bits
            (:attr:`bits_per_token`).
        index_shape_suffix: ``()`` when ``indices`` is ``[...]``, ``(K,)`` when ``[..., K]``.
        is_discrete: ``False`` for continuous bottlenecks (``indices`` is ``None``).
        requires_spatial_input: ``True`` when the quantizer turns a whole ``[B, H, W, C]``
            map into one index sequence (multi-scale), so one index per position is not
            available.

    Optional capabilities are declared here with their defaults, so that callers never
    probe with ``hasattr``: :meth:`neighbours` (raises unless defined), :meth:`latent` and
    :meth:`decode_latent` (what a continuous bottleneck stores and how it is read back;
    the quantized output and the identity by default).
    """

    codebook_size: int
    bits_per_index: float
    index_shape_suffix: tuple[int, ...] = ()
    is_discrete: bool = True
    requires_spatial_input: ClassVar[bool] = False

    def __init__(self, dim: int, code_dim: int) -> None:
        super().__init__()
        self.dim = check_positive("dim", dim)
        self.code_dim = check_positive("code_dim", code_dim)
        proj = dim != code_dim
        self.project_in: nn.Module = nn.Linear(dim, code_dim) if proj else nn.Identity()
        self.project_out: nn.Module = nn.Linear(code_dim, dim) if proj else nn.Identity()

    def usage(self, indices: Tensor, weights: Tensor | None = None) -> LazyStats:
        """:func:`usage_stats` of ``indices``, computed when first read (:class:`LazyStats`).

        ``indices`` and ``weights`` are read then, so callers must not modify them in place.
        """
        return LazyStats(lambda: self._usage_now(indices, weights), ("perplexity", "usage"))

    def _usage_now(self, indices: Tensor, weights: Tensor | None) -> dict[str, Tensor]:
        """:func:`usage_stats` with a count buffer kept on the module."""
        if self.codebook_size > 1 << 22:
            return usage_stats(indices, self.codebook_size, weights)
        buf = self.__dict__.get("_usage_scratch")
        if buf is None or buf.device != indices.device:
            buf = torch.zeros(self.codebook_size, dtype=torch.long, device=indices.device)
            self.__dict__["_usage_scratch"] = buf  # plain attribute: not state, not moved by .to()
        return usage_stats(indices, self.codebook_size, weights, scratch=buf)

    @property
    def index_factors(self) -> list[int] | None:
        """Mixed-radix digits of one index element, least significant first, or ``None``.

        Implicit codebooks (FSQ levels, LFQ/BSQ bits) build an index as
        ``sum_i d_i * prod(factors[:i])`` with digit ``d_i`` in ``[0, factors[i])``, so a
        prior can predict the digits instead of one ``codebook_size``-way choice. ``None``
        for learned codebooks (VQ and its variants), whose indices have no such structure.
        """
        return None

    @property
    def bits_per_token(self) -> float:
        """Bits per token: ``bits_per_index`` times the number of index elements per token."""
        return self.bits_per_index * math.prod(self.index_shape_suffix)

    def forward(self, x: Tensor) -> QuantizerOutput:
        """Quantize ``x`` (``[..., dim]``, any float dtype); see :class:`QuantizerOutput`."""
        if x.shape[-1] != self.dim:
            raise ValueError(
                f"{type(self).__name__}: expected channel-last input [..., {self.dim}], got "
                f"shape {tuple(x.shape)} (use quantize_bchw for [B, C, H, W])"
            )
        with torch.autocast(device_type=x.device.type, enabled=False):
            out = self._forward(x.float())
        if out.quantized.dtype != x.dtype:
            out = replace(out, quantized=out.quantized.to(x.dtype))
        return out

    def _forward(self, x: Tensor) -> QuantizerOutput:  # pragma: no cover - abstract
        raise NotImplementedError

    def embed(self, indices: Tensor) -> Tensor:
        """Code-space vectors ``[..., code_dim]`` of ``indices`` (before ``project_out``)."""
        raise NotImplementedError(f"{type(self).__name__} has no codebook lookup")

    def codes(self, indices: Tensor) -> Tensor:
        """Inverse lookup in the input space: ``[...(, K)] -> [..., dim]`` float32.

        In eval mode ``q.codes(q(x).indices)`` equals ``q(x).quantized`` (up to float
        rounding of the output projection).
        """
        with torch.autocast(device_type=indices.device.type, enabled=False):
            return self.project_out(self.embed(indices))

    def latent(self, x: Tensor) -> Tensor:
        """The continuous value a tokenizer stores for input ``x`` ``[..., dim]``.

        The quantized output by default; continuous bottlenecks override it (the Gaussian's
        mean in eval, a sample in training).
        """
        return self(x).quantized

    def decode_latent(self, z: Tensor) -> Tensor:
        """Stored latent (from :meth:`latent`) -> input space ``[..., dim]``; the identity by default."""
        return z

    def neighbours(self, indices: Tensor, k: int, *, generator: torch.Generator | None = None) -> Tensor:
        """The ``k`` nearest other codes of each index element, nearest first (code-space L2).

        Args:
            indices: long ``[...]`` (or ``[..., K]``: per element, giving ``[..., K, k]``)
                in ``[0, codebook_size)``.
            k: how many neighbours, ``1 <= k < codebook_size``; the index itself is excluded.
            generator: breaks ties between equidistant codes at random (grids have many);
                ``None`` breaks them in a fixed order.

        Returns:
            long ``[..., k]``.
        """
        raise NotImplementedError(f"{type(self).__name__} does not define codebook neighbours")

    def extra_repr(self) -> str:
        return f"dim={self.dim}, code_dim={self.code_dim}, codebook_size={self.codebook_size}"


def quantize_bchw(q: Quantizer, x: Tensor) -> QuantizerOutput:
    """Apply ``q`` to a channel-first map ``[B, C, H, W]``.

    Returns a :class:`QuantizerOutput` whose ``quantized`` is ``[B, C, H, W]`` and whose
    ``indices`` are ``[B, H, W]`` (or ``[B, H, W, K]``; the multi-scale quantizer keeps its
    ``[B, L]`` sequence).
    """
    if x.ndim != 4:
        raise ValueError(f"quantize_bchw expects [B, C, H, W], got shape {tuple(x.shape)}")
    out = q(x.permute(0, 2, 3, 1))
    return replace(out, quantized=out.quantized.permute(0, 3, 1, 2))
