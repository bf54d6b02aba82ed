"""The `Tokenizer` contract every model, codec and adapter satisfies."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import Tensor, nn

from vistok.configurable import Configurable, jsonable
from vistok.tokens import Tokens

__all__ = ["Tokenizer", "check_images"]

Kind = Literal["discrete", "continuous", "codec"]


def check_images(images: Tensor, *, who: str = "tokenizer") -> None:
    """Raise a clear ``ValueError`` unless ``images`` is float ``[B, 3, H, W]`` in ``[0, 1]``."""
    if not isinstance(images, Tensor):
        raise TypeError(f"{who}: images must be a torch.Tensor, got {type(images).__name__}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"{who}: images must be [B, 3, H, W], got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise ValueError(f"{who}: images must be float in [0, 1], got dtype {images.dtype}")
    if images.numel() and (images.min() < -1e-6 or images.max() > 1 + 1e-6):
        lo, hi = images.min().item(), images.max().item()
        raise ValueError(f"{who}: images must lie in [0, 1], got values in [{lo:.3f}, {hi:.3f}]")


class Tokenizer(Configurable, nn.Module):
    """Images ``[B, 3, H, W]`` float in ``[0, 1]`` <-> :class:`Tokens`.

    Class attributes a subclass sets:
        kind: ``"discrete"`` (ids), ``"continuous"`` (latents) or ``"codec"`` (bytes).
        variable_length: whether ``encode(..., num_tokens=k)`` accepts ``k < max_tokens``.

    Instance attributes:
        vocab_size: codebook size per index (``None`` for continuous tokenizers/codecs).
        max_tokens: tokens per image at the native size (``None`` for codecs).
        input_size: the one square size the model accepts, or ``None`` for any size.
        stride: height and width must be multiples of it (1 = any).
        default_num_tokens: tokens ``encode`` keeps when not told (``None``: all); set by
            the point grammar ``NAME@k`` (:meth:`at_num_tokens`).
        spec: the one string that rebuilds this tokenizer, weights included:
            ``vistok.create(tok.spec)`` accepts it and a ``.vtok`` file stores it (a
            registry spec, a shipped name, a checkpoint folder or ``diffusers:...``, with
            ``@k`` for a point of a variable-length tokenizer).
        config / family / registry_name: the constructor's arguments and the registered
            name, captured at construction (:mod:`vistok.configurable`), so a tokenizer built
            directly saves and loads like one built by name.

    Optional capabilities, declared here so that tools and type checkers see them (never
    probe for them with ``hasattr``):
        num_codebooks: index elements per token position (``K`` of ``[..., K]`` ids; 1).
        has_neighbours: whether :meth:`neighbours` is defined (a discrete codebook with
            distances; the benchmark's robustness suite and latent perturbation use it).
        neighbours(ids, k): the ``k`` nearest other codes of each id, ``[...] -> [..., k]``.
    """

    kind: ClassVar[Kind] = "continuous"
    variable_length: ClassVar[bool] = False
    # constructor parameters that say where weights come from, not what the model is:
    # a saved checkpoint (``save_pretrained``) leaves them out of its config
    source_keys: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        super().__init__()
        self.vocab_size: int | None = None
        self.max_tokens: int | None = None
        self.input_size: int | None = None
        self.stride: int = 1
        self.default_num_tokens: int | None = None

    @property
    def name(self) -> str:
        return self.spec

    # ---- optional capabilities (see the class docstring) ---------------------------------
    @property
    def num_codebooks(self) -> int:
        """Index elements per token position: ``K`` when ids are ``[..., K]``, else 1."""
        return 1

    @property
    def index_factors(self) -> list[int] | None:
        """Mixed-radix digits of one id (least significant first) for implicit codebooks.

        ``[8, 8, 8, 5, 5, 5]`` for FSQ with those levels (``id = d0 + 8 d1 + 64 d2 + ...``),
        ``[2] * bits`` for LFQ/BSQ; ``None`` when ids have no such structure (learned
        codebooks, codecs, continuous tokenizers).
        """
        return None

    @property
    def has_neighbours(self) -> bool:
        """Whether :meth:`neighbours` works for this tokenizer (False unless a subclass says)."""
        return False

    if TYPE_CHECKING:  # declared for type checkers; defined only where has_neighbours is True

        def neighbours(self, ids: Tensor, k: int) -> Tensor:
            """The ``k`` nearest other codes of each id: long ``[...]`` -> ``[..., k]``."""
            ...

    def at_num_tokens(self, k: int) -> Tokenizer:
        """This tokenizer as the point ``NAME@k``: ``encode`` keeps ``k`` tokens by default.

        Returns ``self`` (changed in place) with ``spec`` ending in ``@k``.

        Raises:
            ValueError: when ``k`` is not a valid token count for this tokenizer.
        """
        base = self.spec.rsplit("@", 1)[0] if self.default_num_tokens is not None else self.spec
        self.check_num_tokens(k)
        self.default_num_tokens = k
        self.spec = f"{base}@{k}"
        return self

    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        raise NotImplementedError

    def decode(self, tokens: Tokens) -> Tensor:
        raise NotImplementedError

    @torch.no_grad()
    def reconstruct(self, images: Tensor, *, num_tokens: int | None = None) -> Tensor:
        """``decode(encode(images))``: float ``[B, 3, H, W]`` in ``[0, 1]``."""
        return self.decode(self.encode(images, num_tokens=num_tokens))

    def check_input(self, images: Tensor) -> None:
        """Validate range/shape and the size this tokenizer accepts (clear errors)."""
        check_images(images, who=self.spec)
        h, w = images.shape[-2:]
        if self.input_size is not None and (h, w) != (self.input_size, self.input_size):
            raise ValueError(
                f"{self.spec}: accepts {self.input_size}x{self.input_size} images, got {h}x{w}; "
                "fit images with vistok.data.transforms.fit_to(tokenizer, images) first (pad/resize; "
                "unfit(recon, fit) undoes it)"
            )
        if h % self.stride or w % self.stride:
            raise ValueError(
                f"{self.spec}: height and width must be multiples of {self.stride}, got {h}x{w}; "
                "fit images with vistok.data.transforms.fit_to(tokenizer, images) first (pad; "
                "unfit(recon, fit) crops it back)"
            )

    def check_num_tokens(self, num_tokens: int | None) -> int | None:
        """Validate ``num_tokens``; ``None`` means :attr:`default_num_tokens` (``None``: all)."""
        if num_tokens is None:
            num_tokens = self.default_num_tokens
        if num_tokens is None:
            return None
        if not self.variable_length:
            if self.max_tokens is not None and num_tokens == self.max_tokens:
                return None
            raise ValueError(
                f"{self.spec}: fixed-length tokenizer ({self.max_tokens} tokens); it takes no num_tokens or @k"
            )
        assert self.max_tokens is not None
        if not 1 <= num_tokens <= self.max_tokens:
            raise ValueError(f"{self.spec}: num_tokens must be in 1..{self.max_tokens}, got {num_tokens}")
        return num_tokens

    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` + ``model.safetensors``; ``vistok.load(directory)`` rebuilds it."""
        from vistok.hub import save_pretrained

        return save_pretrained(self, directory)

    def describe(self) -> dict[str, Any]:
        """What a results file records about this tokenizer."""
        return {
            "spec": self.spec,
            "family": self.family,
            "kind": self.kind,
            "vocab_size": self.vocab_size,
            "max_tokens": self.max_tokens,
            "variable_length": self.variable_length,
            "input_size": self.input_size,
            "stride": self.stride,
            "parameters": sum(p.numel() for p in self.parameters()),
            "config": jsonable(self.config),
        }
