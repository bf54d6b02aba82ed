"""Registry entries of the learned families: construction, shapes, rates, variable length, resolution."""

from __future__ import annotations

import pytest
import torch

import vistok
from vistok.models._base import LearnedTokenizer, ModelOutput
from vistok.models.latent1d import sample_lengths
from vistok.registry import TOKENIZERS, SpecError, parse_spec

pytestmark = pytest.mark.usefixtures("one_thread")

FAMILIES = ("conv2d", "vit2d", "latent1d")
TINY = ["conv2d-tiny", "vit2d-tiny", "latent1d-tiny"]
vistok.list()  # import the model modules
ALL = [e.name for e in TOKENIZERS.entries() if (e.base or e.name) in FAMILIES]
# construct for real only below this many parameters (the rest on the meta device)
SMALL = {"conv2d-tiny", "vit2d-tiny", "latent1d-tiny", "conv2d-f4", "conv2d-f8", "conv2d-f16", "conv2d"}


def test_every_family_has_variants():
    assert {
        "conv2d-f8",
        "conv2d-f16",
        "vit2d-s-p16",
        "latent1d-s-128",
        "latent1d-b-64",
        "latent1d-l-32",
        *TINY,
    } <= set(ALL)


@pytest.mark.parametrize("name", ALL)
def test_variant_constructs(name):
    if name in SMALL:
        m = vistok.create(name)
    else:
        with torch.device("meta"):
            m = vistok.create(name)
    assert isinstance(m, LearnedTokenizer)
    assert m.kind in ("discrete", "continuous")
    assert m.max_tokens and m.max_tokens > 0 and m.stride > 0
    assert (m.vocab_size is None) == (m.kind == "continuous")
    n = sum(p.numel() for p in m.parameters())
    assert 1e4 < n < 1e9, n


@pytest.mark.parametrize(
    ("name", "lo", "hi"),
    [
        ("latent1d-s-128", 40e6, 70e6),  # TiTok-S: 512 wide, 8+8 layers
        ("latent1d-b-64", 150e6, 200e6),  # TiTok-B: 768 wide, 12+12 layers
        ("latent1d-l-32", 550e6, 650e6),  # TiTok-L: 1024 wide, 24+24 layers
        ("conv2d-f8", 1.5e6, 5e6),
    ],
)
def test_parameter_counts(name, lo, hi):
    with torch.device("meta"):
        m = vistok.create(name)
    n = sum(p.numel() for p in m.parameters())
    assert lo < n < hi, f"{name}: {n / 1e6:.1f}M parameters"


def test_titok_sizes_follow_the_paper():
    with torch.device("meta"):
        s, b, ll = (vistok.create(n) for n in ("latent1d-s-128", "latent1d-b-64", "latent1d-l-32"))
    for m, w, d, h, n in ((s, 512, 8, 8, 128), (b, 768, 12, 12, 64), (ll, 1024, 24, 16, 32)):
        assert (m.config["width"], m.config["depth"], m.config["num_heads"], m.max_tokens) == (w, d, h, n)
        assert m.patch_size == 16 and m.input_size == 256 and m.vocab_size == 4096


@pytest.mark.parametrize("name", TINY)
def test_tiny_encode_decode_shapes_and_bits(name):
    torch.manual_seed(0)
    m = vistok.create(name).eval()
    s = m.image_size
    x = torch.rand(3, 3, s, s)
    tok = m.encode(x)
    n = m.max_tokens
    bits_per_token = m.quantizer.bits_per_index
    assert tok.ids is not None and tok.ids.dtype == torch.long
    assert tok.ids.shape[0] == 3 and tok.ids[0].numel() == n
    assert int(tok.ids.min()) >= 0 and int(tok.ids.max()) < m.vocab_size
    torch.testing.assert_close(tok.bits, torch.full((3,), n * bits_per_token, dtype=torch.float64))
    y = m.decode(tok)
    assert y.shape == x.shape and y.dtype == torch.float32
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0
    torch.testing.assert_close(m.reconstruct(x), y)
    # embed: the code vectors the decoder reads
    assert m.embed(tok.ids).shape == (*tok.ids.shape, m.latent_dim)


@pytest.mark.parametrize("name", TINY)
def test_forward_output(name):
    m = vistok.create(name).train()
    x = torch.rand(2, 3, m.image_size, m.image_size)
    out = m(x)
    assert isinstance(out, ModelOutput)
    assert out.reconstruction.shape == x.shape and out.loss.ndim == 0
    assert {"encoder", "decoder"} <= set(out.features)
    assert out.indices is not None
    (out.reconstruction.square().mean() + out.loss).backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.encoder.parameters())


def test_continuous_rate_is_float16_latents():
    m = vistok.create("conv2d-tiny:quantizer=gaussian").eval()
    assert m.kind == "continuous" and m.vocab_size is None
    x = torch.rand(2, 3, 32, 32)
    tok = m.encode(x)
    assert tok.ids is None and tok.latents is not None and tok.latents.dtype == torch.float16
    assert tok.latents.shape == (2, m.latent_dim, 4, 4)
    torch.testing.assert_close(tok.bits, torch.full((2,), 16.0 * m.latent_dim * 16, dtype=torch.float64))
    assert m.decode(tok).shape == x.shape
    with pytest.raises(TypeError, match="no codebook"):
        m.embed(torch.zeros(1, dtype=torch.long))


def test_latent1d_variable_length_every_k():
    torch.manual_seed(0)
    m = vistok.create("latent1d-tiny").eval()
    assert m.variable_length
    x = torch.rand(2, 3, 32, 32)
    full = m.encode(x)
    assert full.lengths.tolist() == [m.max_tokens] * 2
    per_token = m.quantizer.bits_per_index
    outs = []
    for k in range(1, m.max_tokens + 1):
        tok = m.encode(x, num_tokens=k)
        assert tok.ids.shape == (2, k) and tok.lengths.tolist() == [k, k]
        torch.testing.assert_close(tok.ids, full.ids[:, :k])
        torch.testing.assert_close(tok.bits, torch.full((2,), k * per_token, dtype=torch.float64))
        y = m.decode(tok)
        assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
        outs.append(y)
    assert not torch.equal(outs[0], outs[-1])
    # per-image lengths on a padded batch decode like the truncated ones
    padded = vistok.Tokens(bits=full.bits, ids=full.ids, lengths=torch.tensor([3, 5]))
    y = m.decode(padded)
    torch.testing.assert_close(y[0], outs[2][0])
    torch.testing.assert_close(y[1], outs[4][1])
    with pytest.raises(ValueError, match="num_tokens"):
        m.encode(x, num_tokens=m.max_tokens + 1)


def test_sample_lengths():
    g = torch.Generator().manual_seed(0)
    assert sample_lengths(4, 8, "none").tolist() == [8] * 4
    u = sample_lengths(1000, 8, "uniform", generator=g)
    assert int(u.min()) == 1 and int(u.max()) == 8
    p = sample_lengths(1000, 12, "pow2", generator=g)
    assert set(p.tolist()) == {1, 2, 4, 8, 12}
    half = sample_lengths(2000, 8, "uniform", prob=0.5, generator=g)
    assert 0.5 < (half == 8).float().mean() < 0.65  # 50% kept + 1/8 of the drawn half


def test_nested_training_draws_lengths():
    torch.manual_seed(0)
    m = vistok.create("latent1d-tiny").train()
    out = m(torch.rand(16, 3, 32, 32))
    assert out.lengths is not None and out.lengths.shape == (16,)
    assert int(out.lengths.min()) >= 1 and int(out.lengths.max()) <= m.max_tokens
    assert len(set(out.lengths.tolist())) > 1
    assert m(torch.rand(2, 3, 32, 32), num_tokens=3).lengths.tolist() == [3, 3]
    assert m.eval()(torch.rand(2, 3, 32, 32)).lengths.tolist() == [8, 8]


@pytest.mark.parametrize("name", ["conv2d-tiny", "vit2d-tiny"])
def test_2d_families_take_other_resolutions(name):
    m = vistok.create(name).eval()
    assert m.input_size is None
    s = m.stride
    x = torch.rand(1, 3, 6 * s, 10 * s)  # neither square nor the native size
    tok = m.encode(x)
    assert tok.ids.shape == (1, 6, 10)
    torch.testing.assert_close(tok.bits, torch.tensor([60 * m.quantizer.bits_per_index], dtype=torch.float64))
    assert m.decode(tok).shape == x.shape
    with pytest.raises(ValueError, match="multiples"):
        m.encode(torch.rand(1, 3, 6 * s + 1, 6 * s))


def test_vit2d_resampled_pos_emb_is_used():
    m = vistok.create("vit2d-tiny").eval()
    big = m.enc_pos(16, 16)  # native grid is 8 x 8
    assert big.shape == (256, m.config["width"])
    # bicubic resampling of a smooth table keeps the corners close to the native corners
    assert torch.allclose(big[0], m.enc_pos.table[0], atol=0.01)


def test_latent1d_is_fixed_size():
    m = vistok.create("latent1d-tiny")
    assert m.input_size == 32
    with pytest.raises(ValueError, match="32x32"):
        m.encode(torch.rand(1, 3, 64, 64))


def test_fixed_length_families_reject_num_tokens():
    m = vistok.create("conv2d-tiny")
    with pytest.raises(ValueError, match="fixed-length"):
        m.encode(torch.rand(1, 3, 32, 32), num_tokens=3)


# ---- specs ---------------------------------------------------------------------------------
def test_size_overrides_and_simple_quantizer_spec():
    m = vistok.create("latent1d-tiny:tokens=4,quantizer=fsq")
    assert m.max_tokens == 4 and m.config["quantizer"] == "fsq"
    assert m.spec == "latent1d-tiny:quantizer=fsq,tokens=4"


def test_bracketed_nested_quantizer_spec_round_trips():
    spec = "latent1d-tiny:tokens=4,quantizer=[vq:codebook_size=64,commitment_weight=0.5]"
    _, raw = parse_spec(spec)
    assert raw == {"tokens": "4", "quantizer": "[vq:codebook_size=64,commitment_weight=0.5]"}
    m = vistok.create(spec)
    assert m.vocab_size == 64 and m.max_tokens == 4
    again = vistok.create(m.spec)
    assert again.vocab_size == 64 and again.config == m.config


def test_python_kwarg_quantizer_with_commas_gets_bracketed_in_spec():
    m = vistok.create("conv2d-tiny", quantizer="vq:codebook_size=32,commitment_weight=0.5")
    assert "quantizer=[vq:codebook_size=32,commitment_weight=0.5]" in m.spec
    assert vistok.create(m.spec).vocab_size == 32


def test_unbracketed_commas_are_a_clear_error():
    with pytest.raises(SpecError, match="no parameter 'commitment_weight'"):
        vistok.create("latent1d-tiny:quantizer=vq:codebook_size=64,commitment_weight=0.5")


def test_quantizer_dim_is_the_tokenizers_latent_dim():
    with pytest.raises(SpecError, match="latent_dim"):
        vistok.create("latent1d-tiny:quantizer=[vq:codebook_size=64,dim=3]")
    m = vistok.create("latent1d-tiny:latent_dim=7,quantizer=[vq:codebook_size=64]")
    assert m.embed(torch.zeros(1, 2, dtype=torch.long)).shape == (1, 2, 7)


def test_bad_family_options_are_spec_errors():
    with pytest.raises(SpecError, match="channel_mult"):
        vistok.create("conv2d-tiny:channel_mult=1-2-2")
    with pytest.raises(SpecError, match="patch_size"):
        vistok.create("vit2d-tiny:patch_size=32")


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize(
    ("quantizer", "k"),
    [
        ("[rvq:num_stages=3,codebook_size=16]", 3),
        ("[fvq:num_factors=2,codebook_size=32]", 2),
        ("bsq:bits=6", 1),
    ],
)
def test_multi_codebook_quantizers(name, quantizer, k):
    torch.manual_seed(0)
    m = vistok.create(f"{name}:quantizer={quantizer}").eval()
    x = torch.rand(2, 3, m.image_size, m.image_size)
    tok = m.encode(x)
    n = m.max_tokens
    per_token = m.quantizer.bits_per_token
    assert tok.ids[0].numel() == n * k and (k == 1 or tok.ids.shape[-1] == k)
    torch.testing.assert_close(tok.bits, torch.full((2,), n * per_token, dtype=torch.float64))
    assert m.decode(tok).shape == x.shape
    out = m.train()(x)
    assert out.indices.shape == (2, *tok.ids.shape[1:])


def test_multiscale_quantizer_is_rejected_clearly():
    with pytest.raises(SpecError, match="multi-scale"):
        vistok.create("conv2d-tiny:quantizer=msvq")
