"""What a mechanism study is: arms trained at one budget, a measurement, declared checks.

A :class:`Study` names a mechanism, the paper's claim and how it is measured. It lists its
:class:`Arm` s (the same small model with and without the mechanism, or across its setting:
each arm is a set of recipe keys on top of the study's base recipe), measures every trained
arm on the held-out views (:meth:`Study.measure`), and declares its :class:`Check` s before
anything runs. A check is one sentence of the claim, an *effect* computed from one seed's
measurements of all arms, and the direction (or bound) the claim predicts. The verdict
follows from the checks only (:func:`verdict`); nothing is tuned after seeing it.

Studies register in :data:`STUDIES` like every other extension point; ``vistok study --list``
prints them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from vistok.registry import Registry

if TYPE_CHECKING:
    from vistok.study.context import ArmRun, StudyContext

__all__ = ["FULL", "QUICK", "STUDIES", "Arm", "Budget", "Check", "Measurements", "Study", "verdict"]

Measurements = dict[str, dict[str, float]]  # arm name -> metric name -> value (one seed)


@dataclass(frozen=True)
class Budget:
    """The equal budget of every arm of a study: optimizer steps, batch, crop side, threads."""

    steps: int = 500
    batch_size: int = 16
    size: int = 64
    warmup: int = 30
    threads: int = 2


FULL = Budget()
QUICK = Budget(steps=3, batch_size=4, size=32, warmup=1)


@dataclass(frozen=True)
class Arm:
    """One trained configuration.

    Attributes:
        name: short key (``"with"``, ``"lfq16-entropy"``), unique within the study.
        label: what a reader sees in tables and plots.
        recipe: recipe keys over the study's base recipe (``{"model": {"nested": "pow2"}}``).
        train: ``False`` for arms that reuse another arm's model (set ``source``).
        source: the arm whose trained model this arm measures (post-hoc mechanisms).
    """

    name: str
    label: str
    recipe: dict[str, Any] = field(default_factory=dict)
    train: bool = True
    source: str | None = None


@dataclass(frozen=True)
class Check:
    """One testable sentence of the paper's claim.

    Attributes:
        name: short key.
        text: the sentence, as the table prints it.
        effect: the effect from one seed's measurements of all arms (e.g. a PSNR difference).
        holds: whether one seed's effect supports the claim (declared before running).
        unit: the effect's unit (``"dB"``, ``"FD"``, ``"usage"``).
    """

    name: str
    text: str
    effect: Callable[[Measurements], float]
    holds: Callable[[float], bool]
    unit: str = ""


def verdict(passed: list[bool]) -> str:
    """``reproduced`` when every check held for every seed, ``not reproduced`` when none
    did, ``reproduced in part`` otherwise."""
    if passed and all(passed):
        return "reproduced"
    if not any(passed):
        return "not reproduced"
    return "reproduced in part"


class Study:
    """Base class of the registered studies (see the module docstring).

    Class attributes:
        name: the registry key (set by the registry).
        mechanism: the mechanism under test, as a heading.
        paper: the paper(s) the claim comes from.
        claim: the paper's claim in one sentence.
        measure: what is measured, in one line.
        plot_kind: ``"per_k"`` (metrics against the token count, one line per arm),
            ``"bars"`` (one bar per arm and metric) or ``"setting"`` (metrics against
            :attr:`setting` of each arm).
        plot_metrics: the metrics plotted.
        budget_changes: budget fields a full run of this study changes (``{"size": 128}``:
            crops and evaluation at 128²); every arm still gets the same budget, and
            ``--quick`` keeps the quick one.

    :attr:`budget` is set by the runner first; arms, recipes and checks may depend on it.
    """

    mechanism: str = ""
    paper: str = ""
    claim: str = ""
    measure: str = ""
    plot_kind: str = "bars"
    budget_changes: ClassVar[dict[str, int]] = {}  # full runs: budget fields this study changes
    plot_metrics: tuple[str, ...] = ("psnr",)

    budget: Budget = FULL  # set by the runner before anything else is asked

    def base_recipe(self) -> dict[str, Any]:
        """The recipe every arm starts from (sections of :class:`~vistok.train.config.TrainConfig`)."""
        raise NotImplementedError

    def arms(self) -> list[Arm]:
        raise NotImplementedError

    def checks(self) -> list[Check]:
        raise NotImplementedError

    def measure_arm(self, run: ArmRun, ctx: StudyContext) -> dict[str, float]:
        """Measurements of one trained arm on the held-out views: ``{metric: value}``."""
        return ctx.recon_metrics(run.tokenizer())

    def setting(self, arm: Arm) -> float | None:
        """The arm's value of the studied setting (``plot_kind == "setting"``)."""
        return None


STUDIES: Registry[Study] = Registry("study")
