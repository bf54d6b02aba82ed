"""LlamaGen VQ (llamagen-vq16 / llamagen-vq8): parity with the official code, loading, contract.

The fixture ``tests/fixtures/official/llamagen/tiny`` was made by the official
``tokenizer/tokenizer_image/vq_model.py`` (``scripts/official_fixtures/llamagen.py``);
``full_check.json`` holds the full-configuration comparison.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
import torch
from zoo_fixtures import FIXTURES, case_meta, fixture_case, load_io

import vistok
from vistok.models.zoo.llamagen import LlamaGenVQ, entropy_loss
from vistok.registry import SpecError
from vistok.utils.checkpoints import CheckpointError, read_pickle

FAMILY = "llamagen"


@pytest.fixture(scope="module")
def case() -> Path:
    return fixture_case(FAMILY, "tiny")


@pytest.fixture(scope="module")
def meta(case: Path) -> dict:
    return case_meta(case)


@pytest.fixture(scope="module")
def io(case: Path) -> dict[str, torch.Tensor]:
    return load_io(case)


@pytest.fixture(scope="module")
def tok(case: Path, meta: dict) -> LlamaGenVQ:
    return vistok.create(meta["spec"], weights=str(case / meta["weights"]))


def _to01(x: torch.Tensor) -> torch.Tensor:
    return ((x + 1) / 2).clamp(0, 1)


# ---- parity with the official code --------------------------------------------------------
@pytest.mark.parametrize("key", ["", "rect_"])
def test_codes_latents_reconstructions_match_official(
    tok: LlamaGenVQ, io: dict, meta: dict, key: str
) -> None:
    tol = meta["tolerance"]
    images = io[f"{key}images"]
    tokens = tok.encode(images)
    assert torch.equal(tokens.ids, io[f"{key}codes"])
    h, _ = tok._encode_h(images)
    torch.testing.assert_close(h, io[f"{key}latents"], atol=tol["latents"], rtol=0)
    torch.testing.assert_close(
        tok.decode(tokens), _to01(io[f"{key}recon_codes"]), atol=tol["reconstruction"], rtol=0
    )


def test_forward_matches_official(tok: LlamaGenVQ, io: dict, meta: dict) -> None:
    with torch.no_grad():
        out = tok(io["images"])
    torch.testing.assert_close(
        out.reconstruction * 2 - 1, io["recon_forward"], atol=meta["tolerance"]["reconstruction"], rtol=0
    )
    assert torch.equal(out.indices, io["codes"])
    assert float(out.loss) == 0.0  # no loss in eval, as the official quantizer


def test_training_losses_and_gradients_match_official(case: Path, meta: dict, io: dict) -> None:
    tok = vistok.create(meta["spec"], weights=str(case / meta["weights"])).train()
    h = io["latents"].clone().requires_grad_(True)
    q = tok.quantizer(h.permute(0, 2, 3, 1))
    tol = meta["tolerance"]
    torch.testing.assert_close(q.stats["codebook"].reshape(1), io["train_vq_loss"], atol=tol["loss"], rtol=0)
    torch.testing.assert_close(
        (tok.quantizer.beta * q.stats["commit"]).reshape(1), io["train_commit_loss"], atol=tol["loss"], rtol=0
    )
    q.loss.backward()
    torch.testing.assert_close(h.grad, io["train_grad_latents"], atol=tol["grad"], rtol=0)
    torch.testing.assert_close(
        tok.quantizer.embedding.weight.grad, io["train_grad_codebook"], atol=tol["grad"], rtol=0
    )
    z = torch.nn.functional.normalize(io["latents"].permute(0, 2, 3, 1).reshape(-1, 8), dim=-1)
    cb = tok.quantizer.normalized_codebook().detach()
    ent = entropy_loss(-tok.quantizer.distances(z, cb))
    torch.testing.assert_close(ent.reshape(1), io["train_entropy_loss"], atol=1e-5, rtol=0)


# ---- the release layout -------------------------------------------------------------------
def _release(case: Path, meta: dict) -> dict:
    obj, skipped = read_pickle(case / meta["weights"])
    assert skipped == {"argparse.Namespace"}  # args: an inert record, nothing imported
    obj["args"] = argparse.Namespace(vq_model="VQ-tiny")  # a real one again, to save a changed copy
    return obj


def test_ema_entry_is_preferred_like_the_official_scripts(
    case: Path, meta: dict, io: dict, tmp_path: Path
) -> None:
    obj = _release(case, meta)
    good = obj["model"]
    obj["ema"] = good
    obj["model"] = {k: v + 1 for k, v in good.items()}  # a different (non-EMA) set of weights
    path = tmp_path / "with_ema.pt"
    torch.save(obj, path)
    tok = vistok.create(meta["spec"], weights=str(path))
    assert torch.equal(tok.encode(io["images"]).ids, io["codes"])


def test_codebook_usage_log_is_ignored(case: Path, meta: dict, io: dict, tmp_path: Path) -> None:
    obj = _release(case, meta)
    obj["model"]["quantize.codebook_used"] = torch.zeros(65536)
    path = tmp_path / "with_usage.pt"
    torch.save(obj, path)
    tok = vistok.create(meta["spec"], weights=str(path))
    assert tok.ignored == ["quantize.codebook_used"]
    assert torch.equal(tok.encode(io["images"]).ids, io["codes"])


def _one_line_naming(err: BaseException, path: Path) -> None:
    msg = str(err)
    assert "\n" not in msg and str(path) in msg, msg


@pytest.mark.parametrize("damage", ["truncated", "missing_key", "extra_key", "other_family", "other_size"])
def test_wrong_files_raise_one_line_errors(case: Path, meta: dict, tmp_path: Path, damage: str) -> None:
    spec = meta["spec"]
    if damage == "truncated":
        path = tmp_path / "cut.pt"
        data = (case / meta["weights"]).read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif damage in ("missing_key", "extra_key"):
        obj = _release(case, meta)
        if damage == "missing_key":
            del obj["model"]["decoder.conv_out.weight"]
        else:
            obj["model"]["decoder.extra.weight"] = torch.zeros(3)
        path = tmp_path / f"{damage}.pt"
        torch.save(obj, path)
    elif damage == "other_family":  # a vistok-native checkpoint (another architecture)
        path = vistok.create("conv2d-tiny").save_pretrained(tmp_path / "conv2d") / "model.safetensors"
    else:  # the tiny weights for a wider configuration
        path = case / meta["weights"]
        spec = spec.replace("z_channels=16", "z_channels=32")
    with pytest.raises((CheckpointError, SpecError)) as err:
        vistok.create(spec, weights=str(path))
    _one_line_naming(err.value, path)


def test_convert_then_load_gives_identical_outputs(
    tok: LlamaGenVQ, case: Path, meta: dict, io: dict, tmp_path: Path
) -> None:
    from vistok.models.zoo._cli import convert

    out = convert(meta["spec"], case / meta["weights"], tmp_path / "converted")
    back = vistok.load(out)
    assert "weights" not in json.loads((out / "config.json").read_text())["config"]
    a, b = tok.encode(io["images"]), back.encode(io["images"])
    assert torch.equal(a.ids, b.ids)
    assert torch.equal(tok.decode(a), back.decode(b))


# ---- names and parameter counts -------------------------------------------------------------
@pytest.mark.parametrize("name,stride,tokens", [("llamagen-vq16", 16, 256), ("llamagen-vq8", 8, 1024)])
def test_registered_names_match_the_official_full_configuration(name: str, stride: int, tokens: int) -> None:
    full = json.loads((FIXTURES / FAMILY / "full_check.json").read_text())["names"][name]
    with torch.device("meta"):
        tok = vistok.create(name)
    assert sum(p.numel() for p in tok.parameters()) == full["params_official"]
    assert (tok.stride, tok.max_tokens, tok.vocab_size) == (stride, tokens, 16384)
    assert tok.config["hub"] == f"FoundationVision/LlamaGen/vq_ds{stride}_c2i.pt"
    assert full["codes_equal"] and full["recon_raw_max_abs_diff"] < 1e-3


# ---- the contract ---------------------------------------------------------------------------
def test_contract(tok: LlamaGenVQ, io: dict) -> None:
    images = io["images"]
    tokens = tok.encode(images)
    assert tokens.ids.dtype == torch.long and tokens.ids.shape == (2, 16, 16)
    assert int(tokens.ids.min()) >= 0 and int(tokens.ids.max()) < tok.vocab_size == 64
    assert torch.equal(tokens.bits, torch.full((2,), 256 * math.log2(64), dtype=torch.float64))
    rec = tok.decode(tokens)
    assert rec.shape == images.shape and rec.dtype == torch.float32
    assert float(rec.min()) >= 0.0 and float(rec.max()) <= 1.0
    assert tok.kind == "discrete" and not tok.variable_length and tok.has_neighbours
    emb = tok.embed(tokens.ids)
    assert emb.shape == (2, 16, 16, 8)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(2, 16, 16))
    nb = tok.neighbours(tokens.ids, 3)
    assert nb.shape == (2, 16, 16, 3) and not (nb == tokens.ids.unsqueeze(-1)).any()
    cb = tok.quantizer.normalized_codebook()
    d = torch.cdist(cb[tokens.ids[0, 0, 0]][None], cb)[0]
    d[tokens.ids[0, 0, 0]] = math.inf
    assert int(nb[0, 0, 0, 0]) == int(d.argmin())
    assert torch.equal(tok.encode(images, num_tokens=256).ids, tokens.ids)
    with pytest.raises(ValueError, match="fixed-length"):
        tok.encode(images, num_tokens=16)
    with pytest.raises(ValueError, match="multiples of 2"):
        tok.encode(torch.rand(1, 3, 33, 32))


def test_training_forward_gives_what_the_trainer_uses(case: Path, meta: dict, io: dict) -> None:
    tok = vistok.create(meta["spec"], weights=str(case / meta["weights"])).train()
    out = tok(io["images"])
    assert out.reconstruction.shape == io["images"].shape and out.indices.shape == (2, 16, 16)
    assert out.quantized.shape == (2, 8, 16, 16)
    assert out.loss.requires_grad and float(out.loss.detach()) > 0
    assert {"usage", "perplexity", "codebook", "commit"} <= set(out.stats)
    assert out.features["encoder"].shape[:2] == (2, 32) and out.features["decoder"].shape[:2] == (2, 32)
    (out.reconstruction.mean() + out.loss).backward()
    assert tok.quantizer.embedding.weight.grad is not None and tok.encoder.conv_in.weight.grad is not None


def test_fixture_is_small() -> None:
    total = sum(p.stat().st_size for p in (FIXTURES / FAMILY).rglob("*") if p.is_file())
    assert total < 800_000, total
