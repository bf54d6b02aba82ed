"""The metric maths of ``vistok bench``: pure functions plus accumulators registered in
:data:`vistok.registry.METRICS`.

Importing this package registers every family: ``psnr``, ``ssim``, ``ms_ssim`` (pixel),
``fd`` (Fréchet distance, FD-MobileNetV2 by default), ``dfd`` (DFD-MobileNetV2), ``text``
(OCR word accuracy, needs rapidocr) and ``face`` (dlib identity distance, needs dlib).
The optional dependencies are imported only when a metric first runs; each registry
entry's ``available()`` says why it cannot run here.
"""

from vistok.bench.metrics import face, frechet, pixel, text
from vistok.bench.metrics.base import Buckets, MeanAccumulator, Metric
from vistok.bench.metrics.face import FaceAccumulator, face_available, face_descriptor_distance
from vistok.bench.metrics.frechet import (
    DFDMetric,
    FeatureExtractor,
    FrechetAccumulator,
    deep_feature_distance,
    frechet_distance,
)
from vistok.bench.metrics.pixel import MSSSIMMetric, PSNRMetric, SSIMMetric, ms_ssim, psnr, ssim
from vistok.bench.metrics.text import TextAccumulator, levenshtein, score_words, text_available

__all__ = [
    "Buckets",
    "DFDMetric",
    "FaceAccumulator",
    "FeatureExtractor",
    "FrechetAccumulator",
    "MSSSIMMetric",
    "MeanAccumulator",
    "Metric",
    "PSNRMetric",
    "SSIMMetric",
    "TextAccumulator",
    "deep_feature_distance",
    "face",
    "face_available",
    "face_descriptor_distance",
    "frechet",
    "frechet_distance",
    "levenshtein",
    "ms_ssim",
    "pixel",
    "psnr",
    "score_words",
    "ssim",
    "text",
    "text_available",
]
