"""``NAME@k`` specs for token datasets: keep the first ``k`` tokens of a variable-length tokenizer.

Kept apart so it can give way to ``NAME@k`` support in :func:`vistok.create` itself: the
manifest records the spec as given, and this module is the only place that splits it.
"""

from __future__ import annotations

import re

from vistok.tokenizer import Tokenizer

__all__ = ["build_tokenizer", "split_num_tokens"]

_AT_K = re.compile(r"^(?P<base>.+)@(?P<k>\d+)$")


def split_num_tokens(spec: str) -> tuple[str, int | None]:
    """``"vistok-1d@32"`` -> ``("vistok-1d", 32)``; a spec without ``@k`` -> ``(spec, None)``.

    Only a trailing ``@`` followed by digits is read as a token count, so paths and specs
    holding ``@`` elsewhere pass through unchanged.
    """
    m = _AT_K.match(spec)
    if m is None:
        return spec, None
    return m["base"], int(m["k"])


def build_tokenizer(spec: str) -> tuple[Tokenizer, int | None]:
    """Create the tokenizer of ``spec`` (``NAME@k`` allowed) and check ``k`` against it.

    Raises:
        vistok.registry.SpecError: unknown name or parameter.
        ValueError: ``k`` given for a fixed-length tokenizer or out of range; a codec.
    """
    import vistok

    base, k = split_num_tokens(spec)
    tok = vistok.create(base)
    if tok.kind == "codec":
        raise ValueError(
            f"{base}: image codecs make bytes, not tokens; `vistok tokenize` needs ids or latents"
        )
    if k is not None and not tok.variable_length:
        raise ValueError(f"{spec}: {base} is a fixed-length tokenizer; @{k} needs a variable-length one")
    tok.check_num_tokens(k)
    return tok, k
