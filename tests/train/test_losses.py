from __future__ import annotations

import pytest
import torch

import vistok
from vistok.registry import LOSSES
from vistok.train.discriminator import (
    LeCam,
    PatchDiscriminator,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    last_layer,
)
from vistok.train.losses import SemanticAlignLoss
from vistok.train.trainer import TokenPerturbation, lr_at


def _out(model, images):  # type: ignore[no-untyped-def]
    return model(images)


def test_registered_losses() -> None:
    assert {"l1", "l2", "perceptual", "lpips", "semantic"} <= set(LOSSES.names())


def test_pixel_and_perceptual_losses() -> None:
    torch.manual_seed(0)
    model = vistok.create("conv2d-tiny").train()
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    for name in ("l1", "l2", "perceptual"):
        loss = LOSSES.create(name)(x, out)
        assert loss.ndim == 0 and loss > 0
    same = out.__class__(**{**out.__dict__, "reconstruction": x.clone()})
    assert LOSSES.create("perceptual")(x, same) < 1e-8


def test_lpips_without_weights_says_how() -> None:
    with pytest.raises(FileNotFoundError, match=r"lpips_weights"):
        LOSSES.create("lpips")


@pytest.mark.parametrize("spec", ["conv2d-tiny", "latent1d-tiny"])
def test_semantic_alignment_trains_projection_and_encoder(spec: str) -> None:
    torch.manual_seed(0)
    model = vistok.create(spec).train()
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    f = out.features["encoder"]
    dim = f.shape[1] if f.ndim == 4 else f.shape[-1]
    sem = SemanticAlignLoss(dim, layer=3, hidden=16, grid=getattr(model, "grid", None))
    loss = sem(x, out)
    loss.backward()
    assert 0 <= loss <= 2
    assert sem.proj[0].weight.grad is not None
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())


def test_gan_parts() -> None:
    torch.manual_seed(0)
    d = PatchDiscriminator(width=8, layers=2)
    logits = d(torch.rand(2, 3, 32, 32))
    assert logits.ndim == 4 and logits.shape[:2] == (2, 1)
    real, fake = torch.ones(4), -torch.ones(4)
    assert hinge_d_loss(real, fake) == 0 and hinge_g_loss(fake) == 1
    lecam = LeCam(decay=0.5)
    assert lecam(torch.full((4,), 2.0), torch.zeros(4)) > 0
    assert lecam.ema_real == 1.0
    model = vistok.create("conv2d-tiny").train()
    assert last_layer(model) is model.decoder.out.weight
    one_d = vistok.create("latent1d-tiny")
    assert last_layer(one_d) is one_d.to_pixels.weight
    out = model(torch.rand(2, 3, 32, 32))
    rec = out.reconstruction.abs().mean()
    g = hinge_g_loss(d(out.reconstruction))
    w = adaptive_weight(rec, g, last_layer(model))
    assert w.ndim == 0 and w >= 0 and not w.requires_grad


def test_token_perturbation_swaps_a_fraction_for_neighbours() -> None:
    torch.manual_seed(0)
    model = vistok.create("conv2d-tiny").train()
    x = torch.rand(4, 3, 32, 32)
    clean = model(x)
    hook = TokenPerturbation(model.quantizer, k=2)
    hook.prob = 0.5
    torch.manual_seed(0)
    pert = model(x)
    changed = (pert.indices != clean.indices).float().mean()
    assert 0.3 < changed < 0.7
    nb = model.quantizer.neighbours(clean.indices, 2)
    moved = pert.indices != clean.indices
    assert ((pert.indices[..., None] == nb).any(-1) | ~moved).all()
    assert not torch.equal(pert.reconstruction, clean.reconstruction)
    hook.prob = 0.0
    assert torch.equal(model(x).indices, clean.indices)
    hook.handle.remove()


def test_lr_schedule() -> None:
    kw = dict(lr=1.0, warmup=10, steps=110, min_ratio=0.1)
    assert lr_at(0, **kw) == pytest.approx(0.1)
    assert lr_at(9, **kw) == pytest.approx(1.0)
    assert lr_at(60, **kw) == pytest.approx(0.55)
    assert lr_at(110, **kw) == pytest.approx(0.1)


def test_lpips_loads_a_state_dict_in_the_lpips_package_layout(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from vistok.train.perceptual import LPIPS

    torch.manual_seed(0)
    state = LPIPS(None, pretrained=False).state_dict()
    assert {"net.slice1.0.weight", "net.slice2.5.weight", "net.slice5.28.weight", "lin4.model.1.weight",
            "scaling_layer.shift"} <= set(state)  # fmt: skip
    for i in range(5):  # LPIPS heads are non-negative; the package also stores them as lins.N
        state[f"lin{i}.model.1.weight"] = state[f"lin{i}.model.1.weight"].abs()
        state[f"lins.{i}.model.1.weight"] = state[f"lin{i}.model.1.weight"]
    torch.save(state, tmp_path / "lpips_vgg.pth")
    loss = LOSSES.create("lpips", weights=str(tmp_path / "lpips_vgg.pth"))
    model = vistok.create("conv2d-tiny").train()
    x = torch.rand(2, 3, 32, 32)
    out = model(x)
    assert loss(x, out) > 0
    same = out.__class__(**{**out.__dict__, "reconstruction": x.clone()})
    assert loss(x, same).abs() < 1e-6
