"""What the learned tokenizer families share: the quantizer/bottleneck, rates, ``ModelOutput``.

Every family (``conv2d``, ``vit2d``, ``latent1d``) is an encoder, a bottleneck built from a
quantizer spec (``vistok.registry.QUANTIZERS``) and a decoder. This module holds the parts
that do not depend on the architecture:

* :class:`ModelOutput`, what ``forward`` returns for training;
* :class:`LearnedTokenizer`, the base class: quantizer construction, ``kind`` and
  ``vocab_size`` per instance, the rate of a batch of tokens, ``embed(ids)``, the
  ``[0, 1] <-> [-1, 1]`` conversion, and the spec syntax for nested quantizer specs.

Nested quantizer specs: a tokenizer's ``quantizer`` parameter is itself a spec. When it has
commas it must be bracketed so the outer spec splits correctly::

    latent1d-s:tokens=64,quantizer=fsq:levels=8-5-5-5             # no commas: no brackets needed
    latent1d-s:tokens=64,quantizer=[vq:codebook_size=4096,commitment_weight=0.25]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from vistok.registry import QUANTIZERS, parse_spec
from vistok.tokenizer import Tokenizer

__all__ = ["LATENT_DTYPE", "LearnedTokenizer", "ModelOutput", "unbracket"]

# Continuous latents are handed out (and their rate counted) at this dtype.
LATENT_DTYPE = torch.float16
_LATENT_BITS = 16


@dataclass
class ModelOutput:
    """What a learned tokenizer's ``forward(images)`` returns (one type, whatever the model).

    Attributes:
        reconstruction: float ``[B, 3, H, W]`` on the ``[0, 1]`` scale of the input but
            **not clamped** (so losses see gradients everywhere).
        loss: scalar bottleneck loss (commitment / codebook / entropy terms, or the KL of
            the Gaussian bottleneck), already weighted by the quantizer.
        stats: the quantizer's statistics (code usage, perplexity, ...) as tensors.
        quantized: the bottleneck output fed to the decoder (straight-through estimator
            for discrete quantizers): ``[B, C, h, w]`` (2D families) or ``[B, N, C]`` (1D).
        indices: long code indices (``[B, h, w]`` / ``[B, N]``, with a trailing ``K`` for
            factorized/residual quantizers), ``None`` for the Gaussian bottleneck.
        lengths: long ``[B]`` tokens kept per image in this pass (1D variable-length models:
            the nested-dropout draw in training); ``None`` for fixed-length models.
        features: intermediate activations for feature-alignment losses, keyed by
            ``"encoder"`` (last encoder hidden state before the bottleneck projection) and
            ``"decoder"`` (the decoder's hidden state half-way through). Transformers give
            patch tokens ``[B, L, D]`` (``L = h * w`` patches); conv models give maps
            ``[B, C, h, w]``.
    """

    reconstruction: Tensor
    loss: Tensor
    stats: dict[str, Any]
    quantized: Tensor
    indices: Tensor | None
    lengths: Tensor | None = None
    features: dict[str, Tensor] = field(default_factory=dict)


def unbracket(spec: str) -> str:
    """``"[vq:codebook_size=16,commitment_weight=0.25]"`` -> ``"vq:codebook_size=16,commitment_weight=0.25"``.

    Only strips one pair that encloses the whole string (``"[a]-[b]"`` is kept as is).
    """
    s = spec.strip()
    while s.startswith("[") and s.endswith("]"):
        depth = 0
        for i, ch in enumerate(s):
            depth += ch == "["
            depth -= ch == "]"
            if depth == 0 and i < len(s) - 1:
                return s  # the first bracket closes before the end
        s = s[1:-1].strip()
    return s


def build_quantizer(spec: str, dim: int) -> torch.nn.Module:
    """Build the quantizer named by ``spec`` (bracketed or not) for ``dim``-wide latents.

    Raises:
        ValueError: when ``spec`` sets ``dim`` itself (the tokenizer's ``latent_dim`` sets it).
    """
    import vistok.quantize  # noqa: F401  (registers the quantizers)

    inner = unbracket(spec)
    _, raw = parse_spec(inner)
    if "dim" in raw:
        raise ValueError(
            f"quantizer spec {spec!r} sets dim; set the tokenizer's latent_dim instead (it is passed as dim)"
        )
    if torch.empty(()).device.type == "meta":
        # under `with torch.device("meta")` (parameter counting, deferred init) build the
        # small quantizer for real (some compute constants with .item()) and move it
        with torch.device("cpu"):
            return QUANTIZERS.create(inner, dim=dim).to("meta")
    return QUANTIZERS.create(inner, dim=dim)


class LearnedTokenizer(Tokenizer):
    """Base class of the learned families: encoder -> bottleneck -> decoder.

    Subclasses call ``super().__init__(quantizer=..., latent_dim=...)`` and implement
    ``encode``, ``decode`` and ``forward``. Images are ``[0, 1]`` at the boundary and
    ``[-1, 1]`` inside (:meth:`to_model` / :meth:`from_model`).

    Instance attributes (beyond :class:`~vistok.tokenizer.Tokenizer`'s):
        kind: ``"discrete"`` when the quantizer yields indices, else ``"continuous"``.
        latent_dim: width ``C`` of the bottleneck.
        latent_norm: parameter-free LayerNorm on the latents before the bottleneck, or Identity.
        rate_per_value: bits of one stored index (discrete) or latent value (continuous,
            :data:`LATENT_DTYPE` = float16).
    """

    def __init__(self, *, quantizer: str, latent_dim: int, latent_norm: bool = False):
        super().__init__()
        self.latent_dim = latent_dim
        # optional parameter-free LayerNorm over the latent channels before the bottleneck:
        # keeps FSQ/LFQ inputs out of tanh/sign saturation (no state: checkpoints unaffected)
        self.latent_norm: nn.Module = (
            nn.LayerNorm(latent_dim, elementwise_affine=False) if latent_norm else nn.Identity()
        )
        self.quantizer = build_quantizer(quantizer, latent_dim)
        q = self.quantizer
        discrete = q.is_discrete and bool(q.codebook_size)
        self.kind: Literal["discrete", "continuous"] = "discrete" if discrete else "continuous"  # type: ignore[misc]
        self.vocab_size = int(q.codebook_size) if discrete else None
        self.rate_per_value = float(q.bits_per_index) if discrete else float(_LATENT_BITS)
        if q.requires_spatial_input:
            raise ValueError(
                f"quantizer {quantizer!r} turns a whole map into one index sequence (multi-scale); "
                "the learned families need one index (or K) per token position"
            )

    # ---- conversions -----------------------------------------------------------------------
    @staticmethod
    def to_model(images: Tensor) -> Tensor:
        """``[0, 1]`` -> ``[-1, 1]``."""
        return images * 2.0 - 1.0

    @staticmethod
    def from_model(x: Tensor) -> Tensor:
        """``[-1, 1]`` -> ``[0, 1]`` (not clamped)."""
        return (x + 1.0) * 0.5

    # ---- bottleneck ------------------------------------------------------------------------
    def quantize(self, z: Tensor) -> Any:
        """Channel-last latents ``[..., C]`` -> the quantizer's ``QuantizerOutput``."""
        return self.quantizer(self.latent_norm(z))

    def embed(self, ids: Tensor) -> Tensor:
        """Code vectors of ``ids`` (long ``[...]`` or ``[..., K]``): float ``[..., C]``.

        The vectors the decoder consumes (what an AR model or end-to-end tuning reads);
        differentiable with respect to the codebook.

        Raises:
            TypeError: for continuous tokenizers (no codebook).
        """
        if self.kind != "discrete":
            quantizer = self.init_config.get("quantizer")
            raise TypeError(f"{self.spec}: continuous tokenizer ({quantizer}); it has no codebook")
        return self.quantizer.codes(ids)

    @property
    def num_codebooks(self) -> int:
        """Index elements per token position (``K`` of ``[..., K]`` ids; 1 for plain ids)."""
        return math.prod(self.quantizer.index_shape_suffix)

    @property
    def has_neighbours(self) -> bool:
        """Discrete models have codebook neighbours (the quantizer defines the distance)."""
        return self.kind == "discrete"

    @property
    def index_factors(self) -> list[int] | None:
        """The quantizer's mixed-radix digits of one id (``None`` for learned codebooks)."""
        return self.quantizer.index_factors if self.kind == "discrete" else None

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codebook entries of each id, nearest first.

        ``ids`` long ``[...]`` -> ``[..., k]`` (``[..., K]`` -> ``[..., K, k]``); used by the
        benchmark's robustness suite and latent perturbation in training.

        Raises:
            TypeError: for continuous tokenizers (no codebook).
        """
        if self.kind != "discrete":
            raise TypeError(f"{self.spec}: continuous tokenizer; it has no codebook neighbours")
        return self.quantizer.neighbours(ids, k)

    def token_bits(self, ids: Tensor | None, latents: Tensor | None, positions: int) -> float:
        """Bits of one token position: values stored per position x bits per value.

        ``ids`` (``[B, ...]``) or ``latents`` hold ``positions`` token positions per image;
        a position holds ``K`` index elements (multi-codebook quantizers, ``K *
        bits_per_index`` bits, the quantizer's ``bits_per_token``) or ``C`` latent values
        (``16 C`` bits at float16).
        """
        t = ids if ids is not None else latents
        assert t is not None
        per_image = t[0].numel() if t.shape[0] else 0
        return per_image / max(positions, 1) * self.rate_per_value

    def to_tokens(self, z: Tensor) -> tuple[Tensor | None, Tensor | None]:
        """Encoder output ``z`` (channel-last ``[..., C]``) -> ``(ids, latents)``.

        Discrete: ``(long ids [...] or [..., K], None)``. Continuous: ``(None, latents)``
        with the bottleneck's latent (the posterior mean in eval) as float16 ``[..., C']``
        (``C'`` is the bottleneck's own latent width, ``C`` unless the quantizer spec says).
        """
        z = self.latent_norm(z)
        if self.kind == "discrete":
            return self.quantizer(z).indices.long(), None
        return None, self.quantizer.latent(z).to(LATENT_DTYPE)

    def from_tokens(self, ids: Tensor | None, latents: Tensor | None) -> Tensor:
        """Inverse of :meth:`to_tokens`: the decoder's float32 input ``[..., C]``."""
        if ids is not None:
            return self.embed(ids)
        if latents is None:
            raise ValueError(f"{self.spec}: tokens carry neither ids nor latents")
        return self.quantizer.decode_latent(latents.float())

    @classmethod
    def from_pretrained(cls, name_or_path: str, *, revision: str | None = None) -> LearnedTokenizer:
        """Load a checkpoint folder or hub repo ``org/name`` (see :func:`vistok.load`).

        Raises:
            vistok.hub.CheckpointError: unreadable or mismatching checkpoint.
            TypeError: when the checkpoint holds another family than ``cls``.
        """
        from vistok.hub import load

        model = load(name_or_path, revision=revision)
        if not isinstance(model, cls):
            raise TypeError(f"{name_or_path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model
