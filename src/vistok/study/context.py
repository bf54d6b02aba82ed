"""The shared ground of every study: its data, its arms' runs and the measurements.

Data (decided once, recorded in every result):

- **train**: the photo corpus's ``train`` split plus the built-in sample sets (photos, text,
  faces) -- the shipped models' training data -- decoded once and stored, short side
  ``2 * size``, as PNG under ``DIR/_data/train/`` with ``provenance.json`` (source file and
  licence of each image);
- **held-out**: the corpus's ``heldout`` split (sources never trained on), two ``size``
  views of each image (:func:`vistok.train.evaluate.evaluation_views`: the whole scene and
  the centre at twice the scale).

``--quick`` (smoke runs, numbers meaningless) trains on the sample photos and measures on
two sample text pages, so it needs no corpus.

Measurements on the held-out views: PSNR (8-bit, dB), FD-MobileNetV2 of the
reconstructions against the originals (ImageNet MobileNetV2 pool features; *not* FID), and
for discrete tokenizers the codebook statistics of the held-out ids (:func:`codebook_stats`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens

__all__ = ["ArmRun", "StudyContext", "codebook_stats", "deep_merge"]


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over``'s keys set (nested dicts merged, everything else replaced)."""
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def codebook_stats(ids: Tensor, vocab: int, num_codebooks: int = 1) -> dict[str, float]:
    """Use of a codebook by a set of ids.

    Args:
        ids: long ``[B, ...]`` (``[B, ..., K]`` when ``num_codebooks = K > 1``), values in
            ``[0, vocab)``.
        vocab: codes per codebook (per index element).
        num_codebooks: index elements per token; each is counted on its own and averaged.

    Returns:
        ``usage``: distinct codes used / ``vocab``; ``usage_vs_uniform``: distinct codes /
        the number a uniform use of the codebook would show with this many ids
        (``vocab * (1 - (1 - 1/vocab)^n)``; 1 = as spread as uniform, whatever ``n``);
        ``perplexity``: ``exp`` of the entropy of the id histogram; ``dead``: 1 - usage.
    """
    flat = ids.reshape(-1, num_codebooks) if num_codebooks > 1 else ids.reshape(-1, 1)
    n = flat.shape[0]
    usage, vs_uniform, ppl = [], [], []
    for j in range(flat.shape[1]):
        counts = torch.bincount(flat[:, j].long(), minlength=vocab).double()
        used = float((counts > 0).sum())
        p = counts[counts > 0] / n
        usage.append(used / vocab)
        vs_uniform.append(used / (vocab * (1 - (1 - 1 / vocab) ** n)))
        ppl.append(float(torch.exp(-(p * p.log()).sum())))
    u = float(np.mean(usage))
    return {"usage": u, "usage_vs_uniform": float(np.mean(vs_uniform)), "perplexity": float(np.mean(ppl)),
            "dead": 1.0 - u}  # fmt: skip


@dataclass
class ArmRun:
    """One trained arm at one seed: its folder and what training recorded."""

    arm: str
    seed: int
    folder: Path
    info: dict[str, Any] = field(default_factory=dict)

    def tokenizer(self) -> Tokenizer:
        """The trained model (exported weights), in eval mode."""
        import vistok

        return vistok.load(self.folder / "model").eval()

    def log(self) -> list[dict[str, Any]]:
        """The run's ``metrics.jsonl`` lines."""
        path = self.folder / "metrics.jsonl"
        return (
            [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            if path.is_file()
            else []
        )


class StudyContext:
    """Data, budget and measurement helpers shared by the studies of one ``vistok study`` run.

    Args:
        root: the output folder (``-o``): ``_data/``, ``runs/`` and one folder per study.
        budget: the arms' equal budget.
        quick: smoke mode (see the module docstring).
        progress: show progress bars.
    """

    def __init__(self, root: Path, budget: Any, *, quick: bool, progress: bool = True):
        self.root = Path(root)
        self.budget = budget
        self.quick = quick
        self.progress = progress
        self._views: Tensor | None = None
        self._train_dir: Path | None = None
        self._orig_features: Tensor | None = None
        self.data_info: dict[str, Any] = {}
        self._variants: dict[tuple[Any, ...], StudyContext] = {}

    # ---- data -------------------------------------------------------------------------
    def _sources(self) -> tuple[list[str], list[str]]:
        from vistok.data.corpus import corpus_images, install_command
        from vistok.data.samples import sample_set

        if self.quick:
            return [str(p) for p in sample_set("photos").paths], [
                str(p) for p in sample_set("text").paths[:2]
            ]
        try:
            train = [i.path for i in corpus_images("train")]
            held = [i.path for i in corpus_images("heldout")]
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}; the studies need the photo corpus: {install_command()}") from None
        train += [str(p) for name in ("photos", "text", "faces") for p in sample_set(name).paths]
        return train, held

    def train_dir(self) -> Path:
        """The prepared training images (see the module docstring), built on first use."""
        if self._train_dir is not None:
            return self._train_dir
        from vistok.data.corpus import corpus_images
        from vistok.data.images import ImageLoadError, load_image_uint8
        from vistok.utils.io import atomic_write_bytes, atomic_write_text

        train, _ = self._sources()
        short = 2 * self.budget.size
        key = hashlib.sha256(json.dumps([train, short]).encode()).hexdigest()[:12]
        out = self.root / "_data" / f"train-{key}"
        manifest = out / "provenance.json"
        if not manifest.is_file():
            licences = {i.path: (i.package, i.licence) for i in corpus_images("all", strict=False)}
            out.mkdir(parents=True, exist_ok=True)
            rows, skipped = [], []
            for n, path in enumerate(train):
                try:
                    arr = load_image_uint8(path)
                except ImageLoadError as e:
                    skipped.append({"path": path, "reason": e.reason})
                    continue
                img = Image.fromarray(arr)
                s = short / min(img.size)
                if s < 1:
                    img = img.resize((max(1, round(img.width * s)), max(1, round(img.height * s))),
                                     Image.Resampling.BICUBIC)  # fmt: skip
                name = f"{n:04d}.png"
                import io

                buf = io.BytesIO()
                img.save(buf, format="PNG")
                atomic_write_bytes(out / name, buf.getvalue())
                package, licence = licences.get(path, ("vistok samples", "see docs/data.md"))
                rows.append({"file": name, "source": path, "package": package, "licence": licence})
            atomic_write_text(manifest, json.dumps({"images": rows, "skipped": skipped}, indent=1))
        info = json.loads(manifest.read_text())
        self.data_info["train"] = {"images": len(info["images"]), "skipped": info["skipped"],
                                   "folder": str(out), "short_side": short}  # fmt: skip
        self._train_dir = out
        return out

    def views(self) -> Tensor:
        """Held-out views, float ``[N, 3, size, size]`` in [0, 1] (computed once)."""
        if self._views is None:
            from vistok.train.evaluate import evaluation_views

            _, held = self._sources()
            self._views = evaluation_views(held, size=self.budget.size)
            self.data_info["heldout"] = {
                "images": len(held), "views": int(self._views.shape[0]),
                "split": "samples:text[:2] (quick)" if self.quick else "corpus:heldout",
            }  # fmt: skip
        return self._views

    # ---- measurements -----------------------------------------------------------------
    def _features(self, images: Tensor) -> Tensor:
        from vistok.bench.metrics.frechet import MobileNetV2Extractor

        return torch.cat([MobileNetV2Extractor()(images[i : i + 32]) for i in range(0, len(images), 32)])

    def fd(self, recon: Tensor) -> float:
        """FD-MobileNetV2 of reconstructions ``[N, 3, s, s]`` against the held-out views."""
        from vistok.bench.metrics.frechet import frechet_distance_from_features

        if self._orig_features is None:
            self._orig_features = self._features(self.views())
        return frechet_distance_from_features(self._orig_features, self._features(recon))

    def dfd(self, recon: Tensor) -> float:
        """Mean DFD-MobileNetV2 (per-pair deep feature distance) against the held-out views."""
        from vistok.bench.metrics.frechet import deep_feature_distance

        x = self.views()
        return float(torch.cat([deep_feature_distance(x[i : i + 32], recon[i : i + 32].float())
                                for i in range(0, len(x), 32)]).mean())  # fmt: skip

    def with_budget(self, **changes: Any) -> StudyContext:
        """This context with some budget fields changed (same folder and runs); ``self``
        when nothing changes. Contexts are kept, so their data is prepared once."""
        from dataclasses import replace

        budget = replace(self.budget, **changes)
        if budget == self.budget:
            return self
        key = tuple(sorted(changes.items()))
        if key not in self._variants:
            self._variants[key] = StudyContext(self.root, budget, quick=self.quick, progress=self.progress)
        return self._variants[key]

    def psnr(self, recon: Tensor, images: Tensor | None = None) -> float:
        """Mean PSNR (8-bit, dB) of reconstructions against ``images`` (the views)."""
        from vistok.train.evaluate import psnr_per_image

        return float(psnr_per_image(recon, self.views() if images is None else images).mean())

    @torch.no_grad()
    def encode(self, tok: Tokenizer, *, num_tokens: int | None = None, batch: int = 16) -> list[Tokens]:
        """The held-out views' tokens, in batches."""
        x = self.views()
        return [tok.encode(x[i : i + batch], num_tokens=num_tokens) for i in range(0, len(x), batch)]

    @torch.no_grad()
    def decode(self, tok: Tokenizer, tokens: list[Tokens]) -> Tensor:
        """Reconstructions ``[N, 3, size, size]`` in [0, 1] of token batches."""
        return torch.cat([tok.decode(t).float().clamp(0, 1) for t in tokens])

    def recon_metrics(self, tok: Tokenizer, *, num_tokens: int | None = None) -> dict[str, float]:
        """``psnr``, ``fd`` and, for discrete tokenizers, :func:`codebook_stats` of the held-out ids."""
        from vistok.train.evaluate import reconstruct_at

        if tok.input_size is not None and tok.input_size != self.budget.size:
            recon = reconstruct_at(tok, self.views(), num_tokens=num_tokens)
            tokens = None
        else:
            tokens = self.encode(tok, num_tokens=num_tokens)
            recon = self.decode(tok, tokens)
        out = {"psnr": self.psnr(recon), "fd": self.fd(recon)}
        if tok.kind == "discrete" and tok.vocab_size:
            tokens = tokens or self.encode(tok, num_tokens=num_tokens)
            ids = torch.cat([t.ids.reshape(t.ids.shape[0], -1) for t in tokens if t.ids is not None])
            if num_tokens is None:
                out.update(codebook_stats(ids, int(tok.vocab_size), tok.num_codebooks))
        return out

    # ---- arms ---------------------------------------------------------------------------
    def recipe(self, base: dict[str, Any], arm_recipe: dict[str, Any], seed: int) -> dict[str, Any]:
        """The full recipe of one arm: base, the arm's keys, then the budget and the data."""
        b = self.budget
        fixed = {
            "data": {"sources": [str(self.train_dir())], "size": b.size, "batch_size": b.batch_size,
                     "resize_short": None, "workers": 0},
            "schedule": {"steps": b.steps, "warmup": b.warmup, "max_minutes": None},
            "log": {"progress": self.progress, "every": max(1, b.steps // 20), "grid_every": 0,
                    "ckpt_every": b.steps, "keep": 1, "tensorboard": False},
            "run": {"seed": seed, "threads": b.threads, "device": "cpu"},
        }  # fmt: skip
        return deep_merge(deep_merge(base, arm_recipe), fixed)

    def train(self, recipe: dict[str, Any], arm: str, seed: int) -> ArmRun:
        """Train ``recipe`` once (a finished run with the same recipe is reused, whichever
        study asked first) and return its :class:`ArmRun`."""
        from vistok.train.config import config_from_dict
        from vistok.train.trainer import Trainer
        from vistok.utils.io import atomic_write_text

        key = hashlib.sha256(json.dumps(recipe, sort_keys=True, default=str).encode()).hexdigest()[:16]
        folder = self.root / "runs" / key
        done = folder / "done.json"
        if done.is_file():
            return ArmRun(arm, seed, folder, json.loads(done.read_text()))
        cfg = config_from_dict(recipe)
        t0, c0 = time.perf_counter(), time.process_time()
        trainer = Trainer(cfg, folder)
        summary = trainer.fit()
        info = {
            "steps": summary["step"], "train_seconds": time.perf_counter() - t0,
            "train_cpu_seconds": time.process_time() - c0, "last": summary["last"], "recipe": recipe,
        }  # fmt: skip
        for ck in (folder / "checkpoints").glob("step-*"):  # the exported model/ is what is measured
            import shutil

            shutil.rmtree(ck, ignore_errors=True)
        atomic_write_text(done, json.dumps(info, indent=1, default=float))
        return ArmRun(arm, seed, folder, info)


def finite(x: float) -> float:
    """``x``, or NaN for inf (JSON-safe)."""
    return x if math.isfinite(x) else float("nan")
