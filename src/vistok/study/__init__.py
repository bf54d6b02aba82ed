"""Mechanism studies: does turning on a seed paper's mechanism in vistok give the paper's effect?

``vistok study NAME`` trains the same small model with and without the mechanism (or across
its setting) at an equal budget for several seeds, measures it on the held-out split and
applies the claim's checks, declared before anything runs (:mod:`vistok.study.base`).
``vistok study --all`` regenerates the table of ``docs/mechanisms.md``.
"""

from __future__ import annotations

from vistok.study.base import FULL, QUICK, STUDIES, Arm, Budget, Check, Study, verdict

# The built-in studies register on import.
from vistok.study import codebooks, flow, objectives, ordering, posthoc  # noqa: F401  isort: skip

__all__ = ["FULL", "QUICK", "STUDIES", "Arm", "Budget", "Check", "Study", "verdict"]
