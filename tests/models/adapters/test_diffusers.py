"""diffusers adapters, offline: tiny random AutoencoderKL / VQModel saved to a temp folder."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

import vistok
from vistok.bench.data import samples_data
from vistok.bench.runner import BenchConfig, run_bench
from vistok.registry import SpecError

diffusers = pytest.importorskip("diffusers")

_BLOCKS = {
    "block_out_channels": (8, 16),
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
}


@pytest.fixture(scope="module")
def kl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("kl")
    diffusers.AutoencoderKL(**_BLOCKS).save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def vq_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("vq")
    diffusers.VQModel(**_BLOCKS, num_vq_embeddings=32, vq_embed_dim=4).save_pretrained(d)
    return d


def test_kl_matches_diffusers_directly(kl_dir: Path) -> None:
    tok = vistok.create(f"diffusers:{kl_dir}")
    assert tok.kind == "continuous" and tok.stride == 2
    x = torch.rand(2, 3, 32, 32)
    t = tok.encode(x)
    assert t.latents.shape == (2, 4, 16, 16) and t.latents.dtype == torch.float16
    assert t.bits.tolist() == [16.0 * 4 * 16 * 16] * 2
    ref = diffusers.AutoencoderKL.from_pretrained(kl_dir).eval()
    with torch.no_grad():
        z = ref.encode(x * 2 - 1).latent_dist.mode().half().float()
        want = ((ref.decode(z).sample + 1) / 2).clamp(0, 1)
    assert torch.allclose(tok.decode(t), want, atol=1e-5)


def test_kl_sampling_is_seeded(kl_dir: Path) -> None:
    x = torch.rand(1, 3, 16, 16)
    a = vistok.create(f"diffusers:{kl_dir},sample=true,seed=3").encode(x).latents
    b = vistok.create(f"diffusers:{kl_dir},sample=true,seed=3").encode(x).latents
    c = vistok.create(f"diffusers:{kl_dir}").encode(x).latents
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_vq_ids_round_trip(vq_dir: Path) -> None:
    tok = vistok.create(f"diffusers:model={vq_dir}")
    assert tok.kind == "discrete" and tok.vocab_size == 32
    x = torch.rand(2, 3, 32, 32)
    t = tok.encode(x)
    assert t.ids.shape == (2, 16, 16) and int(t.ids.min()) >= 0 and int(t.ids.max()) < 32
    assert t.bits[0] == 16 * 16 * math.log2(32)
    ref = diffusers.VQModel.from_pretrained(vq_dir).eval()
    with torch.no_grad():
        want = ((ref(x * 2 - 1).sample + 1) / 2).clamp(0, 1)  # encode -> quantize -> decode
    assert torch.allclose(tok.decode(t), want, atol=1e-5)
    nb = tok.neighbours(t.ids, 3)
    assert nb.shape == (2, 16, 16, 3) and not (nb == t.ids[..., None]).any()


def test_offline_or_missing_model_is_clear(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read a diffusers config"):
        vistok.create(f"diffusers:{tmp_path / 'nothing-here'}")
    with pytest.raises(SpecError, match="needs a model"):
        vistok.create("diffusers")


@pytest.mark.slow
def test_bench_end_to_end_and_precomputed_reconstructions_match(
    kl_dir: Path, vq_dir: Path, tmp_path: Path
) -> None:
    from vistok.bench.precomputed import PrecomputedReconstructions

    data = samples_data(("photos", "text")).subset(1)
    cfg = BenchConfig(suites=("recon", "text", "codebook", "robustness"))
    specs = [f"diffusers:{kl_dir}", f"diffusers:{vq_dir}"]
    res = run_bench(
        specs,
        data,
        cfg,
        tmp_path / "run",
        sweep=False,
        progress=False,
        save_reconstructions=tmp_path / "recs",
    )
    assert res is not None
    kl, vq = res["points"]
    assert kl["tokenizer"]["adapter"]["class"] == "AutoencoderKL"
    assert vq["tokenizer"]["adapter"]["model_config"]["num_vq_embeddings"] == 32
    assert "codebook" in vq and "robustness" in vq and "robustness" in kl
    json.dumps(res)  # the whole record is JSON
    # the precomputed-folder path reproduces the in-process numbers exactly
    from vistok.bench.runner import point_dirname

    bits = {r["file"]: r["bits"] for r in vq["per_image"]}
    pre = PrecomputedReconstructions(
        tmp_path
        / "recs"
        / point_dirname(__import__("vistok.bench.runner", fromlist=["Point"]).Point(specs[1])),
        rates=bits,
    )
    res2 = run_bench(
        [pre.spec],
        data,
        BenchConfig(suites=("recon", "text")),
        tmp_path / "run2",
        sweep=False,
        progress=False,
        create=lambda s: pre,
    )
    assert res2 is not None
    p2 = res2["points"][0]
    assert p2["per_image"] == [{k: v for k, v in r.items()} for r in vq["per_image"]]
    assert p2["recon"]["fd"] == vq["recon"]["fd"]
    assert p2["text"] == vq["text"]
