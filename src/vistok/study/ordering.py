"""Studies of the 1D tokenizer: prefix ordering (nested dropout, tail drop) and patch size.

The model: ``latent1d`` at the study size, 32 FSQ tokens (8-8-8-5-5-5, 16 bits each), width
128, depth 2 + 2, patch size size/8 (64 patches), L1 + L2 pixel loss.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from vistok.study.base import STUDIES, Arm, Budget, Check, Measurements, Study
from vistok.study.context import ArmRun, StudyContext

__all__ = ["NestedDropoutStudy", "PatchSizeStudy", "TailDropStudy", "latent1d_recipe"]

TOKENS = 32
KS = tuple(2**i for i in range(6))  # 1, 2, 4, ..., 32


def latent1d_recipe(budget: Budget, *, patch_divisor: int = 8, tokens: int = TOKENS) -> dict[str, Any]:
    """The studies' small 1D tokenizer recipe at ``budget.size``."""
    s = budget.size
    spec = (f"latent1d:image_size={s},patch_size={s // patch_divisor},tokens={tokens},width=128,depth=2,"
            "num_heads=4,latent_dim=6,quantizer=fsq:levels=8-8-8-5-5-5")  # fmt: skip
    return {"model": {"spec": spec}, "loss": {"l1": 1.0, "l2": 1.0}, "optim": {"lr": 1e-3, "ema": 0.0}}


def _short(m: Measurements, metric: str, sign: float) -> float:
    """Mean over k <= N/4 of ``sign * (with - without)``."""
    ks = [k for k in KS if k <= TOKENS // 4]
    return float(np.mean([sign * (m["with"][f"{metric}@{k}"] - m["without"][f"{metric}@{k}"]) for k in ks]))


def _ordered(m: Measurements) -> float:
    """The smallest PSNR gain from a prefix to the prefix twice as long, with the mechanism."""
    return min(m["with"][f"psnr@{2 * k}"] - m["with"][f"psnr@{k}"] for k in KS[:-1])


class _PrefixStudy(Study):
    """With and without a prefix-training mechanism; PSNR and FD at every prefix length."""

    plot_kind = "per_k"
    plot_metrics = ("psnr", "fd")
    mechanism_recipe: ClassVar[dict[str, Any]] = {}

    def base_recipe(self) -> dict[str, Any]:
        return latent1d_recipe(self.budget)

    def arms(self) -> list[Arm]:
        return [Arm("without", "all 32 tokens always"), Arm("with", self.mechanism, self.mechanism_recipe)]

    def measure_arm(self, run: ArmRun, ctx: StudyContext) -> dict[str, float]:
        tok = run.tokenizer()
        out: dict[str, float] = {}
        for k in KS:
            r = ctx.recon_metrics(tok, num_tokens=k)
            out[f"psnr@{k}"], out[f"fd@{k}"] = r["psnr"], r["fd"]
        return out

    def checks(self) -> list[Check]:
        return [
            Check("short-psnr", "short prefixes (k <= 8 of 32) reconstruct better with it (PSNR, mean over k)",
                  lambda m: _short(m, "psnr", 1.0), lambda e: e > 0, "dB"),
            Check("short-fd", "short prefixes have lower FD with it (mean over k <= 8)",
                  lambda m: _short(m, "fd", -1.0), lambda e: e > 0, "FD"),
            Check("ordered", "with it, every doubling of the prefix raises PSNR (smallest gain)",
                  _ordered, lambda e: e > 0, "dB"),
        ]  # fmt: skip


@STUDIES.register("nested-dropout")
class NestedDropoutStudy(_PrefixStudy):
    mechanism = "nested dropout (FlexTok, power-of-two prefixes)"
    paper = "FlexTok (Bachmann et al. 2025)"
    claim = "prefixes are ordered coarse-to-fine; without nested dropout, short prefixes fail"
    measure = "held-out PSNR and FD-MobileNetV2 at k = 1, 2, 4, ..., 32 tokens"
    mechanism_recipe: ClassVar[dict[str, Any]] = {"model": {"nested": "pow2", "nested_prob": 1.0}}


@STUDIES.register("tail-drop")
class TailDropStudy(_PrefixStudy):
    mechanism = "tail-token drop (One-D-Piece: half the images keep a uniform prefix)"
    paper = "One-D-Piece (Miwa et al. 2025)"
    claim = "prefixes are ordered coarse-to-fine; without tail drop, short prefixes fail"
    measure = "held-out PSNR and FD-MobileNetV2 at k = 1, 2, 4, ..., 32 tokens"
    mechanism_recipe: ClassVar[dict[str, Any]] = {"model": {"nested": "uniform", "nested_prob": 0.5}}


PATCH_DIVISORS = (16, 8, 4)  # patch = size / divisor: 4, 8, 16 px at 64


@STUDIES.register("patch-size")
class PatchSizeStudy(Study):
    mechanism = "patch size of the 1D tokenizer's encoder/decoder"
    paper = "Scaling Laws in Patchification (Wang et al. 2025)"
    claim = "smaller patches reconstruct better at an equal number of latent tokens"
    measure = "held-out PSNR and FD at 32 tokens, patch size/16, size/8, size/4 (equal steps; time recorded)"
    plot_kind = "setting"
    plot_metrics = ("psnr", "fd")

    def base_recipe(self) -> dict[str, Any]:
        return latent1d_recipe(self.budget)

    def arms(self) -> list[Arm]:
        s = self.budget.size
        return [Arm(f"p{s // d}", f"patch {s // d}", {"model": {"spec": latent1d_recipe(self.budget,
                    patch_divisor=d)["model"]["spec"]}}) for d in PATCH_DIVISORS]  # fmt: skip

    def setting(self, arm: Arm) -> float | None:
        return float(arm.name[1:])

    def checks(self) -> list[Check]:
        s = self.budget.size
        p = [f"p{s // d}" for d in PATCH_DIVISORS]
        return [
            Check(f"{p[0]}>{p[1]}", f"patch {s // 16} beats patch {s // 8} (PSNR)",
                  lambda m: m[p[0]]["psnr"] - m[p[1]]["psnr"], lambda e: e > 0, "dB"),
            Check(f"{p[1]}>{p[2]}", f"patch {s // 8} beats patch {s // 4} (PSNR)",
                  lambda m: m[p[1]]["psnr"] - m[p[2]]["psnr"], lambda e: e > 0, "dB"),
        ]  # fmt: skip
