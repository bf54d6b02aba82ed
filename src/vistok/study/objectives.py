"""Studies of training objectives: latent perturbation (RobustTok) and semantic
regularization (GigaTok / VA-VAE), on the small conv tokenizer."""

from __future__ import annotations

from typing import Any

import torch

from vistok.study.base import STUDIES, Arm, Check
from vistok.study.codebooks import ConvStudy, conv_recipe
from vistok.study.context import ArmRun, StudyContext

__all__ = ["LatentPerturbationStudy", "SemanticRegularizationStudy"]

PERTURB = {"alpha": 0.1, "delta": 4}  # the benchmark's robustness suite (docs/protocol.md)


@STUDIES.register("latent-perturbation")
class LatentPerturbationStudy(ConvStudy):
    mechanism = "latent perturbation in training (10 % of ids swapped for one of their 4 nearest codes)"
    paper = "RobustTok (Qiu et al. 2025, Image Tokenizer Needs Post-Training)"
    claim = "a decoder robust to token errors: lower perturbed FD (pFID) at a small reconstruction cost"
    measure = ("held-out clean PSNR/FD and perturbed PSNR/FD (alpha 0.1, delta 4: the robustness suite's "
               "perturbation) of VQ 1024 (EMA, k-means init); 'small' = at most 1 dB clean PSNR")  # fmt: skip
    plot_metrics = ("psnr", "perturbed_psnr", "perturbed_fd")

    def arms(self) -> list[Arm]:
        q = "vq:codebook_size=1024"
        return [Arm("without", "no perturbation", conv_recipe(q, 8)),
                Arm("with", "perturbation 0.1, k=4", conv_recipe(q, 8, perturb_prob=0.1, perturb_k=4))]  # fmt: skip

    def measure_arm(self, run: ArmRun, ctx: StudyContext) -> dict[str, float]:
        from vistok.bench.items import Perturbation, perturb

        tok = run.tokenizer()
        out = ctx.recon_metrics(tok)
        gen = torch.Generator().manual_seed(run.seed)
        p = Perturbation(**PERTURB)
        tokens = []
        with torch.no_grad():
            for t in ctx.encode(tok):
                swapped = perturb(tok, t, p, gen)
                if swapped is None:
                    raise ValueError(f"{run.arm}: the tokenizer offers no neighbours() to perturb")
                tokens.append(swapped[0])
            recon = ctx.decode(tok, tokens)
        out["perturbed_psnr"], out["perturbed_fd"] = ctx.psnr(recon), ctx.fd(recon)
        return out

    def checks(self) -> list[Check]:
        return [
            Check("pfd", "lower perturbed FD with it", lambda m: m["without"]["perturbed_fd"] - m["with"]["perturbed_fd"],
                  lambda e: e > 0, "FD"),
            Check("ppsnr", "higher perturbed PSNR with it",
                  lambda m: m["with"]["perturbed_psnr"] - m["without"]["perturbed_psnr"], lambda e: e > 0, "dB"),
            Check("cost", "clean PSNR costs at most 1 dB", lambda m: m["with"]["psnr"] - m["without"]["psnr"],
                  lambda e: e >= -1.0, "dB"),
        ]  # fmt: skip


@STUDIES.register("semantic-regularization")
class SemanticRegularizationStudy(ConvStudy):
    mechanism = (
        "semantic regularization (encoder features aligned to a frozen ImageNet MobileNetV2, weight 0.5)"
    )
    paper = "GigaTok (Xiong et al. 2025); VA-VAE (Yao et al. 2025)"
    claim = "latents that are easier to generate from, at similar reconstruction"
    measure = ("the generation probe (vistok probe, a fixed small AR prior at the study size): held-out "
               "bits/token and generated-sample FD; held-out PSNR; FSQ 8-5-5-5; 'similar' = within 1 dB")  # fmt: skip
    plot_metrics = ("heldout_bits_per_token", "generation_fd", "psnr")

    def arms(self) -> list[Arm]:
        q = "fsq:levels=8-5-5-5"
        return [Arm("without", "no semantic loss", conv_recipe(q, 4)),
                Arm("with", "semantic 0.5", conv_recipe(q, 4, semantic=0.5))]  # fmt: skip

    def probe_config(self, ctx: StudyContext, seed: int) -> Any:
        from vistok.prior.probe import ProbeConfig

        if ctx.quick:
            return ProbeConfig(size=ctx.budget.size, steps=3, samples=4, reference=4, max_images=2,
                               augment="none", heldout_augment="none", seed=seed, threads=ctx.budget.threads)  # fmt: skip
        return ProbeConfig(size=ctx.budget.size, steps=300, samples=64, reference=64, seed=seed,
                           threads=ctx.budget.threads)  # fmt: skip

    def measure_arm(self, run: ArmRun, ctx: StudyContext) -> dict[str, float]:
        from vistok.prior.probe import run_probe

        out = ctx.recon_metrics(run.tokenizer())
        folder = run.folder / "probe"
        probe = run_probe(
            str(run.folder / "model"), folder, self.probe_config(ctx, run.seed), progress=ctx.progress
        )
        out["heldout_bits_per_token"] = probe["heldout_nll"]["bits_per_token"]
        out["generation_fd"] = probe["generation"]["fd_mobilenet_v2"]
        return out

    def checks(self) -> list[Check]:
        return [
            Check("nll", "lower held-out bits/token of the probe prior with it",
                  lambda m: m["without"]["heldout_bits_per_token"] - m["with"]["heldout_bits_per_token"],
                  lambda e: e > 0, "bits/token"),
            Check("gfd", "lower generated-sample FD with it",
                  lambda m: m["without"]["generation_fd"] - m["with"]["generation_fd"], lambda e: e > 0, "FD"),
            Check("recon", "reconstruction within 1 dB", lambda m: m["with"]["psnr"] - m["without"]["psnr"],
                  lambda e: e >= -1.0, "dB"),
        ]  # fmt: skip
