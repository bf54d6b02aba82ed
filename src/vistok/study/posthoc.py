"""Studies of mechanisms applied to an already trained model: post-training quantization of a
continuous latent, and token reduction inside a trained 1D encoder."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from vistok.study.base import STUDIES, Arm, Check, Measurements, Study
from vistok.study.codebooks import ConvStudy, conv_recipe
from vistok.study.context import ArmRun, StudyContext
from vistok.study.ordering import latent1d_recipe

__all__ = ["PostTrainingQuantizationStudy", "TokenReductionStudy"]

PTQ_BITS = (2, 3)  # bits per latent channel; 4 channels: 8 and 12 bits per token
FIT_CROPS = 256


def _training_crops(ctx: StudyContext, n: int, seed: int) -> torch.Tensor:
    """``n`` random training crops at the study size, float ``[n, 3, s, s]``."""
    from vistok.train.data import ImageDataset, collect_sources

    ds = ImageDataset(collect_sources([str(ctx.train_dir())]), size=ctx.budget.size, scale=(0.25, 1.0),
                      ratio=1.333, hflip=True, resize_short=None, preload=True, seed=seed)  # fmt: skip
    return torch.stack([ds[(10_000 + i // len(ds), i % len(ds))] for i in range(n)])


@STUDIES.register("post-training-quantization")
class PostTrainingQuantizationStudy(ConvStudy):
    mechanism = "post-training per-channel quantization of a continuous latent"
    paper = "TokenBridge (Wang et al. 2025)"
    claim = "close to a trained quantizer at equal bits, with no codebook training"
    measure = ("held-out PSNR and FD at 8 and 12 bits per token (4 channels x 2 or 3 bits): PTQ of a "
               "trained continuous (KL) autoencoder vs the same model trained with FSQ 4-4-4-4 / 8-8-8-8; "
               "'close' = within 1 dB")  # fmt: skip
    plot_metrics = ("psnr", "fd")

    def arms(self) -> list[Arm]:
        arms = [Arm("continuous", "continuous (KL), unquantized", conv_recipe("gaussian:kl_weight=1e-6", 4))]
        for b in PTQ_BITS:
            levels = "-".join([str(2**b)] * 4)
            arms.append(
                Arm(
                    f"fsq{4 * b}",
                    f"trained FSQ {levels} ({4 * b} bits)",
                    conv_recipe(f"fsq:levels={levels}", 4),
                )
            )
            arms.append(
                Arm(f"ptq{4 * b}", f"PTQ {b} bits/channel ({4 * b} bits)", train=False, source="continuous")
            )
        return arms

    def measure_arm(self, run: ArmRun, ctx: StudyContext) -> dict[str, float]:
        tok = run.tokenizer()
        if not run.arm.startswith("ptq"):
            return ctx.recon_metrics(tok)
        from vistok.quantize.post_training import PostTrainingQuantizer

        bits = int(run.arm[3:]) // 4
        with torch.no_grad():
            fit = tok.encode(_training_crops(ctx, FIT_CROPS, run.seed)).latents  # [n, C, h, w]
            ptq = PostTrainingQuantizer(dim=fit.shape[1], bits=bits).fit(fit.movedim(1, -1)).eval()
            tokens = []
            for t in ctx.encode(tok):
                q = copy.copy(t)
                q.latents = ptq(t.latents.movedim(1, -1)).quantized.movedim(-1, 1)
                tokens.append(q)
            recon = ctx.decode(tok, tokens)
        return {"psnr": ctx.psnr(recon), "fd": ctx.fd(recon)}

    def checks(self) -> list[Check]:
        return [
            Check(f"close-{4 * b}", f"PTQ within 1 dB of trained FSQ at {4 * b} bits",
                  lambda m, b=b: m[f"ptq{4 * b}"]["psnr"] - m[f"fsq{4 * b}"]["psnr"], lambda e: e >= -1.0, "dB")
            for b in PTQ_BITS
        ]  # fmt: skip


MERGING = ("tome", "dymu", "matryoshka")
PRUNING = ("evit", "divprune", "kcenter")
KEEPS = (25, 50)  # percent of the encoder's patch tokens kept


@STUDIES.register("token-reduction")
class TokenReductionStudy(Study):
    mechanism = "token reduction inside a trained 1D encoder (merging: ToMe, DyMU, M3; pruning: EViT, DivPrune, k-center)"
    paper = "ToMe (Bolya et al. 2023), EViT (Liang et al. 2022), DivPrune (Alvar et al. 2025), DyMU (Wang et al. 2025), M3 (Cai et al. 2024)"
    claim = "merging beats pruning beats random at an equal number of kept tokens"
    measure = ("held-out PSNR/FD of reconstructions with 25 % and 50 % of the patch tokens kept (trained "
               "nested-dropout latent1d, all 32 tokens), group means; encode speed-up at 25 %")  # fmt: skip
    plot_kind = "per_k"
    plot_metrics = ("psnr", "fd")

    def base_recipe(self) -> dict[str, Any]:
        return latent1d_recipe(self.budget)

    def arms(self) -> list[Arm]:
        base = Arm("base", "unreduced", {"model": {"nested": "pow2", "nested_prob": 1.0}})
        return [base] + [
            Arm(m, m, train=False, source="base") for m in (*MERGING, *PRUNING, "random", "pool")
        ]

    def measure_arm(self, run: ArmRun, ctx: StudyContext) -> dict[str, float]:
        import vistok.reduce as vr
        from vistok.reduce.bench import time_interleaved

        tok = run.tokenizer()
        full = ctx.recon_metrics(tok)
        out = {"psnr@100": full["psnr"], "fd@100": full["fd"]}
        if run.arm == "base":
            return out
        x = ctx.views()
        for keep in KEEPS:
            vr.apply(tok, run.arm, keep=keep / 100)
            try:
                r = ctx.recon_metrics(tok)
            finally:
                vr.remove(tok)
            out[f"psnr@{keep}"], out[f"fd@{keep}"] = r["psnr"], r["fd"]

        def reduced() -> Any:
            vr.apply(tok, run.arm, keep=KEEPS[0] / 100)
            try:
                return tok.encode(x)
            finally:
                vr.remove(tok)

        with torch.no_grad():
            best = time_interleaved({"full": lambda: tok.encode(x), "reduced": reduced}, rounds=3)
        out["encode_speedup@25"] = best["full"] / best["reduced"]
        return out

    def checks(self) -> list[Check]:
        def group(m: Measurements, names: tuple[str, ...], keep: int) -> float:
            return float(np.mean([m[n][f"psnr@{keep}"] for n in names]))

        checks = []
        for keep in KEEPS:
            checks.append(
                Check(
                    f"merge>prune@{keep}",
                    f"merging beats pruning at {keep} % kept (mean PSNR)",
                    lambda m, k=keep: group(m, MERGING, k) - group(m, PRUNING, k),
                    lambda e: e > 0,
                    "dB",
                )
            )
            checks.append(
                Check(
                    f"prune>random@{keep}",
                    f"pruning beats random at {keep} % kept (mean PSNR)",
                    lambda m, k=keep: group(m, PRUNING, k) - m["random"][f"psnr@{k}"],
                    lambda e: e > 0,
                    "dB",
                )
            )
        return checks  # fmt: skip
