"""Priors over tokens: a GPT-style AR prior and MaskGIT, for grids, sequences and K codebooks.

>>> from vistok.prior import TokenSpace, create_prior
>>> space = TokenSpace((16, 16), "grid", (64000,), factors=(8, 8, 8, 5, 5, 5))  # vistok-f8 at 128x128
>>> prior = create_prior("ar:dim=256,depth=6", space)
>>> loss = prior.loss(ids)                     # ids: long [B, 16, 16]
>>> ids = prior.sample(4)                      # long [4, 16, 16]

Training (``vistok prior train``), sampling to images (``vistok prior sample``) and the
generation probe (``vistok probe``) are in :mod:`vistok.prior.train`, :mod:`vistok.prior.cli`
and :mod:`vistok.prior.probe`; the design is written down in ``docs/generation.md``.
"""

from vistok.prior.base import (
    PRIORS,
    Prior,
    PriorCheckpointError,
    create_prior,
    load_prior,
    register_prior,
    save_prior,
)
from vistok.prior.sampling import SamplingConfig
from vistok.prior.space import TokenSpace

__all__ = [
    "PRIORS",
    "Prior",
    "PriorCheckpointError",
    "SamplingConfig",
    "TokenSpace",
    "create_prior",
    "load_prior",
    "register_prior",
    "save_prior",
]
