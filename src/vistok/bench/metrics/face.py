"""Face identity preservation: dlib face-descriptor distance at a known face box.

For a face box ``[x0, y0, x1, y1]`` (pixels, end exclusive) of an original image:

1. the face's 5 landmarks (dlib's layout: two corners per eye, nose base) are the
   annotated ones when the annotation has ``landmarks5`` (TokBench uses ground-truth
   keypoints), else dlib's 5-point shape predictor finds them inside the box on the
   **original**. The same landmarks align both images, so a degraded face is never
   "re-found" at a different place (dlib stores landmarks as integer pixels: annotated
   coordinates are rounded);
2. dlib's ResNet face-recognition model (``dlib_face_recognition_resnet_model_v1``;
   99.38% on LFW) turns each aligned 150×150 face chip into a 128-d descriptor;
3. the score is the Euclidean distance between the two descriptors. dlib's own
   same-person threshold is 0.6 (smaller = same identity).

Models: the ``.dat`` files of the ``face-recognition-models`` pip package, read with dlib
directly (``face_recognition`` itself is not used). They are located without importing
that package when its ``pkg_resources`` import fails (setuptools >= 81 dropped it).

Faces are bucketed by ``box height / max(image H, W)``; the default edges
``(0, 0.05, 0.1, 0.2, 1.0)`` give ``[0, 0.05)``, ``[0.05, 0.1)``, ``[0.1, 0.2)``,
``[0.2, 1]``. The headline is the unweighted mean of the per-bucket mean distances.
TokBench instead reports ArcFace cosine similarity; the two are not comparable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor

from vistok.bench.metrics.base import Buckets, Metric, check_pair, to_uint8_hwc
from vistok.registry import METRICS

__all__ = [
    "DEFAULT_FACE_EDGES",
    "SAME_PERSON_THRESHOLD",
    "FaceAccumulator",
    "FaceModels",
    "FaceScore",
    "detect_faces",
    "face_available",
    "face_descriptor_distance",
    "face_model_paths",
    "get_face_models",
]

DEFAULT_FACE_EDGES: tuple[float, ...] = (0.0, 0.05, 0.1, 0.2, 1.0)
SAME_PERSON_THRESHOLD = 0.6
_SHAPE_FILE = "shape_predictor_5_face_landmarks.dat"
_RECOG_FILE = "dlib_face_recognition_resnet_model_v1.dat"


def face_model_paths() -> tuple[Path, Path]:
    """Paths of the 5-point shape predictor and the recognition model from ``face-recognition-models``.

    Raises:
        FileNotFoundError: naming the pip package when they are missing.
    """
    try:
        import face_recognition_models as frm

        paths = (
            Path(frm.pose_predictor_five_point_model_location()),
            Path(frm.face_recognition_model_location()),
        )
    except ImportError:  # the package itself, or its pkg_resources import, is missing
        spec = importlib.util.find_spec("face_recognition_models")
        roots = list(spec.submodule_search_locations or []) if spec else []
        base = Path(roots[0]) / "models" if roots else Path("face_recognition_models/models")
        paths = (base / _SHAPE_FILE, base / _RECOG_FILE)
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"dlib face models not found ({', '.join(missing)}); install them with "
            "`pip install face-recognition-models` (nothing is downloaded at run time)"
        )
    return paths


def face_available() -> str | None:
    """``None`` when the face metric can run here, else the reason (what to install)."""
    if importlib.util.find_spec("dlib") is None:
        return "the face metric needs dlib (pip install dlib-bin, or pip install 'vistok[bench]')"
    try:
        face_model_paths()
    except FileNotFoundError as e:
        return str(e)
    return None


class FaceModels:
    """dlib's HOG face detector, 5-point shape predictor and face recognizer, loaded on first use."""

    # Descriptors kept (128 float64 each, ~1 KB): a bench run scores every point against the
    # same originals, so each original face is described once per run instead of once per point.
    cache_size = 4096

    def __init__(self) -> None:
        self._models: tuple[Any, Any, Any] | None = None
        self._lock = threading.Lock()
        self._descriptors: OrderedDict[bytes, np.ndarray] = OrderedDict()

    def _get(self) -> tuple[Any, Any, Any]:
        if self._models is None:
            with self._lock:
                if self._models is None:
                    reason = face_available()
                    if reason:
                        raise RuntimeError(reason)
                    import dlib

                    shape_path, recog_path = face_model_paths()
                    self._models = (
                        dlib.get_frontal_face_detector(),
                        dlib.shape_predictor(str(shape_path)),
                        dlib.face_recognition_model_v1(str(recog_path)),
                    )
        return self._models

    def detect(self, image: np.ndarray, upsample: int = 1) -> list[tuple[list[int], float]]:
        """HOG frontal faces of uint8 ``[H, W, 3]``: ``(box [x0, y0, x1, y1] end exclusive, score)``, best first."""
        detector = self._get()[0]
        rects, scores, _ = detector.run(_contiguous(image), upsample, 0.0)
        found = [
            ([r.left(), r.top(), r.right() + 1, r.bottom() + 1], float(s))
            for r, s in zip(rects, scores, strict=True)
        ]
        return sorted(found, key=lambda f: -f[1])

    def landmarks(
        self, image: np.ndarray, box: Sequence[float], points: Sequence[Sequence[float]] | None = None
    ) -> Any:
        """dlib ``full_object_detection`` of the face in ``box`` of uint8 ``[H, W, 3]``.

        ``points`` (5 ``[x, y]`` in dlib's 5-point order) are used as given (rounded to
        integer pixels); without them the 5-point shape predictor runs on ``image``.
        """
        import dlib

        x0, y0, x1, y1 = (round(float(v)) for v in box)
        # dlib rectangles include their right/bottom pixel; our boxes exclude them.
        rect = dlib.rectangle(x0, y0, x1 - 1, y1 - 1)
        if points is not None:
            pts = [dlib.point(round(float(x)), round(float(y))) for x, y in points]
            if len(pts) != 5:
                raise ValueError(f"face landmarks must be 5 [x, y] points (dlib order), got {len(pts)}")
            return dlib.full_object_detection(rect, pts)
        return self._get()[1](_contiguous(image), rect)

    def descriptor(self, image: np.ndarray, shape: Any) -> np.ndarray:
        """128-d float64 descriptor of the face aligned by ``shape`` in uint8 ``[H, W, 3]``.

        Memoized on the image's bytes and the landmarks (least recently used entries go
        first): dlib is deterministic, so a repeated call returns the same values.
        """
        img = _contiguous(image)
        h = hashlib.blake2b(digest_size=20)
        h.update(repr((img.shape, _shape_key(shape))).encode())
        h.update(memoryview(img).cast("B"))
        key = h.digest()
        with self._lock:
            hit = self._descriptors.get(key)
            if hit is not None:
                self._descriptors.move_to_end(key)
                return hit.copy()
        out = np.asarray(self._get()[2].compute_face_descriptor(img, shape), dtype=np.float64)
        with self._lock:
            self._descriptors[key] = out.copy()
            while len(self._descriptors) > self.cache_size:
                self._descriptors.popitem(last=False)
        return out


def _shape_key(shape: Any) -> tuple[int, ...]:
    """The rectangle and landmark coordinates of a dlib ``full_object_detection``."""
    r = shape.rect
    parts = [(shape.part(i).x, shape.part(i).y) for i in range(shape.num_parts)]
    return (r.left(), r.top(), r.right(), r.bottom(), *(v for xy in parts for v in xy))


_DEFAULT_MODELS: FaceModels | None = None


def get_face_models() -> FaceModels:
    """The process-wide :class:`FaceModels` (loaded on first use)."""
    global _DEFAULT_MODELS
    if _DEFAULT_MODELS is None:
        _DEFAULT_MODELS = FaceModels()
    return _DEFAULT_MODELS


def _contiguous(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image, dtype=np.uint8)


def detect_faces(image: np.ndarray | Tensor, *, upsample: int = 1) -> list[tuple[list[int], float]]:
    """dlib HOG frontal face detection (to annotate sample data).

    Args:
        image: uint8 ``[H, W, 3]`` RGB or float ``[3, H, W]`` in [0, 1].
        upsample: times to upsample the image first (finds faces down to ~40 px at 1).

    Returns:
        ``(box, score)`` pairs, highest score first; ``box = [x0, y0, x1, y1]`` with the end
        exclusive (it may extend past the image border).
    """
    return get_face_models().detect(to_uint8_hwc(image), upsample)


def face_descriptor_distance(
    original: np.ndarray | Tensor,
    reconstruction: np.ndarray | Tensor,
    box: Sequence[float],
    *,
    landmarks: Sequence[Sequence[float]] | None = None,
    models: FaceModels | None = None,
) -> float:
    """Euclidean distance between dlib descriptors of one face in original and reconstruction.

    Args:
        original, reconstruction: uint8 ``[H, W, 3]`` or float ``[3, H, W]`` in [0, 1], same size.
        box: the face ``[x0, y0, x1, y1]`` (pixels, end exclusive) in the original.
        landmarks: 5 annotated ``[x, y]`` points (dlib order); default: predicted on the original.
        models: the dlib models (default: the process-wide ones).

    Returns:
        The distance (>= 0; 0 for identical images; < 0.6 means "same person" for dlib).
    """
    m = models or get_face_models()
    a, b = to_uint8_hwc(original), to_uint8_hwc(reconstruction)
    if a.shape != b.shape:
        raise ValueError(f"face: original {a.shape} and reconstruction {b.shape} differ in size")
    shape = m.landmarks(a, box, landmarks)  # from the annotation or the original, reused for both
    return float(np.linalg.norm(m.descriptor(a, shape) - m.descriptor(b, shape)))


@dataclass(frozen=True)
class FaceScore:
    """The result of one face."""

    distance: float
    cosine: float  # cosine similarity of the two descriptors
    size_ratio: float  # box height / max(image H, W)
    landmarks: str  # "annotation" or "predicted"


def _face_fields(face: Any) -> tuple[list[float], list[list[float]] | None]:
    """``(box, landmarks or None)`` of ``[x0, y0, x1, y1]`` or ``{"box": [...], "landmarks5": [...]}``."""
    box = face["box"] if isinstance(face, dict) else face
    points = face.get("landmarks5") if isinstance(face, dict) else None
    try:
        out = [float(v) for v in box]
        pts = [[float(x), float(y)] for x, y in points] if points is not None else None
    except (TypeError, ValueError) as e:
        raise ValueError(
            f"a face annotation must be [x0, y0, x1, y1] or {{'box': [...], 'landmarks5': [[x, y] * 5]}}, "
            f"got {face!r}"
        ) from e
    if len(out) != 4:
        raise ValueError(f"a face box must be [x0, y0, x1, y1], got {out}")
    return out, pts


class FaceAccumulator(Metric):
    """Face identity distance between originals and reconstructions, bucketed by face size.

    ``update(originals, reconstructions, annotations)``: ``annotations[i]`` is the list of
    faces of image ``i``: ``[x0, y0, x1, y1]`` or ``{"box": [...], "landmarks5": [...]}``
    (landmarks optional; used when present and ``use_landmarks``).

    ``compute()`` keys (``nan`` for an empty bucket): ``face_dist`` (mean descriptor
    distance; unweighted mean over the non-empty buckets; lower is better),
    ``face_same`` (share under ``threshold``, same averaging), ``face_cos`` (mean cosine
    similarity of descriptors, same averaging), per bucket ``face_dist[lo,hi)``,
    ``face_same[lo,hi)``, ``face_cos[lo,hi)``, ``count[lo,hi)``, and ``n_faces``,
    ``n_outside`` (faces in no bucket, not scored), ``n_empty_buckets``,
    ``n_annotated_landmarks``. :meth:`records` gives every face's result.
    """

    name = suite = "face"
    primary = "face_dist"
    label = "face dist"
    annotations = "faces"
    higher_is_better = False

    def __init__(
        self,
        *,
        edges: Sequence[float] = DEFAULT_FACE_EDGES,
        threshold: float = SAME_PERSON_THRESHOLD,
        use_landmarks: bool = True,
        models: FaceModels | None = None,
    ) -> None:
        self.buckets = Buckets(tuple(edges))
        self.threshold = threshold
        self.use_landmarks = use_landmarks
        self.models = models
        self.reset()

    def reset(self) -> None:
        # Per bucket float64 sums: [distance, same person, cosine].
        self.sums = np.zeros((len(self.buckets), 3), dtype=np.float64)
        self.counts = np.zeros(len(self.buckets), dtype=np.int64)
        self.n_outside = 0
        self._records: list[dict[str, Any]] = []

    def add_image(
        self, original: np.ndarray | Tensor, reconstruction: np.ndarray | Tensor, faces: Sequence[Any]
    ) -> list[FaceScore]:
        """Score the faces of one image pair (uint8 ``[H, W, 3]`` or float ``[3, H, W]``)."""
        m = self.models or get_face_models()
        a, b = to_uint8_hwc(original), to_uint8_hwc(reconstruction)
        if a.shape != b.shape:
            raise ValueError(f"face: original {a.shape} and reconstruction {b.shape} differ in size")
        size = max(a.shape[:2])
        labels = self.buckets.labels()
        out = []
        for face in faces:
            box, points = _face_fields(face)
            points = points if self.use_landmarks else None
            ratio = (box[3] - box[1]) / size
            k = self.buckets.index(ratio)
            if k is None:
                self.n_outside += 1
                continue
            shape = m.landmarks(a, box, points)
            da, db = m.descriptor(a, shape), m.descriptor(b, shape)
            dist = float(np.linalg.norm(da - db))
            cos = float(da @ db / max(np.linalg.norm(da) * np.linalg.norm(db), 1e-12))
            self.sums[k] += (dist, float(dist < self.threshold), cos)
            self.counts[k] += 1
            score = FaceScore(dist, cos, ratio, "annotation" if points is not None else "predicted")
            self._records.append({"box": box, "bucket": labels[k], **asdict(score)})
            out.append(score)
        return out

    def update(
        self, originals: Tensor, reconstructions: Tensor, annotations: Sequence[Any] | None = None
    ) -> None:
        check_pair(originals, reconstructions, who="face")
        if annotations is None or len(annotations) != originals.shape[0]:
            raise ValueError("face: annotations must give one list of face boxes per image")
        for i, faces in enumerate(annotations):
            self.add_image(originals[i], reconstructions[i], faces)

    def records(self, start: int = 0) -> list[dict[str, Any]]:
        """One dict per scored face, in order: box, bucket, distance, cosine, size_ratio, landmarks."""
        return self._records[start:]  # a new list: from ``start`` on (records seen so far)

    def empty_buckets(self) -> list[str]:
        return [lab for lab, c in zip(self.buckets.labels(), self.counts, strict=True) if c == 0]

    def compute(self) -> dict[str, float]:
        cols = ["face_dist", "face_same", "face_cos"]
        nonempty = self.counts > 0
        means = np.full((len(self.buckets), len(cols)), np.nan)
        means[nonempty] = self.sums[nonempty] / self.counts[nonempty, None]
        out: dict[str, float] = {}
        for j, col in enumerate(cols):
            out[col] = float(means[nonempty, j].mean()) if nonempty.any() else math.nan
        for k, lab in enumerate(self.buckets.labels()):
            for j, col in enumerate(cols):
                out[f"{col}{lab}"] = float(means[k, j])
            out[f"count{lab}"] = float(self.counts[k])
        out["n_faces"] = float(self.counts.sum())
        out["n_outside"] = float(self.n_outside)
        out["n_empty_buckets"] = float((~nonempty).sum())
        out["n_annotated_landmarks"] = float(sum(r["landmarks"] == "annotation" for r in self._records))
        return out


@METRICS.register("face", available=face_available)
def _face_metric(
    *,
    edges: tuple[float, ...] = DEFAULT_FACE_EDGES,
    threshold: float = SAME_PERSON_THRESHOLD,
    use_landmarks: bool = True,
) -> FaceAccumulator:
    """dlib 128-d face-descriptor distance at ground-truth boxes (annotated or predicted landmarks), by face size."""
    return FaceAccumulator(edges=edges, threshold=threshold, use_landmarks=use_landmarks)
