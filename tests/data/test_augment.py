"""Views for pre-tokenization: the plain fit, its mirror, LlamaGen's ten crops."""

from __future__ import annotations

import numpy as np
import pytest

from vistok.data.augment import AUGMENTATIONS
from vistok.data.transforms import apply_fit, plan_fit


def test_none_and_flip_are_the_protocol_fit(photo: np.ndarray) -> None:
    fit = plan_fit(*photo.shape[:2], size=64)
    plain = AUGMENTATIONS["none"].make(photo, 64, "reflect", 1.1)
    flip = AUGMENTATIONS["flip"].make(photo, 64, "reflect", 1.1)
    assert plain.fit == fit == flip.fit
    assert np.array_equal(plain.images[0], apply_fit(photo, fit))
    assert np.array_equal(flip.images[0], plain.images[0])
    assert np.array_equal(flip.images[1], plain.images[0][:, ::-1])


def test_ten_crop_corners_centre_and_mirror(photo: np.ndarray) -> None:
    views = AUGMENTATIONS["ten-crop"].make(photo, 64, "reflect", 1.1)
    assert views.fit.size_h == views.fit.size_w == 70  # round(64 * 1.1)
    big = apply_fit(photo, views.fit)
    assert len(views.images) == 10 and all(v.shape == (64, 64, 3) for v in views.images)
    tl, tr, bl, br, centre = views.images[:5]
    assert np.array_equal(tl, big[:64, :64]) and np.array_equal(br, big[6:, 6:])
    assert np.array_equal(tr, big[:64, 6:]) and np.array_equal(bl, big[6:, :64])
    assert np.array_equal(centre, big[3:67, 3:67])
    # the second five are the crops of the mirrored image: its top-left is the mirrored top-right
    m_tl, m_tr, m_bl, m_br, m_centre = views.images[5:]
    assert np.array_equal(m_tl, tr[:, ::-1]) and np.array_equal(m_br, bl[:, ::-1])
    assert np.array_equal(m_tr, tl[:, ::-1]) and np.array_equal(m_bl, br[:, ::-1])
    assert np.array_equal(m_centre, centre[:, ::-1])


def test_ten_crop_refuses_a_crop_range_below_one(photo: np.ndarray) -> None:
    with pytest.raises(ValueError, match="crop_range"):
        AUGMENTATIONS["ten-crop"].make(photo, 64, "reflect", 0.9)
