"""Every named learned variant, at full size, encodes and decodes a real sample image."""

from __future__ import annotations

import gc

import pytest
import torch

import vistok
from vistok.data.images import load_image_uint8
from vistok.data.samples import sample_set
from vistok.data.transforms import apply_fit
from vistok.models.codecs import from_uint8
from vistok.pipeline import fit_for
from vistok.registry import TOKENIZERS

_LEARNED = [
    n
    for n in vistok.list()
    if TOKENIZERS.get(n).base in {"conv2d", "vit2d", "latent1d"} and n not in {"conv2d", "vit2d", "latent1d"}
]


@pytest.mark.slow
@pytest.mark.parametrize("name", _LEARNED)
def test_variant_round_trips_a_sample_photo(name: str) -> None:
    torch.manual_seed(0)
    tok = vistok.create(name).eval()
    img = load_image_uint8(sample_set("photos").root / "astronaut.png")
    fit = fit_for(tok, *img.shape[:2], size=256)
    x = from_uint8(apply_fit(img, fit)[None])
    with torch.no_grad():
        tokens = tok.encode(x)
        y = tok.decode(tokens)
    assert y.shape == x.shape and float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    t = tokens.ids if tokens.ids is not None else tokens.latents
    assert t is not None and t.shape[0] == 1
    if tokens.ids is not None:
        assert int(tokens.ids.min()) >= 0 and int(tokens.ids.max()) < tok.vocab_size
        # rate = index elements x log2(vocabulary) (K codebooks included in the ids' last dim)
        expected = tokens.ids[0].numel() * torch.log2(torch.tensor(float(tok.vocab_size))).item()
        assert float(tokens.bits[0]) == pytest.approx(expected, rel=1e-6)
    del tok
    gc.collect()
