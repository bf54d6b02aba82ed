"""Where the blocks are: one entry per host family, found by matching the model.

A host says which modules of a block are its two norms, its attention and its MLP (the
patched block calls exactly those modules, so LayerScale-free pre-norm hosts keep their
own arithmetic), where the query and key projections are (their outputs are read by
forward hooks, so no projection runs twice), how many protected tokens the sequence has
at the front (class token) and back (latent tokens), and which end-of-encoder hooks it
needs (restoring the patch grid, masking an attention-pooling head).

``transformers`` is never imported here: Hugging Face models are matched by their config's
``model_type`` and their layer class names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from torch import Tensor, nn

__all__ = ["HOSTS", "BlockLayout", "Host", "find_host"]


@dataclass(frozen=True)
class BlockLayout:
    """Names of a pre-norm block's submodules: ``x + drop(attn(norm1(x))); x + drop(mlp(norm2(x)))``.

    Attributes:
        qk: ``"tokens"`` when the q/k hook outputs are ``[B, N, H*Dh]`` (separate linear
            projections), ``"heads"`` when they are ``[B, H, N, Dh]`` (after a head split).
        attn_tuple: the attention returns ``(output, weights)``.
    """

    norm1: str
    attn: str
    norm2: str
    mlp: str
    q: str
    k: str
    qk: Literal["tokens", "heads"]
    attn_tuple: bool
    dropout: str | None = None


@dataclass
class Host:
    """A model's blocks and what the patch needs to know about them."""

    name: str
    layers: list[nn.Module]
    layout: BlockLayout
    num_heads: int
    head_dim: int
    prefix: int = 0
    suffix: int = 0
    track_source: bool = False
    # (module, kind) pairs for end-of-encoder hooks: "restore_grid" (forward pre-hook that
    # puts every input token back in its grid position) or "mha_mask" (pass the size bias
    # to an nn.MultiheadAttention pooling head as key_padding_mask)
    end_hooks: list[tuple[nn.Module, str]] = field(default_factory=list)


@dataclass(frozen=True)
class _HostEntry:
    name: str
    match: Callable[[nn.Module], bool]
    build: Callable[[nn.Module], Host]


HOSTS: list[_HostEntry] = []


def register_host(name: str, match: Callable[[nn.Module], bool]) -> Callable[..., Any]:
    """Decorator adding a host builder, tried in registration order."""

    def deco(fn: Callable[[nn.Module], Host]) -> Callable[[nn.Module], Host]:
        HOSTS.append(_HostEntry(name, match, fn))
        return fn

    return deco


def find_host(model: nn.Module) -> Host:
    """The first registered host that matches ``model``; a clear error otherwise."""
    for entry in HOSTS:
        if entry.match(model):
            return entry.build(model)
    supported = ", ".join(e.name for e in HOSTS)
    raise TypeError(f"vistok.reduce: no host matches {type(model).__name__}; supported: {supported}")


# ---- Hugging Face transformers (>= 5: one attention module with q/k/v projections) ---------
_HF_LAYOUT = {
    "vit": (
        "ViTLayer",
        BlockLayout("layernorm_before", "attention", "layernorm_after", "mlp", "attention.q_proj",
                    "attention.k_proj", "tokens", True, dropout="dropout"),
        1,
    ),
    "clip_vision_model": (
        "CLIPEncoderLayer",
        BlockLayout("layer_norm1", "self_attn", "layer_norm2", "mlp", "self_attn.q_proj",
                    "self_attn.k_proj", "tokens", True),
        1,
    ),
    "siglip_vision_model": (
        "SiglipEncoderLayer",
        BlockLayout("layer_norm1", "self_attn", "layer_norm2", "mlp", "self_attn.q_proj",
                    "self_attn.k_proj", "tokens", True),
        0,
    ),
}  # fmt: skip


def _hf_type(model: nn.Module) -> str | None:
    cfg = getattr(model, "config", None)
    t = getattr(cfg, "model_type", None)
    return t if t in _HF_LAYOUT else None


def _layer_list(model: nn.Module, cls_name: str) -> list[nn.Module]:
    for mod in model.modules():
        if isinstance(mod, nn.ModuleList) and len(mod) and type(mod[0]).__name__ == cls_name:
            return list(mod)
    raise TypeError(f"vistok.reduce: {type(model).__name__} has no list of {cls_name} blocks")


@register_host("transformers (ViT, CLIP vision, SigLIP vision)", lambda m: _hf_type(m) is not None)
def _hf_host(model: nn.Module) -> Host:
    t = _hf_type(model)
    assert t is not None
    cls_name, layout, prefix = _HF_LAYOUT[t]
    layers = _layer_list(model, cls_name)
    cfg: Any = model.config
    heads = int(cfg.num_attention_heads)
    ends = [
        (m.attention, "mha_mask")
        for m in model.modules()
        if type(m).__name__ == "SiglipMultiheadAttentionPoolingHead"
    ]
    return Host(f"transformers:{t}", layers, layout, heads, cfg.hidden_size // heads, prefix=prefix,
                end_hooks=ends)  # fmt: skip


# ---- vistok's own transformer encoders -------------------------------------------------------
_VISTOK_LAYOUT = BlockLayout("norm1", "attn", "norm2", "mlp", "attn.q_norm", "attn.k_norm", "heads", False)


def _vistok_kind(model: nn.Module) -> str | None:
    from vistok.models.latent1d import Latent1dTokenizer
    from vistok.models.latent1d_grid import Latent1dGridTokenizer
    from vistok.models.vit2d import ViT2dTokenizer

    kinds = {ViT2dTokenizer: "vit2d", Latent1dTokenizer: "latent1d", Latent1dGridTokenizer: "latent1d-grid"}
    return next((v for k, v in kinds.items() if isinstance(model, k)), None)


@register_host("vistok (vit2d, latent1d, latent1d-grid encoders)", lambda m: _vistok_kind(m) is not None)
def _vistok_host(model: Any) -> Host:
    kind = _vistok_kind(model)
    enc = model.encoder
    attn = enc.blocks[0].attn
    if kind == "vit2d":
        # the quantizer and decoder read a full grid: put every token back where it came from
        return Host("vistok:vit2d", list(enc.blocks), _VISTOK_LAYOUT, attn.num_heads, attn.head_dim,
                    track_source=True, end_hooks=[(enc.norm, "restore_grid")])  # fmt: skip
    # 1D tokenizers: patch/grid tokens first, then the latent tokens, which are never reduced
    return Host(f"vistok:{kind}", list(enc.blocks), _VISTOK_LAYOUT, attn.num_heads, attn.head_dim,
                suffix=int(model.num_latent))  # fmt: skip


def submodule(root: nn.Module, path: str) -> nn.Module:
    """``root.a.b`` for ``path="a.b"``."""
    mod = root
    for part in path.split("."):
        mod = getattr(mod, part)
    return mod


def heads_layout(t: Tensor, layout: BlockLayout, num_heads: int) -> Tensor:
    """A q/k hook output as ``[B, H, N, Dh]``."""
    if layout.qk == "heads":
        return t
    b, n, _ = t.shape
    return t.view(b, n, num_heads, -1).transpose(1, 2)
