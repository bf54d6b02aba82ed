"""Studies of quantizer mechanisms on the small conv tokenizer.

The model: ``conv2d-f8`` of width 32 (64x64 crops -> 8x8 tokens), L1 + L2 pixel loss; the
quantizer is what each arm changes. Codebook numbers are measured on the held-out ids
(:func:`vistok.study.context.codebook_stats`; ``usage_vs_uniform`` corrects for the held-out
set holding fewer ids than a large codebook has codes).
"""

from __future__ import annotations

from typing import Any

from vistok.study.base import STUDIES, Arm, Budget, Check, Study
from vistok.study.context import ArmRun, StudyContext

__all__ = ["ConvStudy", "conv_recipe", "conv_spec"]


def conv_spec(quantizer: str, latent_dim: int) -> str:
    """The studies' conv tokenizer spec with ``quantizer`` (bracketed) and ``latent_dim``."""
    return f"conv2d-f8:width=32,latent_dim={latent_dim},quantizer=[{quantizer}]"


def conv_recipe(quantizer: str, latent_dim: int, **losses: float) -> dict[str, Any]:
    """A full arm recipe for the conv tokenizer (``losses`` add ``loss.*`` keys)."""
    return {"model": {"spec": conv_spec(quantizer, latent_dim)}, "loss": {"l1": 1.0, "l2": 1.0, **losses}}


def _base(budget: Budget) -> dict[str, Any]:
    return {"loss": {"l1": 1.0, "l2": 1.0}, "optim": {"lr": 2e-3, "ema": 0.0}}


def _more(arm: str, other: str, metric: str) -> Any:
    return lambda m: m[arm][metric] - m[other][metric]


def _positive(e: float) -> bool:
    return e > 0


class ConvStudy(Study):
    """A study on the conv tokenizer: L1 + L2, AdamW 2e-3, no EMA; arms set the quantizer."""

    def base_recipe(self) -> dict[str, Any]:
        return _base(self.budget)


@STUDIES.register("entropy-loss")
class EntropyLossStudy(ConvStudy):
    mechanism = "entropy loss of lookup-free quantization (weight 0.1, diversity 1.0)"
    paper = "MAGVIT-v2 (Yu et al. 2024); GigaTok (Xiong et al. 2025)"
    claim = "the entropy loss raises codebook usage, and reconstruction at large codebooks"
    measure = "held-out usage, perplexity and PSNR of LFQ with 2^10 and 2^16 codes, entropy weight 0 vs 0.1"
    plot_metrics = ("usage_vs_uniform", "perplexity", "psnr")

    def arms(self) -> list[Arm]:
        return [
            Arm(
                f"lfq{b}-{tag}", f"LFQ 2^{b}, entropy {w}", conv_recipe(f"lfq:bits={b},entropy_weight={w}", b)
            )
            for b in (10, 16)
            for tag, w in (("off", 0.0), ("on", 0.1))
        ]

    def checks(self) -> list[Check]:
        return [
            Check("usage-2^10", "higher usage with it at 2^10 codes", _more("lfq10-on", "lfq10-off", "usage_vs_uniform"),
                  _positive, "usage/uniform"),
            Check("usage-2^16", "higher usage with it at 2^16 codes", _more("lfq16-on", "lfq16-off", "usage_vs_uniform"),
                  _positive, "usage/uniform"),
            Check("psnr-2^16", "better reconstruction with it at 2^16 codes", _more("lfq16-on", "lfq16-off", "psnr"),
                  _positive, "dB"),
        ]  # fmt: skip


@STUDIES.register("rotation-trick")
class RotationTrickStudy(ConvStudy):
    mechanism = "rotation trick (gradient through VQ by rotation and rescaling)"
    paper = "Fifty et al. 2024, Restructuring Vector Quantization with the Rotation Trick"
    claim = "better codebook usage and reconstruction than the straight-through estimator"
    measure = "held-out usage and PSNR, VQ 1024 codes (codebook loss, no k-means init), STE vs rotation"
    plot_metrics = ("usage_vs_uniform", "perplexity", "psnr")

    def arms(self) -> list[Arm]:
        q = "vq:codebook_size=1024,update=loss,kmeans_init=false"
        return [Arm("ste", "straight-through", conv_recipe(q, 8)),
                Arm("rotation", "rotation trick", conv_recipe(q + ",rotation_trick=true", 8))]  # fmt: skip

    def checks(self) -> list[Check]:
        return [
            Check(
                "usage",
                "higher usage",
                _more("rotation", "ste", "usage_vs_uniform"),
                _positive,
                "usage/uniform",
            ),
            Check("psnr", "better reconstruction", _more("rotation", "ste", "psnr"), _positive, "dB"),
        ]


@STUDIES.register("codebook-init")
class CodebookInitStudy(ConvStudy):
    mechanism = "k-means codebook init and dead-code restarts (EMA VQ)"
    paper = (
        "k-means init (SoundStream, Zeghidour et al. 2021); dead-code restart (Jukebox, Dhariwal et al. 2020)"
    )
    claim = "fewer dead codes"
    measure = ("held-out dead-code fraction of VQ 1024 (EMA), plain vs k-means init vs restart "
               "(threshold 0.1 of the mean use) vs both; batch usage over training")  # fmt: skip
    plot_metrics = ("dead", "train_usage_mean", "psnr")

    def arms(self) -> list[Arm]:
        q = "vq:codebook_size=1024,kmeans_init={k},dead_code_threshold={t}"
        return [Arm(name, label, conv_recipe(q.format(k=k, t=t), 8)) for name, label, k, t in (
            ("plain", "random init", "false", 0.0), ("kmeans", "k-means init", "true", 0.0),
            ("restart", "dead-code restart", "false", 0.1), ("both", "k-means + restart", "true", 0.1))]  # fmt: skip

    def measure_arm(self, run: ArmRun, ctx: StudyContext) -> dict[str, float]:
        out = super().measure_arm(run, ctx)
        usage = [line["q_usage"] for line in run.log() if "q_usage" in line]
        out["train_usage_mean"] = sum(usage) / len(usage) if usage else float("nan")
        return out

    def checks(self) -> list[Check]:
        def fewer(arm: str) -> Any:
            return lambda m: m["plain"]["dead"] - m[arm]["dead"]

        return [
            Check(
                "kmeans", "k-means init leaves fewer dead codes", fewer("kmeans"), _positive, "dead fraction"
            ),
            Check("restart", "restarts leave fewer dead codes", fewer("restart"), _positive, "dead fraction"),
        ]


@STUDIES.register("cosine-codebook")
class CosineCodebookStudy(ConvStudy):
    mechanism = "cosine (l2-normalized) codebook with low-dimensional codes"
    paper = "ViT-VQGAN (Yu et al. 2022); LlamaGen (Sun et al. 2024, 8-d codes)"
    claim = "codebook usage near 100 % where the euclidean codebook collapses"
    measure = (
        "held-out usage (vs uniform) and PSNR, VQ 1024 codes of 8 dims from a 32-d latent, codebook loss"
    )
    plot_metrics = ("usage_vs_uniform", "perplexity", "psnr")

    def arms(self) -> list[Arm]:
        q = "vq:codebook_size=1024,code_dim=8,update=loss,kmeans_init=false,distance={d}"
        return [Arm(d, d, conv_recipe(q.format(d=d), 32)) for d in ("euclidean", "cosine")]

    def checks(self) -> list[Check]:
        return [
            Check("usage", "higher usage with cosine", _more("cosine", "euclidean", "usage_vs_uniform"),
                  _positive, "usage/uniform"),
            Check("near-100", "cosine usage near 100 % (>= 0.9 of uniform use)",
                  lambda m: m["cosine"]["usage_vs_uniform"], lambda e: e >= 0.9, "usage/uniform"),
            Check("collapse", "euclidean collapses (< 0.5 of uniform use)",
                  lambda m: m["euclidean"]["usage_vs_uniform"], lambda e: e < 0.5, "usage/uniform"),
        ]  # fmt: skip


@STUDIES.register("factorized")
class FactorizedStudy(ConvStudy):
    mechanism = "factorized sub-codebooks with the disentanglement loss"
    paper = "FQGAN (Bai et al. 2024, Factorized Visual Tokenization)"
    claim = "better reconstruction than one codebook at equal bits"
    measure = ("held-out PSNR and FD at 12 bits per token: VQ 4096 vs 2 x 64 sub-codebooks, "
               "disentanglement 0.1 vs 0 (all: cosine codes of 8 dims, codebook loss, k-means init)")  # fmt: skip
    plot_metrics = ("psnr", "fd")

    def arms(self) -> list[Arm]:
        common = "code_dim=8,distance=cosine,update=loss,kmeans_init=true"
        return [
            Arm("vq", "VQ 4096", conv_recipe(f"vq:codebook_size=4096,{common}", 16)),
            Arm("fvq", "2 x 64, disentangle 0.1", conv_recipe(f"fvq:num_factors=2,codebook_size=64,{common}", 16)),
            Arm("fvq-nodis", "2 x 64, disentangle 0",
                conv_recipe(f"fvq:num_factors=2,codebook_size=64,{common},disentangle_weight=0", 16)),
        ]  # fmt: skip

    def checks(self) -> list[Check]:
        return [
            Check("vs-vq", "factorized beats one codebook at equal bits (PSNR)", _more("fvq", "vq", "psnr"),
                  _positive, "dB"),
            Check("disentangle", "the disentanglement loss helps (PSNR)", _more("fvq", "fvq-nodis", "psnr"),
                  _positive, "dB"),
        ]  # fmt: skip
