"""The tokenizer of a token dataset: ``vistok.create`` (``NAME@k`` included) minus codecs.

``NAME@k`` itself is parsed in one place, :func:`vistok.registry.split_point`; this module
only adds what token datasets need on top: codecs are refused, and ``k`` is returned so the
writer can record it.
"""

from __future__ import annotations

from vistok.registry import split_point
from vistok.tokenizer import Tokenizer

__all__ = ["build_tokenizer", "split_num_tokens"]

split_num_tokens = split_point
"""``"vistok-1d@32"`` -> ``("vistok-1d", 32)``; a spec without ``@k`` -> ``(spec, None)``."""


def build_tokenizer(spec: str) -> tuple[Tokenizer, int | None]:
    """Create the tokenizer of ``spec`` (``NAME@k`` allowed) and return it with ``k``.

    Raises:
        vistok.registry.SpecError: unknown name or parameter; ``@k`` on a fixed-length
            tokenizer or out of range.
        ValueError: a codec (codecs make bytes, not tokens).
    """
    import vistok

    tok = vistok.create(spec)
    if tok.kind == "codec":
        base = split_point(spec)[0]
        raise ValueError(
            f"{base}: image codecs make bytes, not tokens; `vistok tokenize` needs ids or latents"
        )
    return tok, tok.default_num_tokens
