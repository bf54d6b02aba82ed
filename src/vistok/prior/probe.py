"""The generation probe: how good is a tokenizer's token space for a generator?

For one tokenizer (GigaTok's "AR probe", made reproducible and cheap):

1. tokenize the photo corpus's ``train`` split with ``vistok tokenize``'s engine
   (:func:`vistok.data.tokenize.tokenize_images`; protocol fit to ``size``, ten-crop views)
   and the ``heldout`` split the same way;
2. train a *fixed* small AR prior (:class:`ProbeConfig`) for a fixed number of steps;
3. measure held-out cross-entropy (bits/token, bits/image), FD-MobileNetV2 and
   KID-MobileNetV2 of ``samples`` generated images against the held-out views, the same
   two numbers for the tokenizer's reconstructions of those views (rFD: the tokenizer's
   own ceiling at this geometry) and for ``samples`` training views (the data's floor), and
   sampling speed with and without the KV cache.

Everything lands in ``OUT/<name>/``: ``results.json`` (configuration, versions, numbers,
timings, peak memory), ``samples.png``, the token datasets and the prior run (all resumable:
a rerun reuses finished parts). ``report.md`` in ``OUT`` ranks every probe found there.
"""

from __future__ import annotations

import json
import platform
import resource
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vistok.prior.base import create_prior, load_prior
from vistok.prior.decode import decode_ids
from vistok.prior.sampling import SamplingConfig
from vistok.prior.space import TokenSpace
from vistok.prior.train import PriorTrainConfig, PriorTrainer, TokenData, evaluate_nll
from vistok.registry import split_point
from vistok.utils.io import atomic_write_text
from vistok.utils.threads import torch_threads

__all__ = ["PROBE_FORMAT", "ProbeConfig", "probe_report", "run_probe"]

PROBE_FORMAT = "vistok.probe/1"


@dataclass(frozen=True)
class ProbeConfig:
    """The fixed probe (change it and the numbers are not comparable; it is recorded).

    Attributes:
        size, augment, heldout_augment: token dataset geometry and views (``vistok tokenize``).
        train_split, heldout_split: corpus selectors (:mod:`vistok.data.corpus`).
        prior, steps, batch_size, lr, warmup, max_digit: the prior and its fixed budget.
        samples: generated images scored against the held-out views.
        reference: held-out views (evenly spaced rows) the samples, reconstructions and
            training views are scored against; held-out cross-entropy uses every row.
        temperature, top_k, top_p: sampling.
        speed_batch: items sampled for the speed measurement (with and without cache).
        threads: torch intra-op threads for the whole probe.
        seed: weights of an untrained tokenizer, prior init, data order, sampling.
        max_images: use only the first images of each split (smoke tests; ``None``: all).
    """

    size: int = 128
    augment: str = "ten-crop"
    heldout_augment: str = "ten-crop"
    train_split: str = "train"
    heldout_split: str = "heldout"
    prior: str = "ar:dim=96,depth=2,heads=4"
    steps: int = 200
    batch_size: int = 8
    lr: float = 2e-3
    warmup: int = 20
    max_digit: int = 1024
    samples: int = 64
    reference: int = 64
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    speed_batch: int = 4
    threads: int = 1
    seed: int = 0
    max_images: int | None = None


def _corpus_inputs(split: str, limit: int | None) -> list[tuple[Path, Path]]:
    from vistok.data.corpus import corpus_images

    items = [(Path(i.path), Path(i.package) / Path(i.path).name) for i in corpus_images(split)]
    return items[:limit] if limit else items


def _materialize_tokenizer(spec: str, out: Path, seed: int) -> tuple[str, Any]:
    """The tokenizer as a checkpoint folder under ``out`` (a registry spec is built with
    ``torch.manual_seed(seed)`` first, so an untrained one is reproducible), and the model.
    ``spec`` is without a ``@k`` point (the caller splits it off and keeps it)."""
    import vistok
    from vistok.hub import load, save_pretrained

    folder = out / "tokenizer"
    if Path(spec).is_dir():
        return str(Path(spec).resolve()), load(spec)
    if not (folder / "config.json").is_file():
        torch.manual_seed(seed)
        save_pretrained(vistok.create(spec), folder)
    return str(folder.resolve()), load(folder)


def _tokenize(
    inputs: list[tuple[Path, Path]], out: Path, tok_spec: str, cfg: ProbeConfig, augment: str
) -> Any:
    from vistok.data.token_dataset import TokenDataset
    from vistok.data.tokenize import TokenizeOptions, tokenize_images

    opts = TokenizeOptions(tokenizer=tok_spec, size=cfg.size, augment=augment, batch_size=16, workers=2)
    res = tokenize_images(inputs, out, opts)
    if res.skipped:
        print(f"{out}: {len(res.skipped)} image(s) skipped: {res.skipped[:3]}", file=sys.stderr)
    return TokenDataset(out)


def _token_data(ds: Any) -> TokenData:
    return TokenData(ds.ids(), ds.lengths() if ds.variable_length else None)


def _views(ds: Any, rows: list[int], size: int, augment: str) -> np.ndarray:
    """The uint8 ``[n, size, size, 3]`` images of dataset ``rows`` (re-made from their sources)."""
    from vistok.data.augment import AUGMENTATIONS
    from vistok.data.images import load_image_uint8

    aug = AUGMENTATIONS[augment]
    pad = ds.manifest["geometry"]["pad_mode"]
    crop_range = float(ds.manifest["augment"]["crop_range"] or 1.1)
    cache: dict[str, list[np.ndarray]] = {}
    out = []
    for i in rows:
        r = ds[i]
        if r["source"] not in cache:
            cache[r["source"]] = aug.make(load_image_uint8(r["source"]), size, pad, crop_range).images
        out.append(cache[r["source"]][r["view"]])
    return np.stack(out)


def _features(images: np.ndarray, batch: int = 32) -> Tensor:
    from vistok.bench.metrics.frechet import MobileNetV2Extractor

    ext = MobileNetV2Extractor()
    x = torch.from_numpy(images).permute(0, 3, 1, 2)
    return torch.cat([ext(x[i : i + batch].float() / 255.0) for i in range(0, len(x), batch)])


def _distances(feats: Tensor, ref: Tensor) -> dict[str, float]:
    from vistok.bench.metrics.frechet import frechet_distance_from_features
    from vistok.bench.metrics.kid import kernel_distance

    kid = kernel_distance(feats, ref, subsets=50, subset_size=100)
    return {
        "fd_mobilenet_v2": frechet_distance_from_features(feats, ref),
        "kid_mobilenet_v2": kid["kid"],
        "kid_std": kid["kid_std"],
        "n": int(feats.shape[0]),
    }


def _sample_timed(
    prior: Any, n: int, cfg: ProbeConfig, seed: int, *, use_cache: bool, batch: int = 25
) -> tuple[Tensor, float]:
    sampling = SamplingConfig(cfg.temperature, cfg.top_k, cfg.top_p)
    g = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    chunks = [
        prior.sample(min(batch, n - i), sampling=sampling, generator=g, use_cache=use_cache)
        for i in range(0, n, batch)
    ]
    return torch.cat(chunks), time.perf_counter() - t0


def _grid(images: np.ndarray, cols: int = 8) -> np.ndarray:
    n, h, w, c = images.shape
    rows = -(-n // cols)
    out = np.full((rows * h, cols * w, c), 255, np.uint8)
    for i, im in enumerate(images):
        out[(i // cols) * h : (i // cols + 1) * h, (i % cols) * w : (i % cols + 1) * w] = im
    return out


def run_probe(
    spec: str, out: str | Path, cfg: ProbeConfig = ProbeConfig(), *, progress: bool = True
) -> dict[str, Any]:
    """Run the probe for tokenizer ``spec`` into folder ``out``; returns (and writes) ``results.json``."""
    import vistok
    from vistok.utils.io import atomic_write_bytes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    timings: dict[str, float] = {}
    with torch_threads(cfg.threads):
        t = time.perf_counter()
        base, num_tokens = split_point(spec)  # NAME@k: the folder is NAME's, the datasets keep k tokens
        tok_dir, tok = _materialize_tokenizer(base, out, cfg.seed)
        tok_spec = tok_dir if num_tokens is None else f"{tok_dir}@{num_tokens}"
        if tok.kind != "discrete":
            raise ValueError(f"{spec}: the probe needs a discrete tokenizer (ids), got kind {tok.kind!r}")
        train_ds = _tokenize(
            _corpus_inputs(cfg.train_split, cfg.max_images), out / "tokens-train", tok_spec, cfg, cfg.augment
        )
        held_ds = _tokenize(
            _corpus_inputs(cfg.heldout_split, cfg.max_images),
            out / "tokens-heldout",
            tok_spec,
            cfg,
            cfg.heldout_augment,
        )
        timings["tokenize_s"] = time.perf_counter() - t
        space = TokenSpace.from_dataset(train_ds, max_digit=cfg.max_digit)
        if not create_prior(cfg.prior, space).exact_likelihood:
            raise ValueError(
                f"probe prior {cfg.prior!r}: held-out cross-entropy needs an exact-likelihood prior (ar)"
            )

        t = time.perf_counter()
        tcfg = PriorTrainConfig(
            prior=cfg.prior,
            max_digit=cfg.max_digit,
            steps=cfg.steps,
            batch_size=cfg.batch_size,
            lr=cfg.lr,
            warmup=cfg.warmup,
            seed=cfg.seed,
            log_every=10,
            ckpt_every=50,
        )
        extra = {
            "tokens": {
                "path": str((out / "tokens-train").resolve()),
                "tokenizer": train_ds.tokenizer,
                "tokens_meta": train_ds.manifest.get("tokens_meta", {}),
            }
        }
        trainer = PriorTrainer(tcfg, space, _token_data(train_ds), out / "prior", resume=True, extra=extra)
        if trainer.step < cfg.steps or not (out / "prior" / "model" / "config.json").is_file():
            trainer.fit(progress=progress)
        timings["train_s"] = time.perf_counter() - t
        prior = load_prior(out / "prior" / "model")

        t = time.perf_counter()
        held = evaluate_nll(prior, _token_data(held_ds))
        train_nll = evaluate_nll(prior, _token_data(train_ds))
        timings["eval_s"] = time.perf_counter() - t

        t = time.perf_counter()
        ids, timings["sample_s"] = _sample_timed(prior, cfg.samples, cfg, cfg.seed + 1, use_cache=True)
        meta = held_ds.manifest.get("tokens_meta", {})
        samples = decode_ids(tok, ids, space, meta)
        timings["sample_decode_s"] = time.perf_counter() - t
        speed = _speed(prior, cfg)

        t = time.perf_counter()
        held_rows = (
            np.linspace(0, len(held_ds) - 1, min(cfg.reference, len(held_ds))).round().astype(int).tolist()
        )
        ref = _views(held_ds, held_rows, cfg.size, cfg.heldout_augment)
        recon = decode_ids(tok, held_ds.ids()[held_rows], space, meta)
        rng = np.random.default_rng(cfg.seed)
        train_rows = sorted(
            rng.choice(len(train_ds), size=min(cfg.samples, len(train_ds)), replace=False).tolist()
        )
        train_views = _views(train_ds, train_rows, cfg.size, cfg.augment)
        f_ref, f_gen, f_rec, f_train = (_features(a) for a in (ref, samples, recon, train_views))
        gen = _distances(f_gen, f_ref)
        rec = _distances(f_rec, f_ref)
        floor = _distances(f_train, f_ref)
        timings["metrics_s"] = time.perf_counter() - t

    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_grid(samples[:64])).save(buf, format="PNG")
    atomic_write_bytes(out / "samples.png", buf.getvalue())
    params = sum(p.numel() for p in prior.parameters())
    result = {
        "format": PROBE_FORMAT,
        "tokenizer": {
            "spec": spec,
            "checkpoint": tok_dir,
            "num_tokens": num_tokens,
            "family": getattr(tok, "family", None),
            "vocab_size": tok.vocab_size,
            "index_factors": train_ds.factors,
            "token_shape": list(train_ds.token_shape),
            "layout": train_ds.layout,
            "variable_length": train_ds.variable_length,
            "parameters": sum(p.numel() for p in tok.parameters()),
        },
        "probe": asdict(cfg),
        "prior": {
            "name": prior.registry_name,
            "config": prior.config,
            "parameters": params,  # type: ignore[attr-defined]
            "digit_sizes": space.digit_sizes,
            "positions": space.positions,
        },
        "data": {
            "train_rows": len(train_ds),
            "heldout_rows": len(held_ds),
            "train_images": len(train_ds.manifest["items"]),
            "heldout_images": len(held_ds.manifest["items"]),
            "train_tokens": train_nll["tokens"],
            "raw_bits_per_token": space.bits_per_position,
        },
        "heldout_nll": held,
        "train_nll": train_nll,
        "generation": gen,
        "reconstruction": rec,
        "data_floor": floor,
        "speed": speed,
        "timings_s": {k: round(v, 2) for k, v in timings.items()}
        | {"total": round(time.perf_counter() - t_start, 2)},
        "peak_rss_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
        "cpu_s": round(_cpu_seconds(), 1),
        "environment": {
            "vistok": vistok.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": "cpu",
            "threads": cfg.threads,
            "machine": platform.machine(),
        },
    }
    atomic_write_text(out / "results.json", json.dumps(result, indent=1) + "\n")
    return result


def _cpu_seconds() -> float:
    """User + system CPU time of this process (wall time on a shared machine says little)."""
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime + u.ru_stime


def _speed(prior: Any, cfg: ProbeConfig) -> dict[str, Any]:
    """Tokens/s sampling ``speed_batch`` items with and without the KV cache (same seed; whether
    the two drew the same tokens is recorded)."""
    _sample_timed(prior, 1, cfg, 0, use_cache=True)  # warm-up
    a, t_cache = _sample_timed(prior, cfg.speed_batch, cfg, 7, use_cache=True)
    b, t_full = _sample_timed(prior, cfg.speed_batch, cfg, 7, use_cache=False)
    tokens = cfg.speed_batch * prior.positions
    return {
        "batch": cfg.speed_batch,
        "tokens": tokens,
        "tokens_per_s_cache": tokens / t_cache,
        "tokens_per_s_no_cache": tokens / t_full,
        "speedup": t_full / t_cache,
        "same_tokens": bool(torch.equal(a, b)),
    }


def probe_report(root: str | Path) -> str:
    """Markdown ranking of every ``*/results.json`` under ``root`` (written to ``root/report.md``)."""
    root = Path(root)
    results = []
    for p in sorted(root.glob("*/results.json")):
        r = json.loads(p.read_text())
        if r.get("format") == PROBE_FORMAT:
            results.append((p.parent.name, r))
    results.sort(key=lambda x: x[1]["generation"]["fd_mobilenet_v2"])
    lines = [
        "# Generation probe",
        "",
        "Ranked by generation FD-MobileNetV2 (lower is better). bits/token and bits/image: held-out "
        "cross-entropy of the fixed AR prior; gFD/gKID: samples vs held-out views; rFD/rKID: the "
        "tokenizer's reconstructions of the held-out views; floor: training views vs held-out views.",
        "",
        "| rank | probe | tokenizer | tokens | raw bits/token | bits/token | bits/image | gFD | gKID | rFD | rKID | floor FD | tok/s cache | tok/s no cache | minutes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (name, r) in enumerate(results, 1):
        g, rc, fl, s, h = r["generation"], r["reconstruction"], r["data_floor"], r["speed"], r["heldout_nll"]
        lines.append(
            f"| {i} | {name} | `{r['tokenizer']['spec']}` | {'x'.join(map(str, r['tokenizer']['token_shape']))} "
            f"| {r['data']['raw_bits_per_token']:.2f} | {h['bits_per_token']:.3f} | {h['bits_per_image']:.0f} "
            f"| {g['fd_mobilenet_v2']:.2f} | {g['kid_mobilenet_v2']:.4f} | {rc['fd_mobilenet_v2']:.2f} "
            f"| {rc['kid_mobilenet_v2']:.4f} | {fl['fd_mobilenet_v2']:.2f} | {s['tokens_per_s_cache']:.0f} "
            f"| {s['tokens_per_s_no_cache']:.0f} | {r['timings_s']['total'] / 60:.1f} |"
        )
    if results:
        cfg = results[0][1]["probe"]
        lines += [
            "",
            "Probe configuration (identical for every row):",
            "",
            "```json",
            json.dumps(cfg, indent=1),
            "```",
        ]
        env = results[0][1]["environment"]
        lines += [
            "",
            f"Environment: vistok {env['vistok']}, torch {env['torch']}, {env['device']}, {env['threads']} threads.",
        ]
    text = "\n".join(lines) + "\n"
    atomic_write_text(root / "report.md", text)
    return text
