"""One image through one point: load, fit to the protocol's geometry, code (or read the
resume cache), perturb, and give an :class:`ItemResult` for the suites to score.

Nothing here measures quality; the suites (:mod:`vistok.bench.suites`) do.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vistok.bench.data import BenchData, BenchImage
from vistok.bench.points import Point, point_dirname
from vistok.bench.precomputed import PrecomputedReconstructions
from vistok.bench.protocol import Protocol
from vistok.data.images import ImageLoadError, load_image_uint8
from vistok.data.transforms import Fit, apply_fit, plan_fit, resize_uint8, undo_fit
from vistok.models.codecs import BudgetError, from_uint8, to_uint8
from vistok.tokenizer import Tokenizer
from vistok.utils.io import atomic_write_bytes

__all__ = ["ItemCache", "ItemResult", "Perturbation", "code_items", "fit_image", "perturb"]


@dataclass
class Perturbation:
    """How the robustness suite perturbs tokens (RobustTok-style)."""

    alpha: float = 0.1  # fraction of tokens perturbed
    delta: int = 4  # among the delta nearest codebook entries
    noise: float = 0.1  # continuous: Gaussian noise std relative to the latents' std
    seed: int = 0


@dataclass
class ItemResult:
    """One image coded at one point.

    Attributes:
        item: the data entry (path, relative name, annotations).
        image: the original, uint8 ``[H, W, 3]``.
        fit: how it was padded/resized to the evaluation square.
        fitted: the evaluation square, uint8 ``[S, S, 3]`` (S = ``Protocol.size``).
        model_input: what the tokenizer saw, uint8 ``[M, M, 3]`` (M = its input size).
        rec8: the reconstruction at the evaluation size, uint8 ``[S, S, 3]`` (8-bit rounded).
        bits: the rate of this image in bits.
        ids, lengths: the tokenizer's ids (long ``[1, ...]``) and lengths, when discrete.
        rob8: the reconstruction of the perturbed tokens, uint8 ``[S, S, 3]``, or ``None``.
        rob_note: how the tokens were perturbed (``None``: not perturbed).
        budget: the byte budget of an equal-bytes point, else ``None``.
        row: this image's row of ``per_image`` in the results; suites add their columns.
    """

    item: BenchImage
    image: np.ndarray
    fit: Fit
    fitted: np.ndarray
    model_input: np.ndarray
    rec8: np.ndarray
    bits: float
    ids: torch.Tensor | None = None
    lengths: torch.Tensor | None = None
    rob8: np.ndarray | None = None
    rob_note: str | None = None
    budget: int | None = None
    row: dict[str, Any] = field(default_factory=dict)
    _back: np.ndarray | None = field(default=None, init=False, repr=False)

    def back(self) -> np.ndarray:
        """The reconstruction in the original geometry, uint8 ``[H, W, 3]`` (annotation
        coordinates stay valid)."""
        if self._back is None:
            self._back = undo_fit(self.rec8, self.fit)
        return self._back


def fit_image(img: np.ndarray, proto: Protocol, model_size: int) -> tuple[Fit, np.ndarray, np.ndarray]:
    """uint8 ``[H, W, 3]`` -> (its fit, the evaluation square uint8 ``[S, S, 3]``, the model's
    input uint8 ``[M, M, 3]``): every tokenizer is scored on the same evaluation square; one
    with a fixed native size sees that square resized to its size (and its output resized back)."""
    fit = plan_fit(*img.shape[:2], size=proto.size, pad_mode=proto.pad_mode)
    fitted = apply_fit(img, fit)
    return fit, fitted, resize_uint8(fitted, model_size, model_size)


def perturb(tok: Tokenizer, tokens: Any, p: Perturbation, gen: torch.Generator) -> tuple[Any, str] | None:
    """RobustTok-style perturbation; ``None`` when the tokenizer has no notion of it.

    Discrete ids: a fraction ``alpha`` of tokens swapped for one of their ``delta`` nearest
    codebook entries (needs ``tok.neighbours``); latents: Gaussian noise of ``noise`` times
    the latents' std.
    """
    t = copy.copy(tokens)
    if t.ids is not None and getattr(tok, "kind", "") == "discrete" and hasattr(tok, "neighbours"):
        ids = t.ids
        nb = tok.neighbours(ids, p.delta)  # [..., delta]
        choice = torch.randint(0, nb.shape[-1], ids.shape, generator=gen)
        swapped = torch.gather(nb, -1, choice.unsqueeze(-1)).squeeze(-1)
        mask = torch.rand(ids.shape, generator=gen) < p.alpha
        t.ids = torch.where(mask, swapped, ids)
        return t, f"alpha={p.alpha}, delta={p.delta} nearest codebook entries"
    if t.latents is not None:
        lat = t.latents
        noise = torch.randn(lat.shape, generator=gen) * lat.float().std() * p.noise
        t.latents = (lat.float() + noise).to(lat.dtype)
        return t, f"gaussian noise, std = {p.noise} x latent std"
    return None


class ItemCache:
    """Per-image tokenizer outputs of an unfinished point, so an interrupted run resumes.

    One ``<index>.npz`` per image (the 8-bit reconstruction, its bits, the ids for codebook
    use, the perturbed decode), written atomically and read back with
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
        buf = io.BytesIO()
        np.savez(buf, **arrays)
        atomic_write_bytes(self.root / f"{index}.npz", buf.getvalue())


def _save_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    atomic_write_bytes(path.with_suffix(".png"), buf.getvalue())


def _from_cache(cached: dict[str, np.ndarray]) -> dict[str, Any]:
    ids, lengths = cached.get("ids"), cached.get("lengths")
    return {
        "rec8": cached["rec8"],
        "bits": float(cached["bits"]),
        "ids": None if ids is None else torch.from_numpy(ids),
        "lengths": None if lengths is None else torch.from_numpy(lengths),
        "rob8": cached.get("rob8"),
        "rob_note": str(cached["rob_note"]) if "rob_note" in cached else None,
    }


def _code(
    tok: Tokenizer,
    x: torch.Tensor,
    point: Point,
    proto: Protocol,
    budget: int | None,
    perturbation: Perturbation | None,
    index: int,
) -> dict[str, Any]:
    """Encode and decode one model input ``x`` (float ``[1, 3, M, M]``); perturbed decode too."""
    coder = tok if budget is None else tok.with_budget(budget)  # type: ignore[attr-defined]
    tokens = coder.encode(x, num_tokens=point.num_tokens)
    recon = coder.decode(tokens).clamp(0, 1)
    rec8 = resize_uint8(to_uint8(recon)[0], proto.size, proto.size)  # 8-bit, as a saved image
    out: dict[str, Any] = {
        "rec8": rec8,
        "bits": float(tokens.bits[0]),
        "ids": None if tokens.ids is None else tokens.ids.cpu(),
        "lengths": None if tokens.lengths is None else tokens.lengths.cpu(),
        "rob8": None,
        "rob_note": None,
    }
    if perturbation is not None:
        # one generator per image: the same perturbation whether or not the run resumed
        gen = torch.Generator().manual_seed(perturbation.seed * 1_000_003 + index)
        pert = perturb(tok, tokens, perturbation, gen)
        if pert is not None:
            yp8 = to_uint8(tok.decode(pert[0]).clamp(0, 1))[0]
            out["rob8"], out["rob_note"] = resize_uint8(yp8, proto.size, proto.size), pert[1]
    return out


def _to_cache(coded: dict[str, Any]) -> dict[str, np.ndarray]:
    entry: dict[str, np.ndarray] = {"rec8": coded["rec8"], "bits": np.float64(coded["bits"])}
    for key in ("ids", "lengths"):
        if coded[key] is not None:
            entry[key] = coded[key].numpy()
    if coded["rob8"] is not None:
        entry["rob8"], entry["rob_note"] = coded["rob8"], np.str_(coded["rob_note"])
    return entry


def code_items(
    tok: Tokenizer,
    point: Point,
    data: BenchData,
    proto: Protocol,
    *,
    model_size: int,
    device: str = "cpu",
    cache: ItemCache | None = None,
    save_dir: Path | None = None,
    budgets: Mapping[str, int] | None = None,
    perturbation: Perturbation | None = None,
    skipped: list[tuple[str, str]],
) -> Iterator[ItemResult]:
    """Every image of ``data`` coded at ``point``, in order; images that cannot be coded are
    appended to ``skipped`` as ``(path, reason)`` and not yielded.

    ``cache``: per-image outputs reused when present, stored when computed. ``save_dir``:
    each reconstruction also written to ``save_dir/<point_dirname(label)>/<image>.png``.
    ``budgets``: ``{file: bytes}`` of an equal-bytes point (an image without one is skipped).
    ``perturbation``: also decode perturbed tokens (robustness suite).
    """
    cache = cache or ItemCache(None)
    for index, item in enumerate(data.items):
        try:
            img = load_image_uint8(item.path)
        except ImageLoadError as e:
            skipped.append((e.path, e.reason))
            continue
        fit, fitted, model_input = fit_image(img, proto, model_size)
        budget = None if budgets is None else budgets.get(item.rel)
        if budgets is not None and budget is None:
            ref = point.budget_of.label if point.budget_of else "the reference point"
            skipped.append((item.rel, f"no rate for this image in {ref}"))
            continue
        cached = cache.get(index)
        if isinstance(tok, PrecomputedReconstructions):
            found = tok.lookup(item.rel, fit)
            if isinstance(found, str):
                skipped.append((item.rel, found))
                continue
            coded: dict[str, Any] = {"rec8": found[0], "bits": found[1]}
        elif cached is not None:  # resumed: this image's tokenizer outputs are on disk
            coded = _from_cache(cached)
        else:
            x = from_uint8(model_input[None]).to(device)
            try:
                coded = _code(tok, x, point, proto, budget, perturbation, index)
            except BudgetError as e:  # a codec that never exceeds its budget cannot meet it
                skipped.append((item.rel, str(e)))
                continue
            cache.put(index, _to_cache(coded))
        if save_dir is not None:
            _save_png(save_dir / point_dirname(point) / item.rel, coded["rec8"])
        bits = coded["bits"]
        row: dict[str, Any] = {
            "file": item.rel,
            "bits": bits,
            "bpp": bits / (fit.size_h * fit.size_w),
            "bpp_original": bits / (fit.orig_h * fit.orig_w),
        }
        if budget is not None:  # the true file size against the budget: never pretend
            row.update(budget_bytes=budget, over_budget=bits > 8 * budget)
        yield ItemResult(item, img, fit, fitted, model_input, budget=budget, row=row, **coded)
