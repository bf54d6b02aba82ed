"""`vistok bench`: run tokenizers through the protocol and measure every suite.

A *point* is one tokenizer setting (a spec, and a token count for variable-length
tokenizers). Each point's results are written atomically to ``points/<key>.json`` as
soon as it finishes, so an interrupted run resumes where it stopped. Under torchrun the
points are split across ranks and rank 0 merges them.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import resource
import shutil
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vistok.bench.data import BenchData, BenchImage
from vistok.bench.precomputed import PrecomputedReconstructions
from vistok.bench.protocol import PROTOCOL_VERSION, Protocol
from vistok.data.images import ImageLoadError, load_image_uint8
from vistok.data.transforms import Fit, apply_fit, plan_fit, resize_uint8, undo_fit
from vistok.models.codecs import BudgetError, ImageCodec, from_uint8, to_uint8
from vistok.registry import SpecError
from vistok.tokenizer import Tokenizer
from vistok.utils.io import atomic_write_bytes, atomic_write_text

_METRIC_BATCH = 8

__all__ = [
    "SCHEMA_VERSION",
    "BenchConfig",
    "Point",
    "budgets_from",
    "equal_bytes_points",
    "expand_points",
    "run_bench",
]

SCHEMA_VERSION = "vistok.bench.results/1"

# Default sweeps: codec qualities spanning their useful range, and token counts.
CODEC_SWEEPS: dict[str, list[str]] = {
    "jpeg": [f"jpeg:quality={q}" for q in (5, 15, 30, 50, 75, 90)],
    "webp": [f"webp:quality={q}" for q in (0, 10, 30, 50, 75, 90)],
    "avif": [f"avif:quality={q}" for q in (10, 30, 50, 70, 90)],
    "resize": [f"resize:factor={f}" for f in (16, 8, 4, 2)],
}


@dataclass
class BenchConfig:
    """Everything besides the tokenizers and the data that a run depends on."""

    protocol: Protocol = field(default_factory=Protocol)
    suites: tuple[str, ...] = ("recon", "text", "face", "codebook", "robustness", "speed")
    fd_features: str = "mobilenet_v2"
    robust_alpha: float = 0.1  # fraction of tokens perturbed
    robust_delta: int = 4  # among the delta nearest codebook entries
    robust_noise: float = 0.1  # continuous: Gaussian noise std relative to the latents' std
    speed_batch: int = 8
    seed: int = 0
    device: str = "cpu"


@dataclass(frozen=True)
class Point:
    """One tokenizer setting of a run.

    Attributes:
        spec: tokenizer spec (or checkpoint path).
        num_tokens: token count of a variable-length tokenizer, else ``None``.
        budget_of: for an *equal-bytes* point, the learned point whose per-image byte counts
            are this codec's per-image budgets (``ceil(bits / 8)``); else ``None``.
    """

    spec: str
    num_tokens: int | None = None
    budget_of: Point | None = None

    @property
    def label(self) -> str:
        """``spec``, ``spec@k`` (k tokens), or ``codec@=tokenizer@k`` (at its bytes)."""
        base = self.spec if self.num_tokens is None else f"{self.spec}@{self.num_tokens}"
        return base if self.budget_of is None else f"{base}@={self.budget_of.label}"


def expand_points(specs: list[str], *, sweep: bool, create: Callable[[str], Tokenizer]) -> list[Point]:
    """Specs -> points. With ``sweep``, a bare codec family expands to its quality sweep
    and a variable-length tokenizer to token counts 1, 2, 4, ... up to its maximum."""
    points: list[Point] = []
    for spec in specs:
        if sweep and spec in CODEC_SWEEPS:
            points += [Point(s) for s in CODEC_SWEEPS[spec]]
            continue
        tok = create(spec)
        if sweep and tok.variable_length and tok.max_tokens:
            counts = sorted(
                {min(2**i, tok.max_tokens) for i in range(int(math.log2(tok.max_tokens)) + 1)}
                | {tok.max_tokens}
            )
            points += [Point(spec, k) for k in counts]
        else:
            points.append(Point(spec))
    return points


def equal_bytes_points(
    points: list[Point], codecs: list[str], *, create: Callable[[str], Tokenizer]
) -> list[Point]:
    """For every learned point (a tokenizer whose kind is not ``"codec"`` and that is not a
    baseline itself, like ``pca``), one point per codec spec in ``codecs`` at that point's
    per-image bytes, in the order of ``points``.

    Raises:
        SpecError: when a spec in ``codecs`` is not a codec with a byte budget.
    """
    for spec in codecs:
        tok = create(spec)
        if not (isinstance(tok, ImageCodec) and tok.supports_budget):
            raise SpecError(
                f"--equal-bytes {spec!r}: not a codec with a byte budget (jpeg, webp, avif, thumbnail are)"
            )
    learned = [
        p
        for p in points
        if p.budget_of is None and (t := create(p.spec)).kind != "codec" and not getattr(t, "baseline", False)
    ]
    return [Point(spec, None, p) for p in learned for spec in codecs]


def budgets_from(reference: dict[str, Any]) -> dict[str, int]:
    """Per-image byte budgets from a finished point's results: ``{file: ceil(bits / 8)}``.

    Rounded up to whole bytes (a file is whole bytes), so a codec gets less than one byte
    more than the tokenizer; images without a finite rate get no budget.
    """
    return {
        r["file"]: max(1, math.ceil(round(r["bits"] / 8.0, 6)))  # round: 1024.0000001 bits is 128 B
        for r in reference["per_image"]
        if math.isfinite(r["bits"])
    }


def _key(point: Point, data: BenchData, cfg: BenchConfig) -> str:
    blob = json.dumps([point.label, data.sha256, data.name, asdict(cfg)], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _peak_rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def environment(cfg: BenchConfig) -> dict[str, Any]:
    import PIL

    import vistok

    libs: dict[str, str] = {"torch": torch.__version__, "numpy": np.__version__, "pillow": PIL.__version__}
    for mod in ("rapidocr", "onnxruntime", "dlib", "skimage", "scipy"):
        try:
            m = __import__(mod)
            libs[mod] = getattr(m, "__version__", "?")
        except Exception:
            libs[mod] = "not installed"
    return {
        "vistok": vistok.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "libraries": libs,
        "device": cfg.device,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


# ---- one point ----------------------------------------------------------------------
class _Suites:
    """Creates the metric accumulators a point needs; records why a suite is skipped."""

    def __init__(self, cfg: BenchConfig, data: BenchData):
        import vistok.bench.metrics  # noqa: F401 - registers the metrics
        from vistok.registry import METRICS

        self.skipped: dict[str, str] = {}
        self.metrics: dict[str, Any] = {}
        want = set(cfg.suites)
        if "recon" in want:
            for name in ("fd", "dfd"):
                try:
                    kw = {"extractor": cfg.fd_features} if name == "fd" else {}
                    self.metrics[name] = METRICS.create(name, **kw)
                except Exception as e:
                    self.skipped[name] = f"{type(e).__name__}: {e}"
        has_words = any(i.words for i in data.items)
        has_faces = any(i.faces for i in data.items)
        for suite, present, avail in (
            ("text", has_words, "text_available"),
            ("face", has_faces, "face_available"),
        ):
            if suite not in want:
                continue
            if not present:
                self.skipped[suite] = "no annotations of this kind in the data"
                continue
            mod = __import__(f"vistok.bench.metrics.{suite}", fromlist=[avail])
            reason = getattr(mod, avail)()
            if reason:
                self.skipped[suite] = reason
                continue
            self.metrics[suite] = METRICS.create(suite)


def _perturb(tok: Tokenizer, tokens: Any, cfg: BenchConfig, gen: torch.Generator) -> tuple[Any, str] | None:
    """RobustTok-style perturbation; ``None`` when the tokenizer has no notion of it."""
    import copy

    t = copy.copy(tokens)
    if t.ids is not None and getattr(tok, "kind", "") == "discrete" and hasattr(tok, "neighbours"):
        ids = t.ids
        nb = tok.neighbours(ids, cfg.robust_delta)  # [..., delta]
        choice = torch.randint(0, nb.shape[-1], ids.shape, generator=gen)
        swapped = torch.gather(nb, -1, choice.unsqueeze(-1)).squeeze(-1)
        mask = torch.rand(ids.shape, generator=gen) < cfg.robust_alpha
        t.ids = torch.where(mask, swapped, ids)
        return t, f"alpha={cfg.robust_alpha}, delta={cfg.robust_delta} nearest codebook entries"
    if t.latents is not None:
        lat = t.latents
        noise = torch.randn(lat.shape, generator=gen) * lat.float().std() * cfg.robust_noise
        t.latents = (lat.float() + noise).to(lat.dtype)
        return t, f"gaussian noise, std = {cfg.robust_noise} x latent std"
    return None


class _Codebook:
    """Histogram of ids per codebook: used fraction, perplexity, empirical entropy."""

    def __init__(self, vocab: int):
        self.vocab = vocab
        self.counts: torch.Tensor | None = None

    def add(self, ids: torch.Tensor, lengths: torch.Tensor | None, num_codebooks: int = 1) -> None:
        """ids: long ``[B, ...]`` (last dim = codebooks when ``num_codebooks > 1``)."""
        flat = ids.reshape(ids.shape[0], -1, num_codebooks)
        if self.counts is None:
            self.counts = torch.zeros(num_codebooks, self.vocab, dtype=torch.float64)
        for b in range(flat.shape[0]):
            rows = flat[b] if lengths is None else flat[b, : int(lengths[b])]
            for c in range(num_codebooks):
                self.counts[c] += torch.bincount(rows[:, c].clamp(0, self.vocab - 1), minlength=self.vocab)

    def compute(self) -> dict[str, float]:
        if self.counts is None:
            return {}
        p = self.counts / self.counts.sum(-1, keepdim=True).clamp_min(1)
        ent = -(p * torch.log2(p.clamp_min(1e-300))).sum(-1)
        return {
            "used_fraction": float((self.counts > 0).double().mean()),
            "perplexity": float((2**ent).mean()),
            "entropy_bits": float(ent.mean()),
            "nominal_bits": math.log2(self.vocab),
            "tokens_seen": float(self.counts.sum()),
        }


class _Worst:
    """The few worst text/face instances of a point, with crops for the report."""

    def __init__(self, suite: str, keep: int = 6):
        self.suite, self.keep = suite, keep
        self.items: list[tuple[tuple[float, ...], dict[str, Any]]] = []

    def _badness(self, rec: dict[str, Any]) -> tuple[float, ...]:
        if self.suite == "text":  # failed words first, the largest of them first
            return (float(rec["exact"]), float(rec["ned"]), -float(rec["height_ratio"]))
        return (-float(rec["distance"]), -float(rec["size_ratio"]))

    def offer(self, rec: dict[str, Any], original: np.ndarray, recon: np.ndarray, rel: str) -> None:
        if self.suite == "text" and rec.get("exact", 1.0) >= 1.0:
            return
        if self.suite == "face" and not math.isfinite(float(rec.get("distance", math.nan))):
            return
        key = self._badness(rec)
        if len(self.items) >= self.keep and key >= self.items[-1][0]:
            return
        x0, y0, x1, y1 = (round(float(v)) for v in rec["box"])
        m = max(2, (y1 - y0) // 3)
        box = (max(0, x0 - m), max(0, y0 - m), min(original.shape[1], x1 + m), min(original.shape[0], y1 + m))
        caption = (
            f"{rel}: '{rec['text']}' read as '{rec['pred']}' (height {y1 - y0}px)"
            if self.suite == "text"
            else f"{rel}: distance {float(rec['distance']):.3f} (face {y1 - y0}px)"
        )
        case = {
            "caption": caption,
            "original_png": _png_b64(original, box),
            "reconstruction_png": _png_b64(recon, box),
        }
        self.items.append((key, case))
        self.items.sort(key=lambda kv: kv[0])
        del self.items[self.keep :]

    def cases(self) -> list[dict[str, Any]]:
        return [c for _, c in self.items]


def _png_b64(a: np.ndarray, box: tuple[int, int, int, int], min_height: int = 48) -> str:
    import base64
    import io

    from PIL import Image

    im = Image.fromarray(a).crop(box)
    if im.height < min_height:  # enlarge small crops (nearest: show the pixels as they are)
        s = -(-min_height // max(im.height, 1))
        im = im.resize((im.width * s, im.height * s), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


class _ItemCache:
    """Per-image tokenizer outputs of an unfinished point, so an interrupted run resumes.

    One ``<index>.npz`` per image (the 8-bit reconstruction, its bits and timings, the ids
    for codebook use, the perturbed decode), written atomically and read back with
    ``allow_pickle=False``. The folder is removed once the point's results are written.
    """

    def __init__(self, root: Path | None):
        self.root = root

    def get(self, index: int) -> dict[str, np.ndarray] | None:
        if self.root is None:
            return None
        path = self.root / f"{index}.npz"
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                return {k: f[k] for k in f.files}
        except (OSError, ValueError):  # a damaged entry is recomputed
            return None

    def put(self, index: int, arrays: dict[str, np.ndarray]) -> None:
        if self.root is None:
            return
        import io

        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.root / f"{index}.npz", buf.getvalue())


def point_dirname(point: Point) -> str:
    """A file-system-safe folder name for a point's saved reconstructions."""
    return "".join(c if c.isalnum() or c in "-_.=@" else "_" for c in point.label)


def _save_png(path: Path, array: np.ndarray) -> None:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path.with_suffix(".png"), buf.getvalue())


def _fit_image(img: np.ndarray, proto: Protocol, model_size: int) -> tuple[Fit, np.ndarray, np.ndarray]:
    """uint8 ``[H, W, 3]`` -> (its fit, the evaluation square uint8 ``[S, S, 3]``, the model's
    input uint8 ``[M, M, 3]``): every tokenizer is scored on the same evaluation square; one
    with a fixed native size sees that square resized to its size (and its output resized back)."""
    fit = plan_fit(*img.shape[:2], size=proto.size, pad_mode=proto.pad_mode)
    fitted = apply_fit(img, fit)
    return fit, fitted, resize_uint8(fitted, model_size, model_size)


def run_point(
    tok: Tokenizer,
    point: Point,
    data: BenchData,
    cfg: BenchConfig,
    save_dir: Path | None = None,
    cache_dir: Path | None = None,
    budgets: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Reconstruct every image of ``data`` with ``tok`` at ``point`` and measure the suites.

    ``save_dir``: also write each reconstruction (evaluation geometry, 8-bit PNG) to
    ``save_dir/<point>/<image>.png`` — the layout ``--reconstructions`` reads back.
    ``cache_dir``: per-image tokenizer outputs are kept there, and reused when present, so a
    run interrupted inside a point redoes only the images it had not reached.
    ``budgets``: ``{file: bytes}`` — encode each image with ``tok.with_budget(bytes)`` (``tok``
    must be a codec with a byte budget); rows then record ``budget_bytes`` and ``over_budget``
    (file larger than the budget); images without a budget, or whose budget the codec cannot
    meet without exceeding it (:class:`BudgetError`), are skipped with the reason.
    """
    if budgets is not None and not (isinstance(tok, ImageCodec) and tok.supports_budget):
        raise TypeError(f"{tok.spec}: per-image byte budgets need a codec with a byte budget")
    from vistok.bench.metrics.pixel import ms_ssim, psnr, ssim

    proto = cfg.protocol
    suites = _Suites(cfg, data)
    cache = _ItemCache(cache_dir)
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    robust_psnr: list[float] = []
    robust_note: str | None = None
    robust_fd = None
    if "robustness" in cfg.suites and "fd" in suites.metrics:
        from vistok.registry import METRICS

        robust_fd = METRICS.create("fd", extractor=cfg.fd_features)
    codebook = (
        _Codebook(tok.vocab_size)
        if ("codebook" in cfg.suites and tok.kind == "discrete" and tok.vocab_size)
        else None
    )
    model_size = tok.input_size or proto.size
    if model_size % tok.stride:
        raise ValueError(
            f"{tok.spec}: evaluation size {model_size} is not a multiple of its stride {tok.stride}"
        )
    worst = {"text": _Worst("text"), "face": _Worst("face")}
    seen = {"text": 0, "face": 0}  # instances already offered to ``worst``
    # Pixel metrics and deep features run in batches of evaluation-size pairs (uint8 until used).
    pending: list[tuple[np.ndarray, np.ndarray]] = []
    pixel_rows: list[dict[str, float]] = []

    def flush() -> None:
        if not pending:
            return
        xb = from_uint8(np.stack([a for a, _ in pending]))
        yb = from_uint8(np.stack([b for _, b in pending]))
        p, s = psnr(xb, yb), ssim(xb, yb)
        try:
            m = ms_ssim(xb, yb).tolist()
        except ValueError:  # smaller than MS-SSIM's 5 scales need
            m = [math.nan] * len(pending)
        pixel_rows.extend(
            {"psnr": float(a), "ssim": float(b), "ms_ssim": float(c)} for a, b, c in zip(p, s, m)
        )
        for name in ("fd", "dfd"):
            if name in suites.metrics:
                suites.metrics[name].update(xb, yb)
        pending.clear()

    robust_pending: list[tuple[np.ndarray, np.ndarray]] = []

    def flush_robust() -> None:
        if not robust_pending:
            return
        xb = from_uint8(np.stack([a for a, _ in robust_pending]))
        yb = from_uint8(np.stack([b for _, b in robust_pending]))
        robust_psnr.extend(float(v) for v in psnr(xb, yb))
        if robust_fd is not None:
            robust_fd.update(xb, yb)
        robust_pending.clear()

    enc_time = dec_time = 0.0
    t_start = time.perf_counter()
    tok.eval()
    with torch.no_grad():
        for index, item in enumerate(data.items):
            try:
                img = load_image_uint8(item.path)
            except ImageLoadError as e:
                skipped.append((e.path, e.reason))
                continue
            fit, fitted, model_input = _fit_image(img, proto, model_size)
            x = from_uint8(model_input[None]).to(cfg.device)
            budget = None if budgets is None else budgets.get(item.rel)
            if budgets is not None and budget is None:
                ref = point.budget_of.label if point.budget_of else "the reference point"
                skipped.append((item.rel, f"no rate for this image in {ref}"))
                continue
            ids = lengths = rob8 = None
            cached = cache.get(index)
            if isinstance(tok, PrecomputedReconstructions):
                found = tok.lookup(item.rel, fit)
                if isinstance(found, str):
                    skipped.append((item.rel, found))
                    continue
                rec8, bits = found
            elif cached is not None:  # resumed: this image's tokenizer outputs are on disk
                rec8, bits = cached["rec8"], float(cached["bits"])
                enc_time += float(cached["enc_s"])
                dec_time += float(cached["dec_s"])
                ids, lengths = cached.get("ids"), cached.get("lengths")
                ids = None if ids is None else torch.from_numpy(ids)
                lengths = None if lengths is None else torch.from_numpy(lengths)
                rob8 = cached.get("rob8")
                if "rob_note" in cached:
                    robust_note = str(cached["rob_note"])
            else:
                coder = tok if budget is None else tok.with_budget(budget)  # type: ignore[attr-defined]
                t0 = time.perf_counter()
                try:
                    tokens = coder.encode(x, num_tokens=point.num_tokens)
                except BudgetError as e:  # a codec that never exceeds its budget cannot meet it
                    skipped.append((item.rel, str(e)))
                    continue
                t1 = time.perf_counter()
                recon = coder.decode(tokens).clamp(0, 1)
                t2 = time.perf_counter()
                enc_time += t1 - t0
                dec_time += t2 - t1
                rec8 = to_uint8(recon)[0]  # rounded to 8 bits, as a saved image would be
                rec8 = resize_uint8(rec8, proto.size, proto.size)
                bits = float(tokens.bits[0])
                ids = None if tokens.ids is None else tokens.ids.cpu()
                lengths = None if tokens.lengths is None else tokens.lengths.cpu()
                entry: dict[str, np.ndarray] = {
                    "rec8": rec8,
                    "bits": np.float64(bits),
                    "enc_s": np.float64(t1 - t0),
                    "dec_s": np.float64(t2 - t1),
                }
                if ids is not None:
                    entry["ids"] = ids.numpy()
                if lengths is not None:
                    entry["lengths"] = lengths.numpy()
                if "robustness" in cfg.suites:
                    # one generator per image: the same perturbation whether or not the run resumed
                    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + index)
                    pert = _perturb(tok, tokens, cfg, gen)
                    if pert is not None:
                        robust_note = pert[1]
                        yp8 = to_uint8(tok.decode(pert[0]).clamp(0, 1))[0]
                        rob8 = resize_uint8(yp8, proto.size, proto.size)
                        entry["rob8"], entry["rob_note"] = rob8, np.str_(robust_note)
                cache.put(index, entry)
            if save_dir is not None:
                _save_png(save_dir / point_dirname(point) / item.rel, rec8)
            rows.append(
                {
                    "file": item.rel,
                    "bits": bits,
                    "bpp": bits / (fit.size_h * fit.size_w),
                    "bpp_original": bits / (fit.orig_h * fit.orig_w),
                }
            )
            if budget is not None:  # the true file size against the budget: never pretend
                rows[-1].update(budget_bytes=budget, over_budget=bits > 8 * budget)
            pending.append((fitted, rec8))
            if len(pending) == _METRIC_BATCH:
                flush()
            back = undo_fit(rec8, fit)  # original geometry: annotation coordinates stay valid
            pair = None
            for suite, ann in (("text", item.words), ("face", item.faces)):
                if ann and suite in suites.metrics:
                    pair = pair or (from_uint8(img[None]), from_uint8(back[None]))
                    m = suites.metrics[suite]
                    m.update(*pair, [ann])
                    new = m.records(start=seen[suite])
                    seen[suite] += len(new)
                    for rec in new:
                        worst[suite].offer(rec, img, back, item.rel)
            if codebook is not None and ids is not None:
                codebook.add(ids, lengths, int(getattr(tok, "num_codebooks", 1)))
            if rob8 is not None:
                robust_pending.append((fitted, rob8))
                if len(robust_pending) == _METRIC_BATCH:
                    flush_robust()
    flush()
    flush_robust()
    for row, px in zip(rows, pixel_rows, strict=True):
        row.update(px)
    wall = time.perf_counter() - t_start
    n = len(rows)
    if n == 0:
        raise RuntimeError(f"{point.label}: no image could be processed ({len(skipped)} skipped)")

    def mean(key: str, cap: float | None = None) -> float:
        vals = [r[key] for r in rows if not math.isnan(r[key])]
        if cap is not None:  # identical images give PSNR = inf: capped in means, as documented
            vals = [min(v, cap) for v in vals]
        return float(np.mean(vals)) if vals else math.nan

    out: dict[str, Any] = {
        "point": point.label,
        "spec": point.spec,
        "num_tokens": point.num_tokens,
        "tokenizer": tok.describe(),
        "images": n,
        "eval_size": proto.size,
        "model_size": model_size,
        "rate": {"bits_per_image": mean("bits"), "bpp": mean("bpp"), "bpp_original": mean("bpp_original")},
        "recon": {"psnr": mean("psnr", cap=100.0), "ssim": mean("ssim"), "ms_ssim": mean("ms_ssim")},
        "skipped_images": [list(s) for s in skipped],
        "skipped_suites": dict(suites.skipped),
        "per_image": rows,
        "wall_s": wall,
    }
    for name in ("fd", "dfd"):
        if name in suites.metrics:
            out["recon"][name] = suites.metrics[name].compute()
    for name in ("text", "face"):
        if name in suites.metrics:
            m = suites.metrics[name]
            out[name] = m.compute()
            out[name + "_worst"] = worst[name].cases()
    if codebook is not None:
        out["codebook"] = codebook.compute()
    elif "codebook" in cfg.suites:
        out["skipped_suites"]["codebook"] = f"not a discrete tokenizer ({tok.kind})"
    if robust_note is not None:
        out["robustness"] = {
            "perturbation": robust_note,
            "psnr": float(np.mean(robust_psnr)),
            "fd": robust_fd.compute() if robust_fd is not None else None,
        }
    elif "robustness" in cfg.suites:
        out["skipped_suites"]["robustness"] = (
            "no tokens to perturb (codec bytes)"
            if tok.kind == "codec"
            else "the tokenizer offers no neighbours() for its ids"
        )
    if "speed" in cfg.suites and enc_time > 0:
        out["speed"] = {
            "encode_images_per_s": n / enc_time if enc_time else math.nan,
            "decode_images_per_s": n / dec_time if dec_time else math.nan,
            "batch": 1,
            "peak_rss_mb": _peak_rss_mb(),
            "note": "batch 1 at the model's input size, wall clock; peak RSS of the whole process",
        }
    return out


# ---- equal-bytes points ------------------------------------------------------------------
class _Smallest:
    """The smallest file each budget codec can make for each image (memoized for the run):
    a budget below it cannot be met. Images are fitted to the evaluation square once."""

    def __init__(self, proto: Protocol):
        self.proto = proto
        self._inputs: dict[str, np.ndarray | None] = {}
        self._sizes: dict[tuple[str, str], int | None] = {}

    def of(self, codec: ImageCodec, item: BenchImage) -> int | None:
        """Bytes of ``codec``'s smallest file for ``item`` (``None``: the image does not load)."""
        key = (codec.spec, item.rel)
        if key not in self._sizes:
            if item.rel not in self._inputs:
                try:
                    img = load_image_uint8(item.path)
                except ImageLoadError:
                    self._inputs[item.rel] = None
                else:  # codecs take any size: their input is the evaluation square
                    self._inputs[item.rel] = _fit_image(img, self.proto, self.proto.size)[2]
            x = self._inputs[item.rel]
            self._sizes[key] = None if x is None else codec.min_bytes(x)
        return self._sizes[key]


def _span(values: list[int]) -> dict[str, float]:
    return {"min": min(values), "mean": float(np.mean(values)), "max": max(values)} if values else {}


def _range(span: dict[str, float]) -> str:
    if not span:
        return "?"
    return f"{span['min']:.0f}" if span["min"] == span["max"] else f"{span['min']:.0f}-{span['max']:.0f}"


def run_equal_bytes_point(
    codec: ImageCodec,
    point: Point,
    reference: dict[str, Any],
    data: BenchData,
    cfg: BenchConfig,
    smallest: _Smallest,
    save_dir: Path | None = None,
    cache_dir: Path | None = None,
) -> dict[str, Any]:
    """``codec`` at each image's byte count in the finished ``reference`` point's results.

    The budgets are :func:`budgets_from` ``reference``. When no image's budget can be met
    (every budget below the codec's smallest file for that image) the point is not measured
    — it would only repeat the codec's lowest setting — and its record says why
    (``images: 0``, ``equal_bytes.not_run``). Otherwise :func:`run_point` with the budgets;
    the record's ``equal_bytes`` gives the reference, the budgets, how many images fit and
    how many files went over budget (full-size codecs at their lowest quality).
    """
    assert point.budget_of is not None
    t0 = time.perf_counter()
    budgets = budgets_from(reference)
    mins = {it.rel: smallest.of(codec, it) for it in data.items if it.rel in budgets}
    fits = [rel for rel, m in mins.items() if m is not None and m <= budgets[rel]]
    info: dict[str, Any] = {
        "reference": point.budget_of.label,
        "reference_spec": point.budget_of.spec,
        "reference_num_tokens": point.budget_of.num_tokens,
        "budget_bytes": _span(list(budgets.values())),
        "smallest_file_bytes": _span([m for m in mins.values() if m is not None]),
        "images_with_budget": len(budgets),
        "images_that_fit": len(fits),
    }
    describe = codec.describe()
    describe["config"]["bytes"] = "per image: equal_bytes.reference"
    if not fits:
        info["not_run"] = (
            f"no {codec.file_format} file fits: budget {_range(info['budget_bytes'])} B per image, "
            f"smallest {codec.spec} file {_range(info['smallest_file_bytes'])} B"
        )
        return {
            "point": point.label,
            "spec": point.spec,
            "num_tokens": None,
            "tokenizer": describe,
            "images": 0,
            "eval_size": cfg.protocol.size,
            "equal_bytes": info,
            "skipped_images": [],
            "skipped_suites": {},
            "per_image": [],
            "wall_s": time.perf_counter() - t0,
        }
    res = run_point(codec, point, data, cfg, save_dir, cache_dir, budgets=budgets)
    info["over_budget"] = sum(bool(r.get("over_budget")) for r in res["per_image"])
    res["tokenizer"], res["equal_bytes"] = describe, info
    return res


# ---- the run ----------------------------------------------------------------------------
def _dist() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group("gloo")
        return dist.get_rank(), world
    return 0, 1


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _memoized(create: Callable[[str], Tokenizer]) -> Callable[[str], Tokenizer]:
    """``create`` that builds each spec once per run (expansion and points share them)."""
    made: dict[str, Tokenizer] = {}

    def get(spec: str) -> Tokenizer:
        if spec not in made:
            made[spec] = create(spec)
        return made[spec]

    return get


@dataclass
class _Run:
    """What every point of a run shares: where results go, the data, the settings."""

    out: Path
    data: BenchData
    cfg: BenchConfig
    create: Callable[[str], Tokenizer]
    save: Path | None
    progress: bool
    smallest: _Smallest

    def path(self, point: Point) -> Path:
        return self.out / "points" / f"{_key(point, self.data, self.cfg)}.json"

    def run(self, points: list[Point], desc: str) -> None:
        """Measure ``points`` not yet on disk, writing each one's results as it finishes."""
        from vistok.utils.progress import progress

        bar = progress(points, desc=desc, unit="pt", enabled=self.progress)
        for point in bar:
            path = self.path(point)
            if path.is_file():
                continue  # resumed: this point finished in an earlier run
            bar.set_postfix_str(point.label)
            tok = self.create(point.spec).to(self.cfg.device)
            partial = path.with_suffix(".partial")
            if point.budget_of is None:
                res = run_point(tok, point, self.data, self.cfg, self.save, cache_dir=partial)
            else:
                reference = json.loads(self.path(point.budget_of).read_text())
                res = run_equal_bytes_point(
                    tok,  # type: ignore[arg-type]  # checked by equal_bytes_points
                    point,
                    reference,
                    self.data,
                    self.cfg,
                    self.smallest,
                    self.save,
                    cache_dir=partial,
                )
            atomic_write_text(path, json.dumps(res, default=float) + "\n")
            shutil.rmtree(partial, ignore_errors=True)


def run_bench(
    specs: list[str],
    data: BenchData,
    cfg: BenchConfig,
    out_dir: str | Path,
    *,
    sweep: bool = True,
    create: Callable[[str], Tokenizer] | None = None,
    progress: bool = True,
    save_reconstructions: str | Path | None = None,
    equal_bytes: list[str] | None = None,
) -> dict[str, Any] | None:
    """Run every point, write ``results.json`` into ``out_dir``; returns the results (rank 0).

    ``create`` builds a tokenizer from a spec (default ``vistok.create``);
    ``save_reconstructions`` writes every reconstruction as PNG (see :func:`run_point`);
    ``equal_bytes``: codec specs with a byte budget (``thumbnail``, ``webp``, ...) measured at
    every learned point's per-image bytes (:func:`equal_bytes_points`), after the points
    they depend on; each follows its reference point in the results.
    """
    import vistok

    make = _memoized(create or vistok.create)
    out = Path(out_dir)
    (out / "points").mkdir(parents=True, exist_ok=True)
    rank, world = _dist()
    points = expand_points(specs, sweep=sweep, create=make)
    eq_points = equal_bytes_points(points, list(equal_bytes or []), create=make)
    t0 = time.perf_counter()
    save = Path(save_reconstructions) if save_reconstructions else None
    run = _Run(out, data, cfg, make, save, progress, _Smallest(cfg.protocol))
    tag = f"[{rank}]" if world > 1 else ""
    run.run(points[rank::world], f"bench{tag}")
    if eq_points:
        _barrier(world)  # every reference point's results are on disk before its budgets are read
        run.run(eq_points[rank::world], f"equal bytes{tag}")
    _barrier(world)
    if rank != 0:
        return None
    ordered = [q for p in points for q in (p, *(e for e in eq_points if e.budget_of == p))]
    results = {
        "schema": SCHEMA_VERSION,
        "protocol": {"version": PROTOCOL_VERSION, **cfg.protocol.describe()},
        "config": {k: v for k, v in asdict(cfg).items() if k != "protocol"},
        "data": data.describe(),
        "environment": environment(cfg),
        "points": [json.loads(run.path(p).read_text()) for p in ordered],
        "wall_s": time.perf_counter() - t0,
        "peak_rss_mb": _peak_rss_mb(),
        "shards": world,
    }
    atomic_write_text(out / "results.json", json.dumps(results, indent=1, default=float) + "\n")
    return results
