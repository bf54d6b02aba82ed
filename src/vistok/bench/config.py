"""The settings of a bench run besides the tokenizers and the data."""

from __future__ import annotations

from dataclasses import dataclass, field

from vistok.bench.protocol import Protocol

__all__ = ["BenchConfig"]


@dataclass
class BenchConfig:
    """Everything besides the tokenizers and the data that a run depends on.

    Attributes:
        protocol: geometry of the evaluation.
        suites: names in :data:`vistok.bench.suites.SUITES` (``recon``, ``text``, ``face``,
            ``codebook``, ``robustness``, ``speed``).
        fd_features: the feature network (:data:`vistok.bench.metrics.frechet.EXTRACTORS`)
            given as ``extractor=`` to every registered metric that takes one (FD).
        robust_alpha, robust_delta, robust_noise: the robustness suite's perturbation.
        speed_batches: batch sizes the speed suite times (the first is the headline):
            1 = one file at a time, as ``vistok encode``/``reconstruct`` run; 8 = the
            evaluation batch of the metrics (docs/protocol.md, "Speed").
        speed_warmup, speed_repeats: untimed calls first, then the best of this many.
        seed: perturbation seed.
        device: where tokenizers run.
    """

    protocol: Protocol = field(default_factory=Protocol)
    suites: tuple[str, ...] = ("recon", "text", "face", "codebook", "robustness", "speed")
    fd_features: str = "mobilenet_v2"
    robust_alpha: float = 0.1  # fraction of tokens perturbed
    robust_delta: int = 4  # among the delta nearest codebook entries
    robust_noise: float = 0.1  # continuous: Gaussian noise std relative to the latents' std
    speed_batches: tuple[int, ...] = (1, 8)
    speed_warmup: int = 1
    speed_repeats: int = 3
    seed: int = 0
    device: str = "cpu"

    def validate(self) -> None:
        """Check every name now, before any work.

        Raises:
            SpecError: an unknown suite or feature network, with "did you mean" and the
                valid names; ``ValueError``: bad speed settings.
        """
        from vistok.bench.metrics.frechet import EXTRACTORS
        from vistok.bench.suites import SUITES

        for name in self.suites:
            SUITES.get(name)
        EXTRACTORS.get(self.fd_features)
        if (
            not self.speed_batches
            or min(self.speed_batches) < 1
            or self.speed_repeats < 1
            or self.speed_warmup < 0
        ):
            raise ValueError(
                f"speed: batches must be >= 1 ({list(self.speed_batches)}), repeats >= 1 "
                f"({self.speed_repeats}), warm-up >= 0 ({self.speed_warmup})"
            )
