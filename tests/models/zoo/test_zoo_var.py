"""VAR's multi-scale VQVAE (``var-vqvae``) against fixtures made by the official code.

``scripts/make_official_fixtures.py var`` built FoundationVision/VAR's ``VQVAE`` at three small
configurations with seeded random weights, saved each as the release does (a plain
``state_dict`` ``.pth``) and recorded the official ids, features and reconstructions; the full
configuration was compared once (``full_check.json``).
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo._cli import convert
from vistok.models.zoo.var import VARVQVAE
from vistok.registry import TOKENIZERS, SpecError
from vistok.utils.checkpoints import CheckpointError

FAMILY = "var"
CASES = ("scales10", "znorm-nonshared", "shared1")


def build(case: str) -> tuple[VARVQVAE, dict[str, torch.Tensor], dict]:
    d = fixture_case(FAMILY, case)
    meta = case_meta(d)
    tok = vistok.create(meta["spec"], weights=str(d / meta["weights"]))
    return tok, load_io(d), meta


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.parametrize("case", CASES)
def test_parity_codes_latents_reconstructions(case: str) -> None:
    tok, io, meta = build(case)
    assert tok.ignored == ["quantize.ema_vocab_hit_SV"]
    tokens = tok.encode(io["images"])
    assert tokens.ids.dtype == torch.long
    assert torch.equal(tokens.ids, io["ids"])  # codes: exactly the official ones
    with torch.no_grad():
        f = tok.quant_conv(tok.encoder(tok.to_model(io["images"])))
    torch.testing.assert_close(f, io["f"], atol=meta["atol_latent"], rtol=0)
    # decode rebuilds f_hat as VQVAE.idxBl_to_img does: the same float operations
    torch.testing.assert_close(tok.decode(tokens), io["recon"], atol=meta["atol_recon"], rtol=0)
    if "recon_direct" in io:  # img_to_reconstructed_img keeps the encoder loop's f_hat
        torch.testing.assert_close(tok.decode(tokens), io["recon_direct"], atol=1e-5, rtol=0)


@pytest.mark.parametrize("case", CASES)
def test_parity_scale_prefixes(case: str) -> None:
    """``num_tokens`` = the first ``s`` scales: the official partial sums of ``f_hat``."""
    tok, io, meta = build(case)
    for s, k in meta["prefixes"].items():
        assert tok.scale_boundaries[int(s) - 1] == k
        tokens = tok.encode(io["images"], num_tokens=k)
        assert tokens.ids.shape == (2, k)
        assert torch.equal(tokens.ids, io["ids"][:, :k])
        assert tokens.meta["patch_nums"] == meta["patch_nums"][: int(s)]
        torch.testing.assert_close(tok.decode(tokens), io[f"recon_s{s}"], atol=meta["atol_recon"], rtol=0)


def test_point_grammar_and_boundaries() -> None:
    d = fixture_case(FAMILY, "scales10")
    meta = case_meta(d)
    io = load_io(d)
    tok = vistok.create(meta["spec"] + "@30", weights=str(d / meta["weights"]))
    assert tok.default_num_tokens == 30 and tok.spec.endswith("@30")
    tokens = tok.encode(io["images"])
    assert torch.equal(tokens.ids, io["ids"][:, :30])
    assert tokens.bits.tolist() == [30 * math.log2(64)] * 2
    with pytest.raises(SpecError, match="whole scale"):
        vistok.create(meta["spec"] + "@31", weights=str(d / meta["weights"]))
    base = vistok.create(meta["spec"], weights=str(d / meta["weights"]))
    with pytest.raises(ValueError, match=r"one of \[1, 5, 14, 30, 55, 91, 155, 255, 424, 680\], got 100"):
        base.encode(io["images"], num_tokens=100)
    with pytest.raises(ValueError, match=r"1\.\.680"):
        base.encode(io["images"], num_tokens=681)
    full = base.encode(io["images"])
    bad = vistok.Tokens(bits=full.bits, ids=full.ids[:, :31])
    with pytest.raises(ValueError, match="whole scales"):
        base.decode(bad)


def test_decode_per_image_lengths() -> None:
    """A padded batch whose images hold different numbers of scales decodes each one right."""
    tok, io, meta = build("scales10")
    full = tok.encode(io["images"])
    mixed = vistok.Tokens(bits=full.bits, ids=full.ids, lengths=torch.tensor([680, 155]))
    out = tok.decode(mixed)
    torch.testing.assert_close(out[0], io["recon"][0], atol=meta["atol_recon"], rtol=0)
    torch.testing.assert_close(out[1], io["recon_s7"][1], atol=meta["atol_recon"], rtol=0)
    with pytest.raises(ValueError, match="lengths must be scale boundaries"):
        tok.decode(vistok.Tokens(bits=full.bits, ids=full.ids, lengths=torch.tensor([680, 100])))


def test_contract_shapes_ranges_bits() -> None:
    tok, io, _ = build("scales10")
    assert tok.kind == "discrete" and tok.variable_length
    assert (tok.vocab_size, tok.max_tokens, tok.input_size, tok.stride) == (64, 680, 32, 2)
    tokens = tok.encode(io["images"])
    assert tokens.ids.shape == (2, 680) and tokens.lengths.tolist() == [680, 680]
    assert tokens.bits.dtype == torch.float64 and tokens.bits.tolist() == [680 * 6.0] * 2
    assert tokens.meta["patch_nums"] == [1, 2, 3, 4, 5, 6, 8, 10, 13, 16]
    json.dumps(tokens.meta)
    out = tok.decode(tokens)
    assert out.shape == (2, 3, 32, 32) and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    with pytest.raises(ValueError, match="32x32"):
        tok.encode(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tok.encode(io["images"] * 2 - 1)
    # the codebook: embed and nearest other codes (l2, the quantizer's distance)
    ids = tokens.ids[:, :5]
    assert tok.has_neighbours
    assert tok.embed(ids).shape == (2, 5, 4)
    nb = tok.neighbours(ids, 3)
    assert nb.shape == (2, 5, 3)
    assert not (nb == ids[..., None]).any()
    cb = tok.quantize.embedding.weight
    d = torch.cdist(cb[ids.reshape(-1)], cb)
    d[torch.arange(d.shape[0]), ids.reshape(-1)] = float("inf")
    assert torch.equal(nb.reshape(-1, 3), d.topk(3, largest=False).indices)


def test_release_build_on_meta_device_and_parameter_counts() -> None:
    path = FIXTURES / FAMILY / "full_check.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/make_official_fixtures.py var ... --full")
    full = json.loads(path.read_text())
    names = [n for n in TOKENIZERS.names() if n.startswith("var-vqvae")]
    assert names == ["var-vqvae", "var-vqvae-512"]
    for name in names:
        with torch.device("meta"):
            tok = vistok.create(name)
        n = sum(p.numel() for p in tok.parameters())
        rec = full["names"][name]
        assert n == rec["parameters_official"] == rec["parameters_vistok"] == 108_948_355
        assert rec["codes_equal"] and rec["prefix_4_scales_codes_equal"]
        assert rec["max_abs_latent"] <= 1e-5 and rec["max_abs_recon"] <= 1e-5
        assert tok.max_tokens == rec["tokens"] and tok.input_size == rec["image_size"]
        assert tok.vocab_size == 4096
    assert TOKENIZERS.get("var-vqvae").defaults()["hub"] == "FoundationVision/var/vae_ch160v4096z32.pth"
    assert TOKENIZERS.get("var-vqvae-512").defaults()["hub"] == "FoundationVision/var/vae_ch160v4096z32.pth"
    with torch.device("meta"):
        tok = vistok.create("var-vqvae")
    assert tok.scale_boundaries == [1, 5, 14, 30, 55, 91, 155, 255, 424, 680]
    assert tok.quantize.phi_index == [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]  # as VAR picks: numpy breaks the ties


def _one_line(e: BaseException, path) -> None:
    msg = str(e)
    assert "\n" not in msg and str(path) in msg, msg


def test_wrong_files_raise_one_line_errors(tmp_path) -> None:
    d = fixture_case(FAMILY, "scales10")
    meta = case_meta(d)
    spec = meta["spec"]
    good = d / meta["weights"]
    # another configuration's checkpoint (other codebook, scales and phi layout)
    other = fixture_case(FAMILY, "znorm-nonshared") / "vae.pth"
    with pytest.raises((CheckpointError, SpecError)) as e:
        vistok.create(spec, weights=str(other))
    _one_line(e.value, other)
    # another family's layout: a Lightning-style taming checkpoint
    taming = tmp_path / "taming.ckpt"
    torch.save(
        {"state_dict": {"encoder.conv_in.weight": torch.zeros(128, 3, 3, 3), "loss.w": torch.zeros(1)}},
        taming,
    )
    with pytest.raises((CheckpointError, SpecError)) as e:
        vistok.create(spec, weights=str(taming))
    _one_line(e.value, taming)
    # a truncated file
    cut = tmp_path / "cut.pth"
    cut.write_bytes(good.read_bytes()[:5000])
    with pytest.raises((CheckpointError, SpecError)) as e:
        vistok.create(spec, weights=str(cut))
    _one_line(e.value, cut)
    sd = torch.load(good, map_location="cpu", weights_only=True)
    # a missing key
    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in sd.items() if k != "quantize.embedding.weight"}, missing)
    with pytest.raises((CheckpointError, SpecError), match=r"missing 1 \(quantize\.embedding\.weight") as e:
        vistok.create(spec, weights=str(missing))
    _one_line(e.value, missing)
    # an extra key
    extra = tmp_path / "extra.pth"
    torch.save({**sd, "quantize.extra": torch.zeros(2)}, extra)
    with pytest.raises((CheckpointError, SpecError), match=r"unexpected 1 \(quantize\.extra") as e:
        vistok.create(spec, weights=str(extra))
    _one_line(e.value, extra)
    # a file that does not exist
    with pytest.raises((CheckpointError, SpecError)) as e:
        vistok.create(spec, weights=str(tmp_path / "none.pth"))
    _one_line(e.value, tmp_path / "none.pth")


def test_convert_then_load_is_identical(tmp_path) -> None:
    d = fixture_case(FAMILY, "shared1")
    meta = case_meta(d)
    io = load_io(d)
    out = convert(meta["spec"], d / meta["weights"], tmp_path / "converted")
    tok = vistok.load(out)
    ref = vistok.create(meta["spec"], weights=str(d / meta["weights"]))
    a, b = tok.encode(io["images"]), ref.encode(io["images"])
    assert torch.equal(a.ids, b.ids) and torch.equal(a.ids, io["ids"])
    assert torch.equal(tok.decode(a), ref.decode(b))
