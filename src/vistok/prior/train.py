"""Training a prior on token ids held in memory: an explicit loop, exact resume, EMA, DDP.

Reused from :mod:`vistok.train` (the tokenizer trainer) rather than rewritten:
:func:`~vistok.train.trainer.lr_at` (warmup + cosine), the per-step seeding
:func:`~vistok.train.trainer._seed_for`, :class:`~vistok.train.ema.EMA`,
:mod:`~vistok.train.checkpoint` (safetensors groups + ``state.json`` written last, pruning,
optimizer flattening) and :mod:`~vistok.train.dist` (torchrun setup, DDP over gloo/NCCL).
Not reused: the image data pipeline, losses and discriminator (a prior reads token tensors,
all of which fit in memory: 100k images of 256 tokens are 200 MB of int64).

Determinism: batch ``s`` of rank ``r`` (of ``W``) holds positions ``[(s W + r) B, (s W + r + 1) B)``
of the sample stream, position ``p`` being item ``perm_e[p mod n]`` of epoch ``e = p // n``
with ``perm_e`` seeded by ``(seed, e)``; the global RNG is re-seeded from
``(seed, step, rank)`` before every step (MaskGIT masks, label dropout). A checkpoint is
therefore tensors plus the step, and ``resume`` continues bit-identically.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vistok.prior.base import Prior, create_prior, save_prior
from vistok.prior.space import TokenSpace
from vistok.train import checkpoint as ckpt
from vistok.train.dist import DistInfo, barrier, setup
from vistok.train.ema import EMA
from vistok.train.trainer import TrainingDiverged, _seed_for, lr_at

__all__ = ["PriorTrainConfig", "PriorTrainer", "TokenData", "evaluate_nll"]


@dataclass
class TokenData:
    """Token ids in memory: ``ids`` long ``[n, *token_shape]``; ``lengths`` long ``[n]`` for
    variable-length 1D tokens; ``labels`` long ``[n]`` for class-conditional priors."""

    ids: Tensor
    lengths: Tensor | None = None
    labels: Tensor | None = None

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def take(self, index: Tensor) -> tuple[Tensor, Tensor | None, Tensor | None]:
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return self.ids[index], pick(self.lengths), pick(self.labels)


@dataclass
class PriorTrainConfig:
    """A prior training run (saved with every checkpoint and the exported model).

    Attributes:
        prior: the prior spec (``ar:dim=256,depth=6``, ``maskgit:steps=12``).
        max_digit: widest digit softmax when ids are factorized (:class:`TokenSpace`).
        steps, batch_size: optimizer steps and items per step per rank.
        lr, warmup, min_lr_ratio: peak learning rate, linear warmup steps, cosine floor.
        weight_decay, betas, grad_clip: AdamW and global-norm clipping (0: off).
        ema: EMA decay of the exported weights (0: off, export the raw weights).
        seed, threads, device: reproducibility and placement (threads 0: torch's default).
        log_every, ckpt_every, keep: JSONL log period, checkpoint period, checkpoints kept.
        max_minutes: stop (checkpoint + export) after this wall time; ``None``: run all steps.
    """

    prior: str = "ar:dim=256,depth=6,heads=4"
    max_digit: int = 1024
    steps: int = 2000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.05
    betas: list[float] = field(default_factory=lambda: [0.9, 0.95])
    grad_clip: float = 1.0
    ema: float = 0.0
    seed: int = 0
    threads: int = 0
    device: str = "cpu"
    log_every: int = 50
    ckpt_every: int = 500
    keep: int = 2
    max_minutes: float | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PriorTrainConfig:
        known = set(cls.__dataclass_fields__)
        bad = sorted(set(d) - known)
        if bad:
            raise ValueError(f"unknown prior training option(s) {bad}; valid: {sorted(known)}")
        return cls(**d)


class PriorTrainer:
    """One prior training run (see the module docstring); :meth:`fit` runs it.

    Args:
        cfg: the run's configuration.
        space: what the prior generates (from the token dataset).
        data: the training tokens.
        out_dir: run folder: ``checkpoints/``, ``metrics.jsonl``, ``model/`` (the exported prior).
        resume: continue from the newest complete checkpoint in ``out_dir``.
        extra: JSON-able facts recorded in the exported ``config.json`` (e.g. the token
            dataset and its tokenizer, which ``vistok prior sample`` decodes with).
    """

    def __init__(
        self,
        cfg: PriorTrainConfig,
        space: TokenSpace,
        data: TokenData,
        out_dir: str | Path,
        *,
        resume: bool = False,
        extra: dict[str, Any] | None = None,
    ):
        self.cfg, self.space, self.data, self.out = cfg, space, data, Path(out_dir)
        self.extra = extra or {}
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        if len(data) == 0:
            raise ValueError("no training tokens")
        self.dist: DistInfo = setup(cfg.device)
        self.device = self.dist.device
        torch.manual_seed(cfg.seed)  # identical initial weights on every rank
        self.prior: Prior = create_prior(cfg.prior, space).to(self.device)
        if data.labels is not None and self.prior.num_classes == 0:
            print(
                "note: the tokens carry labels; the prior is unconditional (num_classes=0)", file=sys.stderr
            )
        self.model: torch.nn.Module = self.prior
        if self.dist.distributed:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.model = DDP(self.prior, device_ids=ids)
        params = [p for p in self.prior.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(
            [
                {"params": [p for p in params if p.ndim >= 2], "weight_decay": cfg.weight_decay},
                {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
            ],
            lr=cfg.lr,
            betas=(cfg.betas[0], cfg.betas[1]),
        )
        self.ema = EMA(self.prior, cfg.ema) if cfg.ema > 0 else None
        self.step = 0
        self.history: list[dict[str, Any]] = []
        if resume:
            self._resume()

    # ---- data --------------------------------------------------------------------------
    def batch_indices(self, step: int) -> Tensor:
        """Item indices of this rank's batch at ``step`` (see the module docstring)."""
        n, b, w = len(self.data), self.cfg.batch_size, self.dist.world
        first = (step * w + self.dist.rank) * b
        pos = np.arange(first, first + b)
        epochs = pos // n
        out = np.empty(b, dtype=np.int64)
        for e in np.unique(epochs):
            perm = np.random.default_rng([self.cfg.seed, int(e)]).permutation(n)
            sel = epochs == e
            out[sel] = perm[pos[sel] % n]
        return torch.from_numpy(out)

    # ---- one step ----------------------------------------------------------------------
    def train_step(self, step: int) -> dict[str, float]:
        cfg = self.cfg
        lr = lr_at(step, lr=cfg.lr, warmup=cfg.warmup, steps=cfg.steps, min_ratio=cfg.min_lr_ratio)
        for g in self.opt.param_groups:
            g["lr"] = lr
        ids, lengths, labels = self.data.take(self.batch_indices(step))
        to = lambda t: None if t is None else t.to(self.device)  # noqa: E731
        torch.manual_seed(_seed_for(cfg.seed, step, self.dist.rank))
        self.prior.train()
        loss = self.model(ids.to(self.device), to(lengths), to(labels))
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"step {step}: prior loss is {loss.item()} (not finite); the last good checkpoint is in "
                f"{self.out / 'checkpoints'}"
            )
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(
            self.prior.parameters(), cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        )
        self.opt.step()
        if self.ema is not None:
            self.ema.update(self.prior, step)
        return {"loss": float(loss.detach()), "bits_per_token": float(loss.detach()) / np.log(2),
                "grad_norm": float(norm), "lr": lr}  # fmt: skip

    # ---- state -------------------------------------------------------------------------
    def config_text(self) -> str:
        return json.dumps({"train": asdict(self.cfg), "space": self.space.to_json(), **self.extra}, indent=1)

    def save(self) -> Path | None:
        path = None
        if self.dist.is_main:
            opt_t, opt_rest = ckpt.optimizer_state(self.opt)
            groups = {"model": self.prior.state_dict(), "optim": opt_t}
            if self.ema is not None:
                groups["ema"] = self.ema.state_dict()
            state = {"optim": opt_rest, "world": self.dist.world}
            path = ckpt.save_checkpoint(self.out / "checkpoints", self.step, groups, state, self.config_text(),
                                        keep=self.cfg.keep)  # fmt: skip
        barrier()
        return path

    def _resume(self) -> None:
        folder = ckpt.find_latest(self.out / "checkpoints")
        if folder is None:
            return
        groups, state = ckpt.load_checkpoint(folder)
        if state.get("world", 1) != self.dist.world:
            raise ValueError(
                f"{folder}: saved with {state.get('world')} process(es), resuming with {self.dist.world}"
            )
        self.prior.load_state_dict(groups["model"])
        ckpt.restore_optimizer(self.opt, groups.get("optim", {}), state["optim"])
        if self.ema is not None and "ema" in groups:
            self.ema.load_state_dict(groups["ema"])
        self.step = int(state["step"])
        if self.dist.is_main:
            print(f"resumed from {folder} (step {self.step})", file=sys.stderr)

    def export(self) -> Path | None:
        """Save the final prior (EMA weights when on) into ``model/`` (:func:`save_prior`)."""
        if not self.dist.is_main:
            return None
        prior = self.ema.module if self.ema is not None else self.prior
        return save_prior(prior, self.out / "model", extra={"train": asdict(self.cfg), **self.extra})  # type: ignore[arg-type]

    def log(self, values: dict[str, float], elapsed: float) -> None:
        if not self.dist.is_main:
            return
        rec = {"step": self.step, "time": round(elapsed, 2), **{k: round(v, 6) for k, v in values.items()}}
        self.history.append(rec)
        self.out.mkdir(parents=True, exist_ok=True)
        with open(self.out / "metrics.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")

    # ---- the loop ----------------------------------------------------------------------
    def fit(self, max_steps: int | None = None, *, progress: bool = True) -> dict[str, Any]:
        """Train from :attr:`step` to ``cfg.steps`` and export; ``max_steps`` stops early on
        purpose (checkpoint, no export) so that ``resume`` can be tested."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        bar = tqdm(total=cfg.steps, initial=self.step, disable=not (progress and self.dist.is_main) or None,
                   unit="step", dynamic_ncols=True, desc="prior")  # fmt: skip
        t0, start, last = time.monotonic(), self.step, {}
        stopped_early = False
        while self.step < cfg.steps:
            last = self.train_step(self.step)
            self.step += 1
            elapsed = time.monotonic() - t0
            bar.update(1)
            bar.set_postfix(bits=f"{last['bits_per_token']:.3f}")
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                self.log(last, elapsed)
            timeout = cfg.max_minutes is not None and elapsed > 60 * cfg.max_minutes
            if max_steps is not None and self.step - start >= max_steps and self.step < cfg.steps:
                self.save()
                bar.close()
                return {"step": self.step, "stopped_early": True, "last": last, "model": None}
            if self.step % cfg.ckpt_every == 0 or self.step == cfg.steps or timeout:
                self.save()
            if timeout:
                stopped_early = self.step < cfg.steps
                break
        bar.close()
        exported = self.export()
        barrier()
        return {"step": self.step, "stopped_early": stopped_early, "last": last, "model": exported,
                "seconds": round(time.monotonic() - t0, 2)}  # fmt: skip


@torch.no_grad()
def evaluate_nll(prior: Prior, data: TokenData, *, batch_size: int = 64) -> dict[str, float]:
    """Held-out negative log-likelihood of an exact-likelihood prior.

    Returns:
        ``bits_per_token`` (over every kept token), ``bits_per_image`` (mean over items),
        ``items``, ``tokens``.
    """
    if not prior.exact_likelihood:
        raise ValueError(
            f"{type(prior).__name__} has no exact likelihood; held-out cross-entropy needs the AR prior"
        )
    was = prior.training
    prior.eval()
    device = next(prior.parameters()).device
    total, tokens = 0.0, 0
    for i in range(0, len(data), batch_size):
        ids, lengths, labels = data.take(torch.arange(i, min(i + batch_size, len(data))))
        lp = prior.log_prob(ids.to(device), None if lengths is None else lengths.to(device),
                            None if labels is None else labels.to(device))  # fmt: skip
        total += float(-lp.double().sum())
        tokens += int(lengths.sum()) if lengths is not None else ids.shape[0] * prior.positions
    prior.train(was)
    nats_tok = total / max(tokens, 1)
    return {"bits_per_token": nats_tok / np.log(2), "bits_per_image": total / np.log(2) / max(len(data), 1),
            "items": len(data), "tokens": tokens}  # fmt: skip
