"""Shared neural-network blocks: attention (SDPA), transformer blocks, position embeddings, conv blocks."""

from vistok.nn.attention import MLP, Attention
from vistok.nn.conv import AttnBlock2d, Downsample, ResBlock, Upsample, group_norm
from vistok.nn.posemb import PosEmb1d, PosEmb2d, interpolate_grid, sincos_1d, sincos_2d
from vistok.nn.transformer import Transformer, TransformerBlock, init_weights

__all__ = [
    "MLP",
    "Attention",
    "AttnBlock2d",
    "Downsample",
    "PosEmb1d",
    "PosEmb2d",
    "ResBlock",
    "Transformer",
    "TransformerBlock",
    "Upsample",
    "group_norm",
    "init_weights",
    "interpolate_grid",
    "sincos_1d",
    "sincos_2d",
]
