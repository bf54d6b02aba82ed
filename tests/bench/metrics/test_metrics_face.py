"""Face identity distance with dlib on skimage's astronaut (Eileen Collins)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from vistok.bench.metrics import face as fc
from vistok.registry import METRICS

pytestmark = pytest.mark.skipif(fc.face_available() is not None, reason=str(fc.face_available()))


@pytest.fixture(scope="module")
def astronaut_face(photos_uint8) -> tuple[np.ndarray, list[int]]:
    a = photos_uint8["astronaut"]
    found = fc.detect_faces(a)
    assert found, "dlib found no face on the astronaut photo"
    return a, found[0][0]


def test_detector_finds_the_face(astronaut_face) -> None:
    _, (x0, y0, x1, y1) = astronaut_face
    # Her face is around x 180-260, y 80-165 in the 512x512 photo.
    assert x0 < 220 < x1 and y0 < 120 < y1
    assert 60 <= y1 - y0 <= 130


def test_distance_zero_small_large(astronaut_face, im) -> None:
    a, box = astronaut_face
    d = {
        "same": fc.face_descriptor_distance(a, a, box),
        "jpeg90": fc.face_descriptor_distance(a, im.jpeg(a, 90), box),
        "jpeg10": fc.face_descriptor_distance(a, im.jpeg(a, 10), box),
        "blur6": fc.face_descriptor_distance(a, im.blur(a, 6.0), box),
    }
    assert d["same"] == 0.0
    assert d["jpeg90"] < 0.15, d
    assert d["jpeg90"] < d["jpeg10"] < d["blur6"], d
    assert d["blur6"] > 0.4, d
    # Landmarks come from the original: a reconstruction with no face at all still gets a distance.
    gray = np.full_like(a, 128)
    assert fc.face_descriptor_distance(a, gray, box) > fc.SAME_PERSON_THRESHOLD
    # Tensors [3, H, W] in [0, 1] are accepted and rounded to 8 bits.
    t = torch.from_numpy(a).permute(2, 0, 1).float() / 255
    assert fc.face_descriptor_distance(t, a, box) == 0.0


def test_accumulator_buckets(astronaut_face, im) -> None:
    a, box = astronaut_face
    # The same face 4x smaller on a 1024 canvas: height ratio ~0.02 instead of ~0.18.
    small = np.asarray(Image.fromarray(a).resize((128, 128), Image.Resampling.BOX))
    canvas = np.full((1024, 1024, 3), 200, np.uint8)
    canvas[300 : 300 + small.shape[0], 400 : 400 + small.shape[1]] = small
    sbox = [400 + box[0] / 4, 300 + box[1] / 4, 400 + box[2] / 4, 300 + box[3] / 4]

    acc = fc.FaceAccumulator()
    s_big = acc.add_image(a, im.jpeg(a, 90), [box])
    s_small = acc.add_image(canvas, im.blur(canvas, 3.0), [{"box": sbox}, [0, 0, 1024, 1024]])
    assert (
        len(s_big) == 1 and len(s_small) == 2
    )  # the whole-canvas box (ratio 1.0) is in the closed last bucket
    out = acc.compute()
    assert out["count[0,0.05)"] == 1 and out["count[0.1,0.2)"] == 1 and out["count[0.2,1]"] == 1
    assert out["count[0.05,0.1)"] == 0 and math.isnan(out["face_dist[0.05,0.1)"])
    assert acc.empty_buckets() == ["[0.05,0.1)"]
    per_bucket = [out[f"face_dist{lab}"] for lab in acc.buckets.labels() if out[f"count{lab}"] > 0]
    assert out["face_dist"] == pytest.approx(np.mean(per_bucket))
    assert out["face_dist[0.1,0.2)"] == pytest.approx(s_big[0].distance)
    assert out["face_same[0.1,0.2)"] == 1.0  # mild JPEG keeps the identity
    assert 0.99 < out["face_cos[0.1,0.2)"] <= 1.0
    assert out["n_faces"] == 3 and out["n_empty_buckets"] == 1


def test_annotated_landmarks_are_used(astronaut_face, im) -> None:
    a, box = astronaut_face
    b = im.jpeg(a, 20)
    shape = fc.get_face_models().landmarks(a, box)
    points = [[shape.part(i).x, shape.part(i).y] for i in range(5)]
    predicted = fc.face_descriptor_distance(a, b, box)
    # The predictor's own points given as annotation: the same alignment, the same distance.
    assert fc.face_descriptor_distance(a, b, box, landmarks=points) == pytest.approx(predicted, abs=1e-12)
    # Landmarks shifted by 6 px change the alignment, hence the descriptors.
    moved = [[x + 6, y] for x, y in points]
    assert fc.face_descriptor_distance(a, b, box, landmarks=moved) != pytest.approx(predicted, abs=1e-6)

    acc = METRICS.create("face")
    acc.add_image(a, b, [{"box": box, "landmarks5": moved}])
    off = METRICS.create("face:use_landmarks=false")
    off.add_image(a, b, [{"box": box, "landmarks5": moved}])
    assert acc.compute()["n_annotated_landmarks"] == 1 and off.compute()["n_annotated_landmarks"] == 0
    assert off.compute()["face_dist"] == pytest.approx(predicted, abs=1e-12)
    rec = acc.records()[0]
    assert rec["landmarks"] == "annotation" and rec["bucket"] == "[0.1,0.2)"
    with pytest.raises(ValueError, match="5"):
        fc.face_descriptor_distance(a, b, box, landmarks=points[:4])


def test_registered_accumulator_on_tensors(astronaut_face, im) -> None:
    a, box = astronaut_face
    x = im.to_tensor(a)
    y = im.to_tensor(im.jpeg(a, 30))
    m = METRICS.create("face")
    assert not m.higher_is_better and m.primary == "face_dist"
    m.update(torch.cat([x, x]), torch.cat([x, y]), annotations=[[box], [box]])
    out = m.compute()
    assert out["n_faces"] == 2
    expected = (0.0 + fc.face_descriptor_distance(a, im.jpeg(a, 30), box)) / 2
    assert out["face_dist"] == pytest.approx(expected, abs=1e-9)  # one bucket: its mean
    with pytest.raises(ValueError, match="one list of face boxes per image"):
        m.update(x, y, annotations=[])


def test_descriptors_are_memoized_with_identical_values(astronaut_face, im) -> None:
    a, box = astronaut_face
    models = fc.FaceModels()
    shape = models.landmarks(a, box)
    first = models.descriptor(a, shape)
    calls = []
    recog = models._get()[2]

    class Counting:
        def compute_face_descriptor(self, *args: object) -> object:
            calls.append(1)
            return recog.compute_face_descriptor(*args)

    models._models = (*models._get()[:2], Counting())
    again = models.descriptor(a.copy(), shape)  # same content, another array: from the memo
    assert calls == [] and np.array_equal(again, first)
    again[0] = 99.0  # a caller's copy: the memo is not changed through it
    assert models.descriptor(a, shape)[0] == first[0]
    other = models.descriptor(im.jpeg(a, 30), shape)  # other pixels: computed
    assert calls == [1] and not np.array_equal(other, first)
    moved = models.landmarks(a, [box[0] + 4, box[1], box[2] + 4, box[3]])
    models.descriptor(a, moved)  # other landmarks: computed
    assert calls == [1, 1]
