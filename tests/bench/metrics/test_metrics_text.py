"""OCR word accuracy: Levenshtein, cropping, bucketing, and RapidOCR on rendered words."""

from __future__ import annotations

import functools
import math
import random

import matplotlib
import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from vistok.bench.metrics import text as tx
from vistok.registry import METRICS

WORDS = [
    "Tokenizer",
    "benchmark",
    "ZEBRA",
    "Python3",
    "photons",
    "ratio",
    "Bucket",
    "Quantize",
    "mountain",
    "Level42",
]


def render_words(words: list[str], *, size: int = 1024, font_px: int = 40) -> tuple[np.ndarray, list[dict]]:
    """Black DejaVu Sans words on white, one per line; boxes are the ink boxes (end exclusive)."""
    font = ImageFont.truetype(matplotlib.get_data_path() + "/fonts/ttf/DejaVuSans.ttf", font_px)
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    annotations = []
    for i, word in enumerate(words):
        x, y = 40 + 300 * (i % 3), 40 + 2 * font_px * (i // 3)
        draw.text((x, y), word, fill="black", font=font)
        x0, y0, x1, y1 = draw.textbbox((x, y), word, font=font)
        annotations.append({"text": word, "box": [x0, y0, x1, y1]})
    return np.asarray(img).copy(), annotations


# ---------------------------------------------------------------------------------------
# Pure maths (no OCR)


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [
        ("kitten", "sitting", 3),
        ("flaw", "lawn", 2),
        ("intention", "execution", 5),
        ("Saturday", "Sunday", 3),
        ("", "abc", 3),
        ("abc", "", 3),
        ("", "", 0),
        ("same", "same", 0),
        ("Word", "word", 1),  # case-sensitive
        ("ab", "ba", 2),  # no transpositions
    ],
)
def test_levenshtein_known_pairs(a: str, b: str, d: int) -> None:
    assert tx.levenshtein(a, b) == d
    assert tx.levenshtein(b, a) == d


def test_levenshtein_against_recursive_definition() -> None:
    @functools.cache
    def ref(a: str, b: str) -> int:
        if not a or not b:
            return len(a) + len(b)
        return min(ref(a[1:], b) + 1, ref(a, b[1:]) + 1, ref(a[1:], b[1:]) + (a[0] != b[0]))

    rng = random.Random(0)
    for _ in range(200):
        a = "".join(rng.choice("abcA1") for _ in range(rng.randint(0, 8)))
        b = "".join(rng.choice("abcA1") for _ in range(rng.randint(0, 8)))
        assert tx.levenshtein(a, b) == ref(a, b), (a, b)


def test_normalized_edit_similarity() -> None:
    assert tx.normalized_edit_similarity("abd", "abc") == pytest.approx(2 / 3)
    assert tx.normalized_edit_similarity("", "") == 1.0
    assert tx.normalized_edit_similarity("", "abcd") == 0.0
    assert tx.normalized_edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)


def test_crop_box_margin_and_clipping() -> None:
    img = np.zeros((100, 200, 3), np.uint8)
    assert tx.crop_box(img, [50, 40, 150, 60], margin=0.1).shape == (24, 104, 3)  # 2 px around a 20 px box
    assert tx.crop_box(img, [0, 0, 30, 20], margin=0.5).shape == (30, 40, 3)  # clipped at the border
    assert tx.crop_box(img, [300, 300, 310, 310]).shape[:2] == (0, 0)


class ScriptedOCR(tx.WordOCR):
    """Returns predictions from a queue (one list per recognize call); records crop sizes."""

    def __init__(self, script: list[list[str]]) -> None:
        super().__init__()
        self.script = list(script)
        self.crops: list[tuple[int, ...]] = []

    def recognize(self, crops):  # type: ignore[override]
        self.crops += [c.shape for c in crops]
        return self.script.pop(0)


def test_accumulator_buckets_and_unweighted_mean() -> None:
    img = np.full((500, 1000, 3), 255, np.uint8)  # max side 1000
    words = [
        {"text": "aa", "box": [0, 0, 50, 25]},  # 0.025 -> [0.02,0.03)
        {"text": "bb", "box": [0, 100, 50, 125]},  # 0.025 -> [0.02,0.03)
        {"text": "cc", "box": [0, 200, 50, 250]},  # 0.05 -> [0.04,1]
        {"text": "dd", "box": [0, 300, 50, 310]},  # 0.01 -> outside every bucket, not scored
    ]
    ocr = ScriptedOCR([["aa", "bx", "CC"]])
    acc = tx.TextAccumulator(ocr=ocr)
    scores = acc.add_image(img, words)
    assert [s.pred for s in scores] == ["aa", "bx", "CC"]
    assert len(ocr.crops) == 3
    out = acc.compute()
    assert out["count[0.02,0.03)"] == 2 and out["count[0.03,0.04)"] == 0 and out["count[0.04,1]"] == 1
    assert out["t_acc[0.02,0.03)"] == 0.5 and out["t_acc[0.04,1]"] == 0.0
    assert out["t_ned[0.02,0.03)"] == pytest.approx(0.75) and out["t_ned[0.04,1]"] == pytest.approx(0.0)
    assert math.isnan(out["t_acc[0.03,0.04)"])
    # Unweighted mean over the two non-empty buckets; the empty one is excluded and listed.
    assert out["t_acc"] == pytest.approx(0.25) and out["t_ned"] == pytest.approx(0.375)
    assert out["n_words"] == 3 and out["n_outside"] == 1 and out["n_empty_buckets"] == 1
    assert acc.empty_buckets() == ["[0.03,0.04)"]
    recs = acc.records()
    assert [(r["text"], r["pred"], r["bucket"]) for r in recs] == [
        ("aa", "aa", "[0.02,0.03)"),
        ("bb", "bx", "[0.02,0.03)"),
        ("cc", "CC", "[0.04,1]"),
    ]
    assert recs[2]["box"] == [0, 200, 50, 250] and recs[2]["height_ratio"] == 0.05
    acc.reset()
    assert math.isnan(acc.compute()["t_acc"])


def test_registry_entry_and_availability() -> None:
    m = METRICS.create("text:edges=[0.0,0.5,1.0],margin=0.2")
    assert m.buckets.labels() == ["[0,0.5)", "[0.5,1]"] and m.margin == 0.2
    assert m.higher_is_better and m.primary == "t_acc"
    assert tx.text_available() is None or "rapidocr" in tx.text_available()


# ---------------------------------------------------------------------------------------
# Real OCR

needs_ocr = pytest.mark.skipif(tx.text_available() is not None, reason=str(tx.text_available()))


@needs_ocr
def test_ocr_reads_clean_words_and_fails_on_degraded(im) -> None:
    img, words = render_words(WORDS)
    heights = [w["box"][3] - w["box"][1] for w in words]
    assert 28 <= np.mean(heights) <= 40
    clean = tx.score_words(img, words)
    acc_clean = np.mean([s.exact for s in clean])
    assert acc_clean >= 0.8, [(s.text, s.pred) for s in clean]
    assert np.mean([s.ned for s in clean]) >= 0.9
    degraded = tx.score_words(im.blur(im.down_up(img, 8), 1.0), words)
    acc_bad = np.mean([s.exact for s in degraded])
    # PP-OCRv6 still reads some 5 px words (40% here): require a clear drop, not zero.
    assert acc_bad <= acc_clean - 0.3, [(s.text, s.pred) for s in degraded]
    assert np.mean([s.ned for s in degraded]) <= np.mean([s.ned for s in clean]) - 0.1


@needs_ocr
def test_text_accumulator_on_tensors(im) -> None:
    img, words = render_words(WORDS[:6])  # 1024 px image, ~32 px words: bucket [0.03,0.04) mostly
    x = im.to_tensor(img)
    y = im.to_tensor(im.jpeg(img, 5))
    acc = METRICS.create("text:score_originals=true")
    acc.update(torch.cat([x, x]), torch.cat([x, y]), annotations=[words, words])
    out = acc.compute()
    assert out["n_words"] == 12
    assert out["t_acc_original"] >= 0.8
    assert 0 <= out["t_acc"] <= out["t_acc_original"]
    assert out["t_ned"] >= out["t_acc"] - 1e-12
    with pytest.raises(ValueError, match="one list of words per image"):
        acc.update(x, x, annotations=None)
