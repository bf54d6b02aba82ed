from __future__ import annotations

import numpy as np
import pytest

from vistok.data.transforms import Fit, apply_fit, plan_fit, undo_fit


def test_protocol_fit_pads_to_square_then_resizes(photo: np.ndarray) -> None:
    fit = plan_fit(300, 451, size=256, stride=16)
    assert fit.pad == (75, 76, 0, 0) and (fit.size_h, fit.size_w) == (256, 256)
    a = apply_fit(photo, fit)
    assert a.shape == (256, 256, 3)
    back = undo_fit(a, fit)
    assert back.shape == photo.shape
    # a down/up resize by 1.76x of a photo stays close to the original
    assert np.abs(back.astype(float) - photo).mean() < 8


def test_stride_fit_is_exact_when_nothing_resizes(photo: np.ndarray) -> None:
    fit = plan_fit(300, 451, stride=8)
    assert (fit.size_h, fit.size_w) == (304, 456) and fit.pad == (0, 4, 0, 5)
    a = apply_fit(photo, fit)
    assert np.array_equal(a[:300, :451], photo)
    assert np.array_equal(undo_fit(a, fit), photo)
    assert Fit.from_dict(fit.to_dict()) == fit


def test_constant_padding_and_tiny_images() -> None:
    tiny = np.full((2, 5, 3), 7, np.uint8)
    fit = plan_fit(2, 5, size=16, pad_mode="constant")
    a = apply_fit(tiny, fit)
    assert a.shape == (16, 16, 3)
    fit_r = plan_fit(2, 5, size=16)  # reflect cannot pad 3 rows from 2: falls back to mirroring
    assert apply_fit(tiny, fit_r).shape == (16, 16, 3)
    assert undo_fit(a, fit).shape == (2, 5, 3)


def test_size_must_match_stride() -> None:
    with pytest.raises(ValueError, match="not a multiple"):
        plan_fit(10, 10, size=100, stride=16)


def test_fit_to_any_tokenizer_and_back(photo: np.ndarray) -> None:
    """``fit_to``/``unfit`` on float tensors give the CLI's geometry, for stride and fixed-size models."""
    import torch

    import vistok
    from vistok.data.transforms import fit_to, unfit
    from vistok.models.codecs import from_uint8
    from vistok.pipeline import decode_array, encode_array

    images = from_uint8([photo[:45, :61], photo[100:145, 200:261]])  # [2, 3, 45, 61], not multiples of 8
    for spec, want in (("conv2d-tiny", (48, 64)), ("latent1d-tiny", (32, 32))):
        tok = vistok.create(spec).eval()
        with pytest.raises(ValueError, match=r"vistok\.data\.transforms\.fit_to"):
            tok.encode(images)  # the error names the call that fixes it
        x, fit = fit_to(tok, images)
        assert tuple(x.shape) == (2, 3, *want) and x.dtype == torch.float32
        with torch.no_grad():
            recon = unfit(tok.decode(tok.encode(x)), fit)
        assert recon.shape == images.shape and recon.min() >= 0 and recon.max() <= 1
        # the same pixels as the CLI's uint8 pipeline on the first image
        cli = decode_array(tok, encode_array(tok, photo[:45, :61]))
        assert torch.equal(recon[0], from_uint8(cli[None])[0])


def test_fit_to_leaves_fitting_images_alone() -> None:
    import torch

    import vistok
    from vistok.data.transforms import fit_to, unfit

    x = torch.rand(1, 3, 16, 24)  # not on the 8-bit grid: no rounding when nothing changes
    tok = vistok.create("conv2d-tiny")
    y, fit = fit_to(tok, x)
    assert y is x and unfit(y, fit) is y
