"""Fine-tuning a published tokenizer with vistok's trainer: LlamaGen VQ + RobustTok perturbation.

``configs/published/llamagen-vq16-robust-finetune.yaml`` builds ``llamagen-vq16`` at the size
of the parity fixture and starts from the fixture's checkpoint (the official code's weights in
the release's ``.pt`` layout) through ``model.init_from``; a few CPU steps on small crops.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import vistok
from vistok.train.config import load_config
from vistok.train.trainer import Trainer

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "configs" / "published" / "llamagen-vq16-robust-finetune.yaml"


def _perturbed_forward(model: torch.nn.Module, x: torch.Tensor, k: int) -> Any:
    """A training-mode forward with the perturbation hook live: about half the ids (prob 0.5)
    are swapped, each for one of its ``k`` nearest codes. Returns the ``ModelOutput``."""
    clean = model.encode(x).ids  # encode does not go through the hooked module call
    torch.manual_seed(0)
    with torch.no_grad():
        out = model(x)
    swapped = out.indices != clean
    assert 0.2 < float(swapped.float().mean()) < 0.8
    nb = model.neighbours(clean, k)
    assert bool((nb == out.indices.unsqueeze(-1)).any(-1)[swapped].all())
    return out


def test_llamagen_finetune_with_latent_perturbation(
    image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(ROOT)  # the recipe names the fixture checkpoint relative to the repository
    cfg = load_config(
        RECIPE,
        [
            f"data.sources=[{image_dir}]",
            "data.resize_short=64",
            "data.batch_size=2",
            "schedule.steps=4",
            "optim.lr=1e-3",
            "loss.perturb_prob=0.5",
            "log.progress=false",
        ],
    )
    init = vistok.create(cfg.model.init_from)  # the official checkpoint, as vistok loads it
    assert init.weights_source and init.weights_source.endswith("vq_tiny.pt")
    trainer = Trainer(cfg, tmp_path / "run")
    assert trainer.model.registry_name == "llamagen-vq16"
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.equal(start[k], v) for k, v in init.state_dict().items())  # init_from loaded
    assert trainer.perturb is not None  # the RobustTok hook sits on model.quantizer

    summary = trainer.fit()
    assert summary["step"] == 4 and not summary["stopped_early"]
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines] == [1, 2, 3, 4]
    for r in lines:
        assert all(math.isfinite(r[k]) for k in ("loss", "l2", "quantizer", "grad_norm")), r
        assert r["quantizer"] > 0  # the official codebook + commitment loss was trained on
    changed = [k for k, v in trainer.model.state_dict().items() if not torch.equal(v, start[k])]
    assert any(k.startswith("encoder.") for k in changed) and any(k.startswith("decoder.") for k in changed)
    assert "quantize.embedding.weight" in changed  # the codebook loss reaches the codebook

    # the perturbation is live on this model: in training, a forward swaps ids for neighbours
    assert trainer.perturb.prob == 0.5
    model = trainer.model.train()
    x = trainer._grid_images[:2]
    out = _perturbed_forward(model, x, cfg.loss.perturb_k)
    fed = out.quantized.permute(0, 2, 3, 1)
    swapped = out.indices != model.encode(x).ids
    torch.testing.assert_close(fed[swapped], model.embed(out.indices)[swapped])  # the decoder got them

    # the exported model loads back, as a llamagen-vq16 with the trained weights
    back = vistok.load(summary["model"])
    assert back.registry_name == "llamagen-vq16" and back.config["ch"] == 32
    trained = trainer.model.state_dict()
    assert all(torch.equal(v, trained[k]) for k, v in back.state_dict().items())
    model.eval()
    assert torch.equal(back.encode(x).ids, model.encode(x).ids)


TITOK_CASES = {
    # single-stage VQ (pixel decoder), the release as a PyTorchModelHubMixin folder
    "bl_vq": "release",
    # two-stage (MaskGIT proxy-code mix + MaskGIT pixel decoder), a bare state dict .bin
    "legacy": "tokenizer_titok_t6.bin",
}


@pytest.mark.parametrize("case", sorted(TITOK_CASES))
def test_titok_finetune_with_latent_perturbation(
    case: str, image_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The same recipe, pointed at a TiTok release: ``init_from`` loads the official weights,
    the straight-through VQ trains encoder, codebook and decoder, and the perturbation hook swaps
    1D token ids for codebook neighbours."""
    monkeypatch.chdir(ROOT)
    case_dir = ROOT / "tests" / "fixtures" / "official" / "titok" / case
    spec = json.loads((case_dir / "case.json").read_text())["spec"]
    weights = (case_dir / TITOK_CASES[case]).relative_to(ROOT)
    cfg = load_config(
        RECIPE,
        [
            f"model.spec={spec}",
            f"model.init_from={spec},weights={weights}",
            f"data.sources=[{image_dir}]",
            "data.size=16",
            "data.resize_short=32",
            "data.batch_size=2",
            "schedule.steps=3",
            "optim.lr=1e-3",
            "loss.perturb_prob=0.5",
            "loss.perturb_k=3",
            "log.progress=false",
        ],
    )
    init = vistok.create(cfg.model.init_from)
    assert init.weights_source and init.weights_source.endswith(TITOK_CASES[case])
    trainer = Trainer(cfg, tmp_path / "run")
    start = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    assert all(torch.equal(start[k], v) for k, v in init.state_dict().items())
    assert trainer.perturb is not None

    summary = trainer.fit()
    assert summary["step"] == 3
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r["loss"]) and r["quantizer"] > 0 for r in lines), lines
    changed = {k for k, v in trainer.model.state_dict().items() if not torch.equal(v, start[k])}
    assert "quantize.embedding.weight" in changed and "latent_tokens" in changed
    assert any(k.startswith("encoder.transformer.") for k in changed)
    assert any(k.startswith("decoder.transformer.") for k in changed)
    if case == "legacy":
        assert any(k.startswith("pixel_decoder.") for k in changed)

    model = trainer.model.train()
    x = trainer._grid_images[:2]
    out = _perturbed_forward(model, x, cfg.loss.perturb_k)  # quantized [B, N, C], ids [B, N]
    swapped = out.indices != model.encode(x).ids
    torch.testing.assert_close(out.quantized[swapped], model.embed(out.indices)[swapped])

    model.eval()
    with torch.no_grad():  # eval forward: no loss, the clamped reconstruction is decode(encode)
        ev = model(x)
    assert float(ev.loss) == 0.0
    torch.testing.assert_close(
        ev.reconstruction.clamp(0, 1), model.decode(model.encode(x)), atol=1e-5, rtol=0
    )
    back = vistok.load(summary["model"])
    assert back.registry_name == "titok"
    assert torch.equal(back.encode(x).ids, model.encode(x).ids)
