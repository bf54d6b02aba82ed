"""The training loop: explicit steps, readable top to bottom.

:class:`Trainer` builds everything from a :class:`~vistok.train.config.TrainConfig` and
:meth:`Trainer.fit` runs::

    for step in range(start, steps):
        set_lr(step)                                  # warmup + cosine
        for micro in range(accum):                    # gradient accumulation
            images = next_batch()
            out, terms = generator_forward(images)    # model + weighted losses
            backward(terms)                           # NaN/Inf guard first
            discriminator_step(images, out)           # after loss.gan_start
        optimizer_step()                              # clip, AdamW, EMA
        log / grid / checkpoint

Determinism: the global torch RNG is re-seeded from ``(seed, step, micro, rank)`` before
every micro-step (nested-dropout draws, k-means init, token perturbation), and the data
stream is a pure function of its position (:mod:`vistok.train.data`). A checkpoint
therefore only needs tensors, the step and the data position to resume bit-identically.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn

from vistok.models._base import ModelOutput
from vistok.train import checkpoint as ckpt
from vistok.train.config import TrainConfig, dump_config
from vistok.train.data import ImageDataset, build_loader, center_crop, collect_sources
from vistok.train.discriminator import (
    LeCam,
    PatchDiscriminator,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    last_layer,
)
from vistok.train.dist import DistInfo, barrier, setup
from vistok.train.ema import EMA
from vistok.train.losses import SemanticAlignLoss

__all__ = ["TokenPerturbation", "TrainModule", "Trainer", "TrainingDiverged", "lr_at", "train"]


class TrainingDiverged(RuntimeError):
    """A loss term or the gradient norm became NaN/Inf (message names the step and term)."""


def lr_at(step: int, *, lr: float, warmup: int, steps: int, min_ratio: float) -> float:
    """Linear warmup to ``lr`` over ``warmup`` steps, then cosine decay to ``lr * min_ratio``."""
    if warmup > 0 and step < warmup:
        return lr * (step + 1) / warmup
    span = max(1, steps - warmup)
    t = min(1.0, (step - warmup) / span)
    return lr * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def _seed_for(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


class TokenPerturbation:
    """RobustTok-style latent perturbation as a forward hook on ``model.quantizer``.

    While :attr:`prob` > 0, each token index is, with probability ``prob``, replaced by one
    of its ``k`` nearest codebook neighbours (``quantizer.neighbours``), and the decoder
    receives ``quantizer.codes`` of the new index (no gradient through swapped positions;
    straight-through elsewhere). One forward pass, any family: the hook edits the
    :class:`~vistok.quantize.base.QuantizerOutput` the model feeds its decoder.
    """

    def __init__(self, quantizer: nn.Module, k: int):
        self.k = k
        self.prob = 0.0
        self.handle = quantizer.register_forward_hook(self)

    def __call__(self, module: nn.Module, inputs: Any, output: Any) -> Any:
        if self.prob <= 0.0 or not module.training or output.indices is None:
            return None
        idx = output.indices
        nb = module.neighbours(idx, self.k)  # [..., k]
        pick = torch.randint(0, self.k, idx.shape, device=idx.device)
        swapped = nb.gather(-1, pick.unsqueeze(-1)).squeeze(-1)
        mask = torch.rand(idx.shape, device=idx.device) < self.prob
        new_idx = torch.where(mask, swapped, idx)
        tok_mask = mask.any(-1) if idx.ndim == output.quantized.ndim else mask
        codes = module.codes(new_idx).to(output.quantized.dtype).detach()
        quantized = torch.where(tok_mask.unsqueeze(-1), codes, output.quantized)
        return replace(output, quantized=quantized, indices=new_idx)


class TrainModule(nn.Module):
    """The model plus trainable loss parts (semantic projection), wrapped by DDP as one.

    ``forward(images)`` -> ``(ModelOutput, semantic loss or None)``.
    """

    def __init__(self, model: nn.Module, semantic: SemanticAlignLoss | None):
        super().__init__()
        self.model = model
        self.semantic = semantic

    def forward(self, images: Tensor) -> tuple[ModelOutput, Tensor | None]:
        out = self.model(images)
        sem = self.semantic(images, out) if self.semantic is not None else None
        return out, sem


class DiscModule(nn.Module):
    """PatchGAN + LeCam state; ``forward(real, fake)`` -> ``(hinge loss, lecam term, stats)``."""

    def __init__(self, disc: PatchDiscriminator, lecam: LeCam):
        super().__init__()
        self.disc = disc
        self.lecam = lecam

    def forward(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        logits = self.disc(torch.cat([real, fake]))
        lr_, lf = logits.float().chunk(2)
        return hinge_d_loss(lr_, lf), self.lecam(lr_, lf), lr_.mean().detach(), lf.mean().detach()


def _build_model(cfg: TrainConfig) -> nn.Module:
    import vistok
    from vistok.registry import TOKENIZERS

    vistok.list()  # registers the families
    over: dict[str, Any] = {}
    if cfg.model.nested is not None:
        over["nested"] = cfg.model.nested
    if cfg.model.nested_prob is not None:
        over["nested_prob"] = cfg.model.nested_prob
    model = TOKENIZERS.create(cfg.model.spec, **over)
    if cfg.model.init_from:
        src = cfg.model.init_from
        init = vistok.create(src)  # a checkpoint folder, a registered name, NAME:weights=PATH
        missing, unexpected = model.load_state_dict(init.state_dict(), strict=False)
        if missing or unexpected:
            raise ValueError(
                f"model.init_from={src!r} does not match {cfg.model.spec!r}: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}"
            )
    return model


class Trainer:
    """Everything one training run needs; :meth:`fit` runs it (see the module docstring).

    Args:
        cfg: the resolved recipe.
        out_dir: run folder (``checkpoints/``, ``grids/``, ``metrics.jsonl``, ``model/``).
        resume: continue from the newest complete checkpoint in ``out_dir`` when there is one.
    """

    def __init__(self, cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False):
        self.cfg = cfg
        self.out = Path(out_dir)
        if cfg.run.threads:
            torch.set_num_threads(cfg.run.threads)
        self.dist: DistInfo = setup(cfg.run.device)
        self.device = self.dist.device
        if cfg.run.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("run.precision=fp16 needs a GPU (use bf16 on CPU)")
        torch.manual_seed(cfg.run.seed)  # identical initial weights on every rank
        self.model = _build_model(cfg).to(self.device)
        if cfg.model.channels_last and any(isinstance(m, nn.Conv2d) for m in self.model.modules()):
            self.model = self.model.to(memory_format=torch.channels_last)
        self.model.train()
        self.nested_mode = getattr(self.model, "nested", None)
        self._build_data()
        self._build_losses()
        self._build_optim()
        self.step = 0
        self.micro = 0  # micro-batches consumed on each rank (the data position)
        self.history: list[dict[str, Any]] = []
        if resume:
            self._resume()
        if self.step == 0 and cfg.model.warm_start > 0:
            self._warm_start(cfg.model.warm_start)
        self.loader_iter = self._make_loader_iter()
        self._tb = None
        self._grid_images = self._fixed_grid_images()

    # ---- construction ----------------------------------------------------------------
    def _build_data(self) -> None:
        d = self.cfg.data
        items = collect_sources(d.sources, d.optional_sources)
        self.dataset = ImageDataset(
            items,
            size=d.size,
            scale=(d.min_scale, d.max_scale),
            ratio=d.ratio,
            hflip=d.hflip,
            resize_short=d.resize_short,
            preload=d.preload,
            seed=self.cfg.run.seed,
        )

    def _warm_start(self, n: int) -> None:
        """Call ``model.warm_start(images)`` (models that have one, e.g. the PCA path of
        ``latent1d-grid``) on ``n`` training crops drawn apart from the training stream;
        models already warm-started (``init_from``) are left alone."""
        warm = getattr(self.model, "warm_start", None)
        if warm is None or bool(getattr(self.model, "warm_started", False)):
            return
        m = len(self.dataset)
        images = torch.stack([self.dataset[(2**20 + i // m, i % m)] for i in range(n)]).to(self.device)
        size = self.model.input_size
        if size and images.shape[-1] != size:
            images = torch.nn.functional.interpolate(
                images, size=(size, size), mode="bicubic", align_corners=False, antialias=True
            ).clamp(0, 1)
        warm(images)
        if self.ema is not None:  # the EMA starts from the warm-started weights
            self.ema.module.load_state_dict(self.model.state_dict())

    def _make_loader_iter(self) -> Iterator[Tensor]:
        loader = build_loader(
            self.dataset,
            self.cfg.data.batch_size,
            seed=self.cfg.run.seed,
            start=self.micro,
            rank=self.dist.rank,
            world=self.dist.world,
            workers=self.cfg.data.workers,
        )
        return iter(loader)

    def _encoder_dim(self) -> tuple[int, tuple[int, int] | None]:
        size = self.model.input_size or self.cfg.data.size
        with torch.no_grad():
            was = self.model.training
            self.model.eval()
            out = self.model(torch.zeros(1, 3, size, size, device=self.device))
            self.model.train(was)
        f = out.features["encoder"]
        return (f.shape[1], None) if f.ndim == 4 else (f.shape[-1], getattr(self.model, "grid", None))

    def _build_losses(self) -> None:
        from vistok.registry import LOSSES

        lc = self.cfg.loss
        self.losses: dict[str, tuple[float, nn.Module]] = {}
        if lc.l1:
            self.losses["l1"] = (lc.l1, LOSSES.create("l1"))
        if lc.l2:
            self.losses["l2"] = (lc.l2, LOSSES.create("l2"))
        if lc.perceptual:
            self.losses["perceptual"] = (
                lc.perceptual,
                LOSSES.create("perceptual", layers=lc.perceptual_layers),
            )
        if lc.lpips:
            self.losses["lpips"] = (lc.lpips, LOSSES.create("lpips", weights=lc.lpips_weights))
        for _, m in self.losses.values():
            m.to(self.device)
        semantic = None
        if lc.semantic:
            dim, grid = self._encoder_dim()
            semantic = SemanticAlignLoss(dim, lc.semantic_layer, grid=grid).to(self.device)
        self.module = TrainModule(self.model, semantic)
        self.ddp: nn.Module = self.module
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.ddp = DDP(self.module, device_ids=ids, find_unused_parameters=self.cfg.run.find_unused)
        self.perturb = (
            TokenPerturbation(self.model.quantizer, lc.perturb_k)
            if lc.perturb_prob > 0 and self.model.has_neighbours
            else None
        )
        self.disc: DiscModule | None = None
        self.ddp_disc: nn.Module | None = None
        if lc.gan > 0:
            self.disc = DiscModule(PatchDiscriminator(lc.disc_width, lc.disc_layers), LeCam(lc.lecam_decay))
            self.disc.to(self.device)
            self.ddp_disc = self.disc
            if self.dist.distributed:
                from torch.nn.parallel import DistributedDataParallel as DDP

                ids = [self.device.index] if self.device.type == "cuda" else None
                self.ddp_disc = DDP(self.disc, device_ids=ids)

    def _build_optim(self) -> None:
        oc = self.cfg.optim
        params = [p for p in self.module.parameters() if p.requires_grad]
        decay = [p for p in params if p.ndim >= 2]
        no_decay = [p for p in params if p.ndim < 2]
        self.opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": oc.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=oc.lr,
            betas=(oc.betas[0], oc.betas[1]),
        )
        self.opt_d = (
            torch.optim.AdamW(self.disc.parameters(), lr=self.cfg.loss.disc_lr, betas=(0.5, 0.9))
            if self.disc is not None
            else None
        )
        self.ema = EMA(self.model, oc.ema) if oc.ema > 0 else None
        fp16 = self.cfg.run.precision == "fp16"
        self.scaler = torch.amp.GradScaler("cuda", enabled=fp16)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=fp16)

    # ---- helpers -----------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        p = self.cfg.run.precision
        if p == "fp32":
            return contextlib.nullcontext()
        dtype = torch.bfloat16 if p == "bf16" else torch.float16
        return torch.autocast(device_type=self.device.type, dtype=dtype)

    def _check(self, step: int, name: str, value: Tensor) -> None:
        if not torch.isfinite(value).all():
            raise TrainingDiverged(
                f"step {step}: loss term {name!r} is {value.item()} (not finite); stopping. "
                f"The last good checkpoint is kept in {self.out / 'checkpoints'}."
            )

    def next_batch(self) -> Tensor:
        """The next micro-batch: float ``[B, 3, size, size]`` in [0, 1] on the device."""
        images = next(self.loader_iter)
        self.micro += 1
        images = images.to(self.device, non_blocking=True)
        if self.model.input_size and images.shape[-1] != self.model.input_size:
            images = torch.nn.functional.interpolate(
                images, size=(self.model.input_size,) * 2, mode="bicubic", align_corners=False, antialias=True
            ).clamp(0, 1)
        return images

    # ---- one step ----------------------------------------------------------------------
    def generator_forward(self, images: Tensor, step: int) -> tuple[ModelOutput, dict[str, Tensor], Tensor]:
        """Model forward and every generator-side loss term.

        Returns:
            ``(out, terms, total)``: ``terms`` maps names to *unweighted* float32 scalars
            (plus ``gan_weight`` when the adaptive GAN weight is on); ``total`` is the
            weighted sum to back-propagate.
        """
        lc = self.cfg.loss
        with self._autocast():
            out, sem = self.ddp(images)
        terms: dict[str, Tensor] = {}
        rec = images.new_zeros((), dtype=torch.float32)
        for name, (w, fn) in self.losses.items():
            with self._autocast():
                v = fn(images, out).float()
            terms[name] = v
            rec = rec + w * v
        total = rec
        if lc.quantizer:
            terms["quantizer"] = out.loss.float()
            total = total + lc.quantizer * terms["quantizer"]
        if sem is not None:
            terms["semantic"] = sem.float()
            total = total + lc.semantic * terms["semantic"]
        if self.disc is not None and step >= lc.gan_start:
            self.disc.requires_grad_(False)
            with self._autocast():
                g = hinge_g_loss(self.disc.disc(out.reconstruction).float())
            self.disc.requires_grad_(True)
            terms["gan_g"] = g
            w = (
                adaptive_weight(rec, g, last_layer(self.model))
                if lc.gan_adaptive and torch.is_grad_enabled()
                else torch.ones((), device=g.device)
            )
            terms["gan_weight"] = w
            total = total + lc.gan * w * g
        return out, terms, total

    def discriminator_step(self, images: Tensor, fake: Tensor, step: int, scale: float) -> dict[str, Tensor]:
        """Hinge (+ LeCam) loss of the discriminator on real ``images`` and detached ``fake``; backward."""
        assert self.ddp_disc is not None
        with self._autocast():
            d_loss, lecam, real_m, fake_m = self.ddp_disc(images, fake.detach().clamp(0, 1))
        total = d_loss + self.cfg.loss.lecam * lecam
        self._check(step, "disc", total)
        self.scaler_d.scale(total * scale).backward()
        return {"disc": d_loss.detach(), "lecam": lecam.detach(), "logit_real": real_m, "logit_fake": fake_m}

    def train_step(self, step: int) -> dict[str, float]:
        """One optimizer step (``optim.accum`` micro-batches); returns the logged values."""
        cfg = self.cfg
        lr = lr_at(step, lr=cfg.optim.lr, warmup=cfg.schedule.warmup, steps=cfg.schedule.steps,
                   min_ratio=cfg.schedule.min_lr_ratio)  # fmt: skip
        for g in self.opt.param_groups:
            g["lr"] = lr
        if self.nested_mode is not None:
            self.model.nested = "none" if step < cfg.model.nested_start else self.nested_mode
        if self.perturb is not None:
            self.perturb.prob = cfg.loss.perturb_prob if step >= cfg.loss.perturb_start else 0.0
        gan_on = self.disc is not None and step >= cfg.loss.gan_start
        self.opt.zero_grad(set_to_none=True)
        if self.opt_d is not None:
            self.opt_d.zero_grad(set_to_none=True)
        acc: dict[str, float] = {}
        accum = cfg.optim.accum
        for micro in range(accum):
            images = self.next_batch()
            torch.manual_seed(_seed_for(cfg.run.seed, step, micro, self.dist.rank))
            last = micro == accum - 1
            sync = self.ddp.no_sync() if (self.dist.distributed and not last) else contextlib.nullcontext()  # type: ignore[operator]
            with sync:
                out, terms, total = self.generator_forward(images, step)
                for name, v in terms.items():
                    self._check(step, name, v)
                self.scaler.scale(total / accum).backward()
            logged = {k: float(v.detach()) for k, v in terms.items()}
            logged["loss"] = float(total.detach())
            with torch.no_grad():
                mse = (out.reconstruction.detach().float().clamp(0, 1) - images).pow(2).mean()
                logged["psnr"] = float(-10 * torch.log10(mse.clamp_min(1e-10)))
            for k, v in out.stats.items():
                if isinstance(v, Tensor) and v.numel() == 1:
                    logged[f"q_{k}"] = float(v)
            if gan_on:
                assert self.ddp_disc is not None
                dsync = (
                    self.ddp_disc.no_sync()
                    if (self.dist.distributed and not last)
                    else contextlib.nullcontext()
                )  # type: ignore[operator]
                with dsync:
                    d_terms = self.discriminator_step(images, out.reconstruction, step, 1 / accum)
                logged.update({k: float(v) for k, v in d_terms.items()})
            for k, v in logged.items():
                acc[k] = acc.get(k, 0.0) + v / accum
        acc["grad_norm"] = self.optimizer_step(step)
        acc["lr"] = lr
        return acc

    def optimizer_step(self, step: int) -> float:
        """Unscale, clip, AdamW step (generator and discriminator), EMA update; returns the grad norm."""
        params = [p for g in self.opt.param_groups for p in g["params"]]
        self.scaler.unscale_(self.opt)
        clip = self.cfg.optim.grad_clip
        norm = torch.nn.utils.clip_grad_norm_(params, clip if clip > 0 else float("inf"))
        if not self.scaler.is_enabled():
            self._check(step, "grad_norm", norm)
        self.scaler.step(self.opt)
        self.scaler.update()
        if self.opt_d is not None and any(p.grad is not None for p in self.disc.parameters()):  # type: ignore[union-attr]
            self.scaler_d.step(self.opt_d)
            self.scaler_d.update()
        if self.ema is not None and step >= self.cfg.optim.ema_start:
            self.ema.update(self.model, step - self.cfg.optim.ema_start)
        return float(norm)

    # ---- outputs -----------------------------------------------------------------------
    def _fixed_grid_images(self) -> Tensor:
        n = min(self.cfg.log.grid_images, len(self.dataset))
        size = self.model.input_size or self.cfg.data.size
        picks = np.linspace(0, len(self.dataset) - 1, n).round().astype(int)
        arrs = [center_crop(self.dataset.image(int(i)), size) for i in picks]
        return torch.from_numpy(np.stack(arrs)).permute(0, 3, 1, 2).float() / 255.0

    @torch.no_grad()
    def save_grid(self, step: int) -> Path | None:
        """Write ``grids/step-N.png``: originals on top, reconstructions below (EMA weights when
        on; for variable-length models one row per token count)."""
        if not self.dist.is_main or len(self._grid_images) == 0:
            return None
        model = self.ema.module if self.ema is not None else self.model
        was = model.training
        model.eval()
        x = self._grid_images.to(self.device)
        rows = [x]
        n = model.max_tokens or 0
        counts = sorted({max(1, n // 16), max(1, n // 4), n}) if model.variable_length else [None]
        for k in counts:
            rows.append(model.reconstruct(x, num_tokens=k).float().clamp(0, 1))
        model.train(was)
        grid = torch.cat([torch.cat(list(r), dim=2) for r in rows], dim=1)  # [3, rows*H, n*W]
        arr = (grid.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)
        path = self.out / "grids" / f"step-{step:08d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(path)
        return path

    def log(self, step: int, values: dict[str, float], elapsed: float) -> None:
        """Append a JSONL line (and TensorBoard scalars when available); rank 0 only."""
        if not self.dist.is_main:
            return
        rec = {"step": step, "time": round(elapsed, 2), **{k: round(v, 6) for k, v in values.items()}}
        self.history.append(rec)
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if self.cfg.log.tensorboard and self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.out / "tb"))
            except ImportError:
                self._tb = False
        if self._tb:
            for k, v in values.items():
                self._tb.add_scalar(k, v, step)

    def save(self, step: int) -> Path | None:
        """Write a checkpoint after ``step`` optimizer steps (rank 0; all ranks wait)."""
        path = None
        if self.dist.is_main:
            opt_t, opt_rest = ckpt.optimizer_state(self.opt)
            groups: dict[str, dict[str, Tensor]] = {"model": self.model.state_dict(), "optim": opt_t}
            state: dict[str, Any] = {"micro_batches": self.micro, "optim": opt_rest,
                                     "scaler": self.scaler.state_dict(), "world": self.dist.world,
                                     "rng": "torch global RNG re-seeded from (seed, step, micro, rank) each micro-step"}  # fmt: skip
            if self.module.semantic is not None:
                groups["aux"] = self.module.semantic.proj.state_dict()
            if self.ema is not None:
                groups["ema"] = self.ema.state_dict()
            if self.disc is not None and self.opt_d is not None:
                groups["disc"] = self.disc.state_dict()
                d_t, d_rest = ckpt.optimizer_state(self.opt_d)
                groups["optim_disc"] = d_t
                state["optim_disc"] = d_rest
                state["scaler_disc"] = self.scaler_d.state_dict()
            path = ckpt.save_checkpoint(self.out / "checkpoints", step, groups, state, dump_config(self.cfg),
                                        keep=self.cfg.log.keep)  # fmt: skip
        barrier()
        return path

    def _resume(self) -> None:
        folder = ckpt.find_latest(self.out / "checkpoints")
        if folder is None:
            if self.dist.is_main:
                print(
                    f"--resume: no checkpoint in {self.out / 'checkpoints'}; starting from step 0",
                    file=sys.stderr,
                )
            return
        groups, state = ckpt.load_checkpoint(folder)
        if state.get("world", 1) != self.dist.world:
            raise ValueError(
                f"{folder}: saved with {state.get('world')} process(es), resuming with {self.dist.world}; "
                "the data position would not match"
            )
        self.model.load_state_dict(groups["model"])
        ckpt.restore_optimizer(self.opt, groups.get("optim", {}), state["optim"])
        self.scaler.load_state_dict(state.get("scaler", {}))
        if self.module.semantic is not None and "aux" in groups:
            self.module.semantic.proj.load_state_dict(groups["aux"])
        if self.ema is not None and "ema" in groups:
            self.ema.load_state_dict(groups["ema"])
        if self.disc is not None and self.opt_d is not None and "disc" in groups:
            self.disc.load_state_dict(groups["disc"])
            ckpt.restore_optimizer(self.opt_d, groups.get("optim_disc", {}), state["optim_disc"])
            self.scaler_d.load_state_dict(state.get("scaler_disc", {}))
        self.step = int(state["step"])
        self.micro = int(state["micro_batches"])
        if self.dist.is_main:
            print(f"resumed from {folder} (step {self.step})", file=sys.stderr)

    def export(self) -> Path | None:
        """Save the final model (EMA weights when on) with ``save_pretrained`` into ``model/``."""
        from vistok.hub import save_pretrained

        if not self.dist.is_main:
            return None
        model = self.ema.module if self.ema is not None else self.model
        return save_pretrained(model, self.out / "model")

    # ---- the loop ----------------------------------------------------------------------
    def fit(self, max_steps: int | None = None) -> dict[str, Any]:
        """Train from :attr:`step` to ``schedule.steps``; export; return a summary.

        Args:
            max_steps: stop after this many steps in this call (a checkpoint is written, no
                export) -- an interruption on purpose; ``--resume`` continues exactly.
        """
        from vistok.utils.progress import progress

        cfg = self.cfg
        if self.dist.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            (self.out / "config.yaml").write_text(dump_config(cfg))
            if self.dataset.report.skipped:
                print(self.dataset.report.summary(), file=sys.stderr)
        total = cfg.schedule.steps
        bar = progress(total=total, initial=self.step, enabled=cfg.log.progress and self.dist.is_main,
                       unit="step", desc="train")  # fmt: skip
        t0 = time.monotonic()
        start = self.step
        stopped_early = False
        last: dict[str, float] = {}
        while self.step < total:
            step = self.step
            last = self.train_step(step)
            self.step = step + 1
            elapsed = time.monotonic() - t0
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}", psnr=f"{last['psnr']:.2f}",
                            usage=f"{last.get('q_usage', float('nan')):.3f}")  # fmt: skip
            if self.step % cfg.log.every == 0 or self.step == total:
                self.log(self.step, last, elapsed)
            if cfg.log.grid_every and self.step % cfg.log.grid_every == 0:
                self.save_grid(self.step)
            timeout = cfg.schedule.max_minutes is not None and elapsed > 60 * cfg.schedule.max_minutes
            interrupted = max_steps is not None and self.step - start >= max_steps and self.step < total
            if interrupted:
                self.save(self.step)
                bar.close()
                return {"step": self.step, "stopped_early": True, "last": last, "model": None,
                        "skipped_images": len(self.dataset.report.skipped)}  # fmt: skip
            if self.step % cfg.log.ckpt_every == 0 or self.step == total or timeout:
                self.save(self.step)
            if timeout:
                stopped_early = self.step < total
                break
        bar.close()
        self.save_grid(self.step)
        exported = self.export()
        barrier()
        return {"step": self.step, "stopped_early": stopped_early, "last": last, "model": exported,
                "skipped_images": len(self.dataset.report.skipped)}  # fmt: skip


def train(cfg: TrainConfig, out_dir: str | Path, *, resume: bool = False) -> dict[str, Any]:
    """Build a :class:`Trainer` and run it; see :meth:`Trainer.fit`."""
    return Trainer(cfg, out_dir, resume=resume).fit()
