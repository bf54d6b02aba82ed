"""Parity of the SEED-Voken tokenizers (Open-MAGVIT2 LFQ, IBQ) with fixtures made by the official code."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo._cli import convert
from vistok.models.zoo.seed_voken import OpenMagvit2
from vistok.registry import SpecError
from vistok.utils.checkpoints import CheckpointError, read_pickle

FAMILY = "seed_voken"
CASES = ["lfq_small", "ibq_small"]
NAMES = ["open-magvit2-256", "ibq-1024", "ibq-8192", "ibq-16384", "ibq-262144"]


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _case(case: str):
    d = fixture_case(FAMILY, case)
    meta = case_meta(d)
    return d, meta, load_io(d), d / meta["checkpoint"]


def _tok(case: str, **kw):
    _, meta, io, ckpt = _case(case)
    return vistok.create(meta["spec"], weights=str(ckpt), **kw), meta, io


@pytest.mark.parametrize("case", CASES)
def test_parity_with_official(case):
    tok, meta, io = _tok(case)
    tol = meta["tolerances"]
    images = io["images"]
    with torch.no_grad():
        feats = tok.features(images)
        tokens = tok.encode(images)
        recon = tok.decode_model(tokens.ids)
        out = tok.decode(tokens)
    assert tok.ema_used  # the official evaluation runs inside ema_scope()
    assert torch.equal(tokens.ids, io["codes"])
    torch.testing.assert_close(feats, io["features"], atol=tol["features"], rtol=0)
    # decode from ids uses the exact code vectors; the official recon decoded z + (q - z)
    torch.testing.assert_close(recon, io["recon"], atol=tol["recon"], rtol=0)
    torch.testing.assert_close(out, ((io["recon"] + 1) / 2).clamp(0, 1), atol=tol["recon"], rtol=0)
    assert tok.ignored and all(k.startswith(("loss.", "model_ema.")) for k in tok.ignored)


@pytest.mark.parametrize("case", CASES)
def test_raw_weights_without_ema(case):
    tok, _, io = _tok(case, ema=False)
    assert not tok.ema_used
    assert torch.equal(tok.encode(io["images"]).ids, io["codes_raw"])
    assert not torch.equal(io["codes_raw"], io["codes"])


def test_lfq_bit_order():
    tok, _, io = _tok("lfq_small")
    feats = tok.features(io["images"])
    ids = tok.encode(io["images"]).ids
    assert tok.index_factors == [2] * 6 and tok.vocab_size == 64
    for d in range(6):  # bit d of the id is the sign of channel d
        assert torch.equal((ids >> d) & 1, (feats[:, d] > 0).long())
    emb = tok.embed(ids)
    assert emb.shape == (*ids.shape, 6)
    assert torch.equal(emb, torch.where(feats > 0, 1.0, -1.0).permute(0, 2, 3, 1))


def test_ibq_codebook_and_neighbours():
    tok, _, io = _tok("ibq_small")
    ids = tok.encode(io["images"]).ids
    w = tok.quantize.embedding.weight
    assert tok.has_neighbours and tok.index_factors is None
    assert torch.equal(tok.embed(ids), w[ids])
    nb = tok.neighbours(ids[:, :2, :2], 3)
    assert nb.shape == (2, 2, 2, 3)
    assert not (nb == ids[:, :2, :2, None]).any()
    i = int(ids[0, 0, 0])
    sim = w @ w[i]
    sim[i] = -math.inf
    assert nb[0, 0, 0].tolist() == sim.topk(3).indices.tolist()


@pytest.mark.parametrize("case", CASES)
def test_contract(case):
    tok, _, io = _tok(case)
    images = io["images"]
    t = tok.encode(images)
    b, _, h, w = images.shape
    s = tok.stride
    assert tok.kind == "discrete" and not tok.variable_length
    assert t.ids.dtype == torch.long and t.ids.shape == (b, h // s, w // s)
    assert int(t.ids.min()) >= 0 and int(t.ids.max()) < tok.vocab_size
    assert t.bits.dtype == torch.float64
    assert torch.allclose(
        t.bits, torch.full((b,), (h // s) * (w // s) * math.log2(tok.vocab_size), dtype=torch.float64)
    )
    assert tok.max_tokens == (32 // s) ** 2
    x = tok.decode(t)
    assert x.shape == images.shape and float(x.min()) >= 0 and float(x.max()) <= 1
    # any multiple of the stride; a single image; num_tokens only at max_tokens
    wide = torch.rand(1, 3, 2 * s, 3 * s)
    assert tok.encode(wide).ids.shape == (1, 2, 3)
    with pytest.raises(ValueError, match="multiples"):
        tok.encode(torch.rand(1, 3, s + 1, s))
    with pytest.raises(ValueError, match="fixed-length"):
        tok.encode(images, num_tokens=3)
    assert torch.equal(tok.encode(images, num_tokens=tok.max_tokens).ids, t.ids)
    assert tok.describe()["published"]["ema_weights"] is True


def test_wrong_files(tmp_path: Path):
    _, lfq_meta, _, lfq_ckpt = _case("lfq_small")
    _, ibq_meta, _, ibq_ckpt = _case("ibq_small")
    # another family's file
    with pytest.raises(SpecError, match=r"ibq_small.*model\.ckpt.*OpenMagvit2"):
        vistok.create(lfq_meta["spec"], weights=str(ibq_ckpt))
    with pytest.raises(SpecError, match=r"lfq_small.*model\.ckpt"):
        vistok.create(ibq_meta["spec"], weights=str(lfq_ckpt))
    # another size of the same family
    with pytest.raises(SpecError, match="shape"):
        vistok.create(ibq_meta["spec"].replace("codebook_size=64", "codebook_size=32"), weights=str(ibq_ckpt))
    # truncated
    bad = tmp_path / "truncated.ckpt"
    bad.write_bytes(lfq_ckpt.read_bytes()[:5000])
    with pytest.raises(SpecError, match=r"truncated\.ckpt"):
        vistok.create(lfq_meta["spec"], weights=str(bad))
    obj, _ = read_pickle(lfq_ckpt)
    sd = obj["state_dict"]
    # a raw tensor missing
    cut = dict(obj, state_dict={k: v for k, v in sd.items() if k != "decoder.conv_out.weight"})
    torch.save(cut, tmp_path / "missing.ckpt")
    with pytest.raises(SpecError, match=r"missing.ckpt.*missing 1 \(decoder\.conv_out\.weight\)"):
        vistok.create(lfq_meta["spec"], weights=str(tmp_path / "missing.ckpt"))
    # an EMA shadow missing
    cut = dict(obj, state_dict={k: v for k, v in sd.items() if k != "model_ema.decoderconv_outweight"})
    torch.save(cut, tmp_path / "noshadow.ckpt")
    with pytest.raises(SpecError, match=r"noshadow.ckpt.*LitEma.*decoder\.conv_out\.weight"):
        vistok.create(lfq_meta["spec"], weights=str(tmp_path / "noshadow.ckpt"))
    # ... which ema=false accepts (raw weights)
    vistok.create(lfq_meta["spec"], weights=str(tmp_path / "noshadow.ckpt"), ema=False)
    # an extra key, and an extra shadow
    for extra in ("encoder.extra.weight", "model_ema.encoderextraweight"):
        more = dict(obj, state_dict={**sd, extra: torch.zeros(2)})
        torch.save(more, tmp_path / "extra.ckpt")
        with pytest.raises(SpecError, match=r"extra.ckpt.*unexpected 1"):
            vistok.create(lfq_meta["spec"], weights=str(tmp_path / "extra.ckpt"))
    # no state_dict
    torch.save({"epoch": 1}, tmp_path / "nostate.ckpt")
    with pytest.raises(SpecError, match=r"nostate.ckpt.*state_dict"):
        vistok.create(lfq_meta["spec"], weights=str(tmp_path / "nostate.ckpt"))
    with pytest.raises(CheckpointError):
        OpenMagvit2(**_arch(lfq_meta["spec"]), weights=str(tmp_path / "nostate.ckpt"))


def _arch(spec: str) -> dict:
    from vistok.registry import TOKENIZERS

    _, kwargs = TOKENIZERS.resolve(spec)
    return {k: v for k, v in kwargs.items() if k not in ("weights", "pretrained", "hub", "ema")}


@pytest.mark.parametrize("case", CASES)
def test_convert_roundtrip(case, tmp_path: Path):
    _, meta, io, ckpt = _case(case)
    out = convert(meta["spec"], ckpt, tmp_path / "conv")
    a = vistok.create(meta["spec"], weights=str(ckpt))
    b = vistok.load(out)
    ta, tb = a.encode(io["images"]), b.encode(io["images"])
    assert torch.equal(ta.ids, tb.ids)
    assert torch.equal(a.decode(ta), b.decode(tb))
    cfg = json.loads((out / "config.json").read_text())["config"]
    assert not {"weights", "pretrained", "ema"} & set(cfg)


def test_source_recorded():
    src = json.loads((FIXTURES / FAMILY / "SOURCE.json").read_text())
    assert src["official_repository"] == "TencentARC/SEED-Voken" and len(src["commit"]) == 40


def _full_check() -> dict:
    path = FIXTURES / FAMILY / "full_check.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/make_official_fixtures.py {FAMILY} ... --full")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_registered_names(name):
    with torch.device("meta"):
        tok = vistok.create(name)
    row = _full_check()["names"][name]
    assert sum(p.numel() for p in tok.parameters()) == row["official_parameters"] == row["vistok_parameters"]
    assert row["codes_equal"] and row["ema_weights"]
    assert tok.max_tokens == 256 and tok.stride == 16
    assert tok.vocab_size == (2**18 if name == "open-magvit2-256" else int(name.split("-")[1]))
    assert row["bits_per_image"] == 256 * math.log2(tok.vocab_size)
    assert tok.config["hub"].startswith("TencentARC/") and tok.config["hub"].endswith(".ckpt")
