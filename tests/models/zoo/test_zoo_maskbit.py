"""MaskBit's VQGAN+ and bit tokenizers: parity with the official code (fixtures it produced)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo._cli import convert
from vistok.registry import TOKENIZERS, SpecError
from vistok.utils.checkpoints import CheckpointError

FAMILY = "maskbit"
CASES = ("lfq", "vq")
NAMES = {
    "maskbit-10bit": ("markweber/maskbit_tokenizer_10bit/maskbit_tokenizer_10bit.bin", 2**10),
    "maskbit-12bit": ("markweber/maskbit_tokenizer_12bit/maskbit_tokenizer_12bit.bin", 2**12),
    "maskbit-14bit": ("markweber/maskbit_tokenizer_14bit/maskbit_tokenizer_14bit.bin", 2**14),
    "maskbit-16bit": ("markweber/maskbit_tokenizer_16bit/maskbit_tokenizer_16bit.bin", 2**16),
    "maskbit-18bit": ("markweber/maskbit_tokenizer_18bit/maskbit_tokenizer_18bit.bin", 2**18),
    "vqgan-plus-10bit": ("markweber/vqgan_plus_paper", 1024),
    "vqgan-plus-12bit": ("markweber/vqgan_plus_12bit/vqgan_plus_12bit.bin", 4096),
}


def _load(case: str, **overrides: object) -> tuple[vistok.Tokenizer, dict, dict, Path]:
    d = fixture_case(FAMILY, case)
    meta = case_meta(d)
    path = d / meta["weights"]
    tok = vistok.create(meta["spec"], weights=str(path), **overrides)
    return tok, meta, load_io(d), path


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ---- parity with the official code -----------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_parity_square(case: str) -> None:
    tok, meta, io, _ = _load(case)
    x = io["images"]
    torch.testing.assert_close(tok.pre_quant(x), io["latents"], atol=meta["atol_latents"], rtol=0)
    tokens = tok.encode(x)
    assert torch.equal(tokens.ids, io["ids"]), "codes differ from the official code"
    # decode_tokens(ids) of the official model, before and after the evaluation's clamp
    torch.testing.assert_close(
        tok.decode_ids(tokens.ids), io["recon_tokens"], atol=meta["atol_recon"], rtol=0
    )
    torch.testing.assert_close(
        tok.decode(tokens), io["recon_tokens"].clamp(0, 1), atol=meta["atol_recon"], rtol=0
    )


@pytest.mark.parametrize("case", CASES)
def test_parity_non_square_forward(case: str) -> None:
    tok, meta, io, _ = _load(case)
    x = io["images_wide"]
    torch.testing.assert_close(tok.pre_quant(x), io["latents_wide"], atol=meta["atol_latents"], rtol=0)
    tokens = tok.encode(x)
    assert tokens.ids.shape == io["ids_wide"].shape
    assert torch.equal(tokens.ids, io["ids_wide"])
    # the official forward decodes z + (q - z).detach(): q up to float rounding
    torch.testing.assert_close(tok.decode_ids(tokens.ids), io["recon_wide"], atol=meta["atol_recon"], rtol=0)
    torch.testing.assert_close(
        tok.reconstruct(x), io["recon_wide"].clamp(0, 1), atol=meta["atol_recon"], rtol=0
    )


def test_fixture_codes_vary() -> None:
    for case in CASES:
        assert case_meta(fixture_case(FAMILY, case))["distinct_codes"] > 8


def test_bit_order_is_the_official_index() -> None:
    """id = sum_c [z_c > 0] 2**c over the official latents; embed gives the +-1 bits back."""
    tok, _, io, _ = _load("lfq")
    z, ids = io["latents"], io["ids"]
    k = z.shape[1]
    assert tok.index_factors == [2] * k
    assert torch.equal(((z > 0).long() * (2 ** torch.arange(k)).view(1, k, 1, 1)).sum(1), ids)
    bits = tok.embed(ids)
    assert bits.shape == (*ids.shape, k)
    assert torch.equal(bits, torch.where(z > 0, 1.0, -1.0).permute(0, 2, 3, 1))
    # digits least significant first, as Tokenizer.index_factors documents
    digits = torch.stack([(ids >> c) & 1 for c in range(k)], -1)
    assert torch.equal(digits * 2 - 1, bits.long())


def test_ignored_keys_are_the_lfq_constants() -> None:
    tok, _, _, path = _load("lfq")
    assert tok.ignored == ["quantize.bits_to_indices", "quantize.codebook"]
    assert tok.weights_source == str(path)
    assert not any(k.startswith("quantize.") for k in tok.state_dict())


# ---- wrong files ----------------------------------------------------------------------------
def _expect_bad(spec: str, path: Path, match: str) -> None:
    with pytest.raises((CheckpointError, SpecError)) as e:
        vistok.create(spec, weights=str(path))
    msg = str(e.value)
    assert str(path) in msg and "\n" not in msg, msg
    assert match in msg, msg


def test_wrong_files(tmp_path: Path) -> None:
    lfq = case_meta(fixture_case(FAMILY, "lfq"))
    vq = case_meta(fixture_case(FAMILY, "vq"))
    lfq_path = fixture_case(FAMILY, "lfq") / lfq["weights"]
    vq_path = fixture_case(FAMILY, "vq") / vq["weights"]
    # the other architecture's release
    _expect_bad(lfq["spec"], vq_path, "not a MaskBitTokenizer checkpoint")
    _expect_bad(vq["spec"], lfq_path, "not a VQGANPlus checkpoint")
    # another family's checkpoint (any other family's fixture, else a taming-style state dict)
    others = sorted(p for p in FIXTURES.glob("*/*/*") if p.suffix in {".pt", ".pth", ".ckpt", ".bin"})
    others = [p for p in others if p.parts[-3] != FAMILY]
    if others:
        foreign = others[0]
    else:
        foreign = tmp_path / "taming.bin"
        torch.save(
            {"encoder.conv_in.weight": torch.zeros(8, 3, 3, 3), "quant_conv.weight": torch.zeros(1)}, foreign
        )
    with pytest.raises((CheckpointError, SpecError)) as e:
        vistok.create(lfq["spec"], weights=str(foreign))
    assert str(foreign) in str(e.value) and "\n" not in str(e.value)
    # a truncated file
    cut = tmp_path / "cut.bin"
    cut.write_bytes(lfq_path.read_bytes()[:5000])
    _expect_bad(lfq["spec"], cut, "not a readable torch checkpoint")
    # a missing and an extra tensor
    from vistok.utils.checkpoints import read_pickle

    sd, _ = read_pickle(lfq_path)
    missing = tmp_path / "missing.bin"
    torch.save({k: v for k, v in sd.items() if k != "decoder.conv_out.bias"}, missing)
    _expect_bad(lfq["spec"], missing, "missing 1 (decoder.conv_out.bias)")
    extra = tmp_path / "extra.bin"
    torch.save({**sd, "encoder.extra.weight": torch.zeros(2)}, extra)
    _expect_bad(lfq["spec"], extra, "unexpected 1 (encoder.extra.weight)")
    # another size of the family: a shape error naming the tensor
    _expect_bad(lfq["spec"].replace("token_bits=6", "token_bits=5"), lfq_path, "encoder.conv_out.weight")
    # a folder without exactly one .bin, and a path that does not exist
    empty = tmp_path / "empty"
    empty.mkdir()
    _expect_bad(lfq["spec"], empty, "expected one .bin")
    with pytest.raises((CheckpointError, SpecError), match="no such file"):
        vistok.create(lfq["spec"], weights=str(tmp_path / "nope.bin"))


def test_release_folders(tmp_path: Path) -> None:
    """A hub download folder (<name>.bin) and a save_pretrained folder (pytorch_model.bin) load."""
    _, meta, io, path = _load("lfq")
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    shutil.copy(path, hub_dir / path.name)
    (hub_dir / "README.md").write_text("model card\n")
    sp_dir = tmp_path / "save_pretrained"
    sp_dir.mkdir()
    shutil.copy(path, sp_dir / "pytorch_model.bin")
    for d in (hub_dir, sp_dir):
        other = vistok.create(meta["spec"], weights=str(d))
        assert torch.equal(other.encode(io["images"]).ids, io["ids"])


@pytest.mark.parametrize("case", CASES)
def test_convert_then_load(case: str, tmp_path: Path) -> None:
    tok, meta, io, path = _load(case)
    out = convert(meta["spec"], path, tmp_path / "converted")
    again = vistok.load(out)
    assert type(again) is type(tok)
    x = io["images"]
    a, b = tok.encode(x), again.encode(x)
    assert torch.equal(a.ids, b.ids)
    assert torch.equal(tok.decode(a), again.decode(b))
    cfg = json.loads((out / "config.json").read_text())
    assert "weights" not in cfg["config"] and "pretrained" not in cfg["config"]


# ---- registered names -----------------------------------------------------------------------
def _full_check() -> dict:
    path = FIXTURES / FAMILY / "full_check.json"
    if not path.is_file():
        pytest.fail(f"{path} is missing: run scripts/make_official_fixtures.py {FAMILY} ... --full")
    return json.loads(path.read_text())["names"]


@pytest.mark.parametrize("name", sorted(NAMES))
def test_names_build_with_official_parameter_counts(name: str) -> None:
    hub, vocab = NAMES[name]
    with torch.device("meta"):
        tok = vistok.create(name)
    full = _full_check()[name]
    assert sum(p.numel() for p in tok.parameters()) == full["params_official"] == full["params_vistok"]
    assert (
        full["codes_equal"]
        and full["max_abs_latents"] <= 1e-4
        and full["max_abs_recon_vs_decode_tokens"] <= 1e-4
    )
    assert tok.vocab_size == vocab and tok.max_tokens == 256 and tok.stride == 16 and tok.input_size is None
    assert tok.kind == "discrete" and not tok.variable_length
    assert TOKENIZERS.get(name).defaults()["hub"] == hub
    if name.startswith("maskbit-"):
        assert tok.index_factors == [2] * int(math.log2(vocab)) and tok.has_neighbours  # bit flips
    else:
        assert tok.index_factors is None and tok.has_neighbours
    cfg = full["official_config"]
    assert cfg["channel_mult"] == [1, 1, 2, 2, 4] and cfg["hidden_channels"] == 128


# ---- the contract ---------------------------------------------------------------------------
def test_contract_shapes_ranges_bits() -> None:
    tok, *_ = _load("lfq")
    x = torch.rand(3, 3, 32, 64)
    tokens = tok.encode(x)
    assert tokens.ids.dtype == torch.long and tokens.ids.shape == (3, 8, 16)
    assert tokens.latents is None
    assert int(tokens.ids.min()) >= 0 and int(tokens.ids.max()) < tok.vocab_size
    assert tokens.bits.dtype == torch.float64 and torch.equal(tokens.bits, torch.full((3,), 8 * 16 * 6.0))
    y = tok.decode(tokens)
    assert y.shape == x.shape and y.dtype == torch.float32 and float(y.min()) >= 0 and float(y.max()) <= 1
    torch.testing.assert_close(tok.decode(tokens[1]), y[1:2], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="multiples of 4"):
        tok.encode(torch.rand(1, 3, 30, 32))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        tok.encode(x * 2)
    with pytest.raises(ValueError, match="fixed-length"):
        tok.encode(x, num_tokens=3)
    with pytest.raises(SpecError):
        vistok.create(f"{tok.registry_name}@3")


def test_vq_embed_and_neighbours() -> None:
    tok, _, io, _ = _load("vq")
    ids = io["ids"][:, :3, :3]
    e = tok.embed(ids)
    assert e.shape == (*ids.shape, 8) and torch.equal(e, tok.codebook[ids])
    k = 4
    nb = tok.neighbours(ids, k)
    assert nb.shape == (*ids.shape, k) and nb.dtype == torch.long
    cb = tok.codebook.detach()
    d = (cb[:, None] - cb[None]).pow(2).sum(-1)
    d.fill_diagonal_(float("inf"))
    want = d.topk(k, dim=1, largest=False).indices
    assert torch.equal(nb, want[ids])
    assert not (nb == ids.unsqueeze(-1)).any()
    with pytest.raises(ValueError):
        tok.neighbours(ids, tok.vocab_size)


def test_bad_architecture_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match="divisible by 32"):
        vistok.create("maskbit:hidden_channels=48")
