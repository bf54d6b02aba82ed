"""Text preservation: OCR word accuracy on ground-truth word boxes (TokBench style).

For every annotated word ``{"text": str, "box": [x0, y0, x1, y1]}`` (pixels, end
exclusive) the box is cropped from the image with a margin of ``margin × box height``
pixels on every side (0.1 by default; clipped at the image border) and read by the
*recognizer only* of RapidOCR (PP-OCRv6 small recognition model shipped inside the
``rapidocr`` wheel, run by onnxruntime; no detection, no angle classifier — as TokBench
recognizes ground-truth crops). Each word scores

- **T-ACC**: 1 if the prediction equals the annotation exactly (case-sensitive), else 0;
- **T-NED**: ``1 - lev(pred, gt) / max(len(pred), len(gt))`` (1 when both are empty).

Both are fractions in ``[0, 1]`` (TokBench prints T-ACC in percent). Words are bucketed
by ``height_ratio = box height / max(image H, W)``; TokBench's buckets at 256 px are
``[0.02, 0.03)``, ``[0.03, 0.04)``, ``[0.04, 1]``. The headline value is the
unweighted mean of the per-bucket means over the non-empty buckets.

The OCR engine is created lazily on first use, once per process, with as many onnxruntime
threads as torch uses (``torch.get_num_threads()`` at that moment: a sharded run that gives
each process one thread gives the OCR one too). The predictions do not depend on the thread
count (checked on the 216 words of the sample data: 1 and 2 threads read the same text); the
time does (2 cores: 25 ms per word at one thread, 13 ms at two).
"""

from __future__ import annotations

import importlib.util
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from vistok.bench.metrics.base import Buckets, Metric, check_pair, to_uint8_hwc
from vistok.registry import METRICS

__all__ = [
    "TOKBENCH_TEXT_EDGES",
    "TextAccumulator",
    "WordOCR",
    "WordScore",
    "crop_box",
    "get_word_ocr",
    "levenshtein",
    "normalized_edit_similarity",
    "score_words",
    "text_available",
]

TOKBENCH_TEXT_EDGES: tuple[float, ...] = (0.02, 0.03, 0.04, 1.0)
REC_MODEL_FILE = "PP-OCRv6_rec_small.onnx"


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions; each cost 1) between two strings."""
    if len(a) < len(b):
        a, b = b, a
    if not b:
        return len(a)
    prev = list(range(len(b) + 1))  # distances from a[:0] to every prefix of b
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def normalized_edit_similarity(pred: str, gt: str) -> float:
    """T-NED of one word: ``1 - lev(pred, gt) / max(len(pred), len(gt))``; 1.0 when both are empty."""
    longest = max(len(pred), len(gt))
    return 1.0 if longest == 0 else 1.0 - levenshtein(pred, gt) / longest


def text_available() -> str | None:
    """``None`` when the OCR can run here, else the reason (what to install)."""
    for module, package in (("rapidocr", "rapidocr"), ("onnxruntime", "onnxruntime")):
        if importlib.util.find_spec(module) is None:
            return f"the text metric needs `{package}` (pip install 'vistok[bench]' or pip install {package})"
    try:
        _rec_model_path()
    except FileNotFoundError as e:
        return str(e)
    return None


def _rec_model_path() -> Path:
    spec = importlib.util.find_spec("rapidocr")
    roots = list(spec.submodule_search_locations or []) if spec else []
    for root in roots:
        path = Path(root) / "models" / REC_MODEL_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the rapidocr package has no bundled recognition model {REC_MODEL_FILE} (looked in "
        f"{roots}); install a rapidocr>=3.0 wheel that ships its models (nothing is downloaded at run time)"
    )


class WordOCR:
    """RapidOCR's text recognizer alone, on word crops.

    Created lazily (the first :meth:`recognize` builds the onnxruntime session) with the
    bundled model path given explicitly, so rapidocr never tries to download anything.
    """

    def __init__(self, *, threads: int | None = None) -> None:
        self.threads = threads  # None: torch.get_num_threads() when the engine is built
        self._engine: Any = None
        self._lock = threading.Lock()

    def _get(self) -> Any:
        if self._engine is None:
            with self._lock:
                if self._engine is None:
                    reason = text_available()
                    if reason:
                        raise RuntimeError(reason)
                    import torch
                    from rapidocr import RapidOCR

                    threads = self.threads or torch.get_num_threads()
                    self._engine = RapidOCR(
                        params={
                            "Global.use_det": False,
                            "Global.use_cls": False,
                            "Global.use_rec": True,
                            "Global.log_level": "error",
                            "Rec.model_path": str(_rec_model_path()),
                            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                        }
                    )
        return self._engine

    def recognize(self, crops: Sequence[np.ndarray]) -> list[str]:
        """Read each crop (uint8 ``[h, w, 3]`` RGB) as one line of text; ``""`` for an empty crop."""
        if not crops:
            return []
        engine = self._get()
        out = [""] * len(crops)
        valid = [i for i, c in enumerate(crops) if c.shape[0] > 0 and c.shape[1] > 0]
        if valid:
            # RapidOCR's models expect OpenCV's BGR channel order.
            bgr = [np.ascontiguousarray(crops[i][:, :, ::-1]) for i in valid]
            # ``recognize_txt`` runs the recognition model only (no detection/classification).
            result = engine.recognize_txt(bgr)
            for i, txt in zip(valid, result.txts, strict=True):
                out[i] = str(txt)
        return out


_DEFAULT_OCR: WordOCR | None = None


def get_word_ocr() -> WordOCR:
    """The process-wide :class:`WordOCR` (its engine is built on first use)."""
    global _DEFAULT_OCR
    if _DEFAULT_OCR is None:
        _DEFAULT_OCR = WordOCR()
    return _DEFAULT_OCR


def crop_box(image: np.ndarray, box: Sequence[float], margin: float = 0.1) -> np.ndarray:
    """Crop ``box = [x0, y0, x1, y1]`` (end exclusive) from ``[H, W, 3]`` with ``margin × height`` px around.

    Coordinates are rounded to integers (floor for starts, ceil for ends) and clipped
    at the image border; a box outside the image gives an empty crop.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    pad = margin * max(y1 - y0, 0.0)
    h, w = image.shape[:2]
    r0, r1 = max(math.floor(y0 - pad), 0), min(math.ceil(y1 + pad), h)
    c0, c1 = max(math.floor(x0 - pad), 0), min(math.ceil(x1 + pad), w)
    return image[r0 : max(r1, r0), c0 : max(c1, c0)]


@dataclass(frozen=True)
class WordScore:
    """The OCR result of one annotated word."""

    text: str
    pred: str
    exact: float  # T-ACC of this word: 1.0 or 0.0
    ned: float  # T-NED of this word, in [0, 1]
    height_ratio: float  # box height / max(image H, W)


def _word_fields(word: Mapping[str, Any]) -> tuple[str, list[float]]:
    try:
        text, box = str(word["text"]), [float(v) for v in word["box"]]
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(
            f"a word annotation must be {{'text': str, 'box': [x0, y0, x1, y1]}}, got {word!r}"
        ) from e
    if len(box) != 4:
        raise ValueError(f"a word box must be [x0, y0, x1, y1], got {box}")
    return text, box


def score_words(
    image: np.ndarray | Tensor,
    words: Sequence[Mapping[str, Any]],
    *,
    margin: float = 0.1,
    ocr: WordOCR | None = None,
) -> list[WordScore]:
    """OCR each annotated word of ``image`` and score it against its annotation.

    Args:
        image: uint8 ``[H, W, 3]`` RGB, or a tensor ``[3, H, W]`` in [0, 1] (see :func:`to_uint8_hwc`).
        words: ``{"text": str, "box": [x0, y0, x1, y1]}`` with pixel coordinates.
        margin: extra context around each box, as a fraction of the box height.
        ocr: the recognizer (default: the process-wide one).

    Returns:
        One :class:`WordScore` per word, in order.
    """
    img = to_uint8_hwc(image)
    size = max(img.shape[:2])
    fields = [_word_fields(w) for w in words]
    preds = (ocr or get_word_ocr()).recognize([crop_box(img, box, margin) for _, box in fields])
    return [
        WordScore(
            text=text,
            pred=pred,
            exact=float(pred == text),
            ned=normalized_edit_similarity(pred, text),
            height_ratio=(box[3] - box[1]) / size,
        )
        for (text, box), pred in zip(fields, preds, strict=True)
    ]


class TextAccumulator(Metric):
    """T-ACC / T-NED of OCR on reconstructions, bucketed by word height (see module notes).

    ``update(originals, reconstructions, annotations)`` takes one list of words per image
    and scores the OCR of the *reconstructions*; with ``score_originals=True`` it also
    scores the originals (the OCR's own ceiling, reported as ``*_original``).

    ``compute()`` keys (fractions in [0, 1], ``nan`` for an empty bucket):
    ``t_acc``, ``t_ned`` (unweighted means over the non-empty buckets),
    ``t_acc[lo,hi)``, ``t_ned[lo,hi)``, ``count[lo,hi)`` per bucket, ``n_words``
    (words in some bucket), ``n_outside`` (words outside every bucket, not scored),
    ``n_empty_buckets``. :meth:`empty_buckets` lists the empty buckets by label;
    :meth:`records` gives every word's result.
    """

    name = suite = "text"
    primary = "t_acc"
    label = "T-ACC"
    annotations = "words"
    higher_is_better = True

    def __init__(
        self,
        *,
        edges: Sequence[float] = TOKBENCH_TEXT_EDGES,
        margin: float = 0.1,
        score_originals: bool = False,
        ocr: WordOCR | None = None,
    ) -> None:
        if margin < 0:
            raise ValueError(f"margin must be >= 0, got {margin}")
        self.buckets = Buckets(tuple(edges))
        self.margin = margin
        self.score_originals = score_originals
        self.ocr = ocr
        self.reset()

    def reset(self) -> None:
        n = len(self.buckets)
        # Per bucket float64 sums: [T-ACC, T-NED, T-ACC of originals, T-NED of originals].
        self.sums = np.zeros((n, 4), dtype=np.float64)
        self.counts = np.zeros(n, dtype=np.int64)
        self.n_outside = 0
        self._records: list[dict[str, Any]] = []

    def add_image(
        self,
        reconstruction: np.ndarray | Tensor,
        words: Sequence[Mapping[str, Any]],
        original: np.ndarray | Tensor | None = None,
    ) -> list[WordScore]:
        """Score one image's words (uint8 ``[H, W, 3]`` or float ``[3, H, W]``); returns the scores."""
        img = to_uint8_hwc(reconstruction)
        size = max(img.shape[:2])
        boxes = [_word_fields(w)[1] for w in words]
        idx = [self.buckets.index((b[3] - b[1]) / size) for b in boxes]
        kept = [w for w, i in zip(words, idx, strict=True) if i is not None]
        boxes_kept = [bx for bx, i in zip(boxes, idx, strict=True) if i is not None]
        labels = self.buckets.labels()
        bins = [i for i in idx if i is not None]
        self.n_outside += len(words) - len(kept)
        if not kept:
            return []
        scores = score_words(img, kept, margin=self.margin, ocr=self.ocr)
        ref = None
        if self.score_originals and original is not None:
            orig = to_uint8_hwc(original)
            if orig.shape != img.shape:
                raise ValueError(f"text: original {orig.shape} and reconstruction {img.shape} differ in size")
            ref = score_words(orig, kept, margin=self.margin, ocr=self.ocr)
        for k, (b, s) in enumerate(zip(bins, scores, strict=True)):
            self.sums[b, 0] += s.exact
            self.sums[b, 1] += s.ned
            if ref is not None:
                self.sums[b, 2] += ref[k].exact
                self.sums[b, 3] += ref[k].ned
            self.counts[b] += 1
            rec = {**asdict(s), "box": boxes_kept[k], "bucket": labels[b]}
            if ref is not None:
                rec.update(pred_original=ref[k].pred, exact_original=ref[k].exact, ned_original=ref[k].ned)
            self._records.append(rec)
        return scores

    def records(self, start: int = 0) -> list[dict[str, Any]]:
        """One dict per scored word, in order: text, pred, exact, ned, height_ratio, box, bucket
        (and ``*_original`` with ``score_originals``)."""
        return self._records[start:]  # a new list: from ``start`` on (records seen so far)

    def update(
        self, originals: Tensor, reconstructions: Tensor, annotations: Sequence[Any] | None = None
    ) -> None:
        """``annotations[i]`` is the list of words of image ``i`` (``{"text", "box"}`` dicts)."""
        check_pair(originals, reconstructions, who="text")
        if annotations is None or len(annotations) != originals.shape[0]:
            raise ValueError("text: annotations must give one list of words per image")
        for i, words in enumerate(annotations):
            self.add_image(reconstructions[i], words, originals[i] if self.score_originals else None)

    def empty_buckets(self) -> list[str]:
        return [lab for lab, c in zip(self.buckets.labels(), self.counts, strict=True) if c == 0]

    def compute(self) -> dict[str, float]:
        out: dict[str, float] = {}
        cols = ["t_acc", "t_ned"] + (["t_acc_original", "t_ned_original"] if self.score_originals else [])
        means = np.full((len(self.buckets), len(cols)), np.nan)
        nonempty = self.counts > 0
        means[nonempty] = self.sums[nonempty, : len(cols)] / self.counts[nonempty, None]
        for j, col in enumerate(cols):
            out[col] = float(means[nonempty, j].mean()) if nonempty.any() else math.nan
        for b, lab in enumerate(self.buckets.labels()):
            for j, col in enumerate(cols):
                out[f"{col}{lab}"] = float(means[b, j])
            out[f"count{lab}"] = float(self.counts[b])
        out["n_words"] = float(self.counts.sum())
        out["n_outside"] = float(self.n_outside)
        out["n_empty_buckets"] = float((~nonempty).sum())
        return out


@METRICS.register("text", available=text_available)
def _text_metric(
    *, edges: tuple[float, ...] = TOKBENCH_TEXT_EDGES, margin: float = 0.1, score_originals: bool = False
) -> TextAccumulator:
    """OCR word accuracy (T-ACC) and 1 - normalized edit distance (T-NED), RapidOCR, by word height."""
    return TextAccumulator(edges=edges, margin=margin, score_originals=score_originals)
