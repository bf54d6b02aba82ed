"""Sample sets: deterministic bytes, valid annotations, provenance recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vistok.data.samples import SAMPLE_SETS, VERSION, materialize, sample_set


@pytest.mark.parametrize("name", list(SAMPLE_SETS))
def test_same_seed_same_bytes(name: str, tmp_path: Path) -> None:
    a = sample_set(name, cache_dir=tmp_path / "a")
    b = sample_set(name, cache_dir=tmp_path / "b")
    assert a.sha256 == b.sha256 and a.files == b.files
    assert a.root == tmp_path / "a" / VERSION / name
    assert a.provenance and all(a.provenance)
    assert not [p for p in a.root.parent.iterdir() if p.name.startswith(".")]  # no temp folders left


def test_photos_are_the_bundled_colour_photos() -> None:
    s = sample_set("photos")
    assert len(s.files) == 10 and "astronaut.png" in s.files and "china.png" in s.files
    for p in s.paths:
        with Image.open(p) as im:
            assert im.mode == "RGB"


def test_text_annotations_match_rendered_ink() -> None:
    s = sample_set("text")
    ann = s.annotations
    assert ann is not None and ann["format"] == "vistok.text/1"
    heights = []
    for entry in ann["images"]:
        img = np.asarray(Image.open(s.root / entry["file"]).convert("L"), dtype=float)
        assert img.shape == (entry["height"], entry["width"])
        assert len(entry["words"]) >= 8
        for w in entry["words"]:
            x0, y0, x1, y1 = w["box"]
            assert 0 <= x0 < x1 <= entry["width"] and 0 <= y0 < y1 <= entry["height"]
            assert w["height_ratio"] == pytest.approx((y1 - y0) / max(img.shape), abs=1e-6)
            heights.append(y1 - y0)
            if entry["background"] == "plain":  # ink present inside the box, background around it
                assert img[y0:y1, x0:x1].std() > 5
    assert min(heights) <= 8 and max(heights) >= 40


def test_face_annotations_have_landmarks_inside_box() -> None:
    s = sample_set("faces")
    ann = s.annotations
    assert ann is not None
    sizes = []
    for entry in ann["images"]:
        for f in entry["faces"]:
            x0, y0, x1, y1 = f["box"]
            sizes.append(y1 - y0)
            for x, y in f["landmarks5"]:
                assert x0 - 1 <= x <= x1 + 1 and y0 - 1 <= y <= y1 + 1
    assert min(sizes) <= 16 and max(sizes) >= 128 and len(sizes) >= 20


def test_materialize_copies_sets(tmp_path: Path) -> None:
    sets = materialize(tmp_path, ["text"])
    assert (tmp_path / "text" / "annotations.json").is_file()
    assert len(list((tmp_path / "text").glob("*.png"))) == len(sets[0].files)


def test_unknown_set_is_clear() -> None:
    with pytest.raises(ValueError, match="unknown sample set 'cats'; valid: photos, text, faces"):
        sample_set("cats")
