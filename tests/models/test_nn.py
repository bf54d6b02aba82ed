"""vistok.nn blocks against naive references."""

from __future__ import annotations

import math

import pytest
import torch

from vistok.nn import (
    Attention,
    AttnBlock2d,
    Downsample,
    PosEmb1d,
    PosEmb2d,
    ResBlock,
    Transformer,
    Upsample,
    interpolate_grid,
    sincos_2d,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_attention_matches_naive_softmax():
    torch.manual_seed(0)
    att = Attention(32, 4)
    x = torch.randn(2, 7, 32)
    q, k, v = att.qkv(x).view(2, 7, 3, 4, 8).permute(2, 0, 3, 1, 4)
    w = (q @ k.transpose(-1, -2) / math.sqrt(8)).softmax(-1)
    ref = att.proj((w @ v).transpose(1, 2).reshape(2, 7, 32))
    torch.testing.assert_close(att(x), ref, atol=1e-5, rtol=1e-5)


def test_attention_rejects_bad_heads():
    with pytest.raises(ValueError, match="multiple of num_heads"):
        Attention(30, 4)


def test_transformer_features_and_shapes():
    t = Transformer(16, 3, 2)
    x = torch.randn(2, 5, 16)
    out, feats = t.forward_features(x, [0, -1])
    assert out.shape == x.shape and [f.shape for f in feats] == [x.shape, x.shape]
    torch.testing.assert_close(out, t(x))
    torch.testing.assert_close(t.norm(feats[1]), out)


def test_posemb2d_native_identity_and_interpolation():
    pe = PosEmb2d((4, 4), 16, "learned")
    assert pe(4, 4) is pe.table
    assert pe(8, 6).shape == (48, 16)
    # a constant table stays constant under interpolation
    const = torch.ones(16, 8)
    torch.testing.assert_close(interpolate_grid(const, (4, 4), (7, 3)), torch.ones(21, 8))
    # sin-cos at another grid: positions scaled into the native range (first row/col agree)
    sc = PosEmb2d((4, 4), 16, "sincos")
    assert not list(sc.parameters())
    torch.testing.assert_close(sc(8, 8)[0], sincos_2d(4, 4, 16)[0])
    with pytest.raises(ValueError, match="learned"):
        PosEmb2d((2, 2), 8, "rope")  # type: ignore[arg-type]


def test_posemb1d_prefix():
    pe = PosEmb1d(6, 8)
    assert pe(3).shape == (3, 8)
    with pytest.raises(ValueError, match="6"):
        pe(7)


def test_conv_blocks_shapes_and_identity_init():
    x = torch.randn(2, 8, 6, 6)
    torch.testing.assert_close(ResBlock(8)(x), x)  # zero-initialized second conv
    torch.testing.assert_close(AttnBlock2d(8, 2)(x), x)  # zero-initialized projection
    assert ResBlock(8, 16)(x).shape == (2, 16, 6, 6)
    assert Downsample(8)(x).shape == (2, 8, 3, 3)
    assert Upsample(8)(x).shape == (2, 8, 12, 12)
    xl = x.contiguous(memory_format=torch.channels_last)
    blk = ResBlock(8, 16).to(memory_format=torch.channels_last)
    torch.testing.assert_close(blk(xl), blk(x), atol=1e-5, rtol=1e-5)
