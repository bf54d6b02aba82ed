"""Tiny hosts for the reduction tests: random-weight transformers towers saved to and loaded
from local ``from_pretrained`` folders, and vistok's own encoders."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

transformers = pytest.importorskip("transformers")

_TINY = dict(
    hidden_size=32,
    num_hidden_layers=4,
    num_attention_heads=2,
    intermediate_size=64,
    image_size=64,
    patch_size=8,
)

_HF = {
    "vit": ("ViTConfig", "ViTModel"),
    "vit-cls": ("ViTConfig", "ViTForImageClassification"),
    "clip": ("CLIPVisionConfig", "CLIPVisionModel"),
    "clip-proj": ("CLIPVisionConfig", "CLIPVisionModelWithProjection"),
    "siglip": ("SiglipVisionConfig", "SiglipVisionModel"),
}


@pytest.fixture(autouse=True)
def _one_thread() -> Any:
    """Tiny models gain nothing from threads, and on a shared CPU they wait for them."""
    from vistok.utils.threads import torch_threads

    with torch_threads(1):
        yield


class _Folders:
    """Tiny random towers saved as local from_pretrained folders, made on first use."""

    def __init__(self, root: Path):
        self.root, self.paths, self.models = root, {}, {}

    def __getitem__(self, name: str) -> Path:
        if name not in self.paths:
            torch.manual_seed(0)
            cfg_cls, model_cls = _HF[name]
            model = getattr(transformers, model_cls)(getattr(transformers, cfg_cls)(**_TINY))
            self.paths[name] = self.root / name
            model.save_pretrained(self.paths[name])
        return self.paths[name]


@pytest.fixture(scope="session")
def hf_folders(tmp_path_factory: pytest.TempPathFactory) -> _Folders:
    return _Folders(tmp_path_factory.mktemp("hf"))


def load_hf(folders: _Folders, name: str, attn: str = "sdpa") -> nn.Module:
    cls = getattr(transformers, _HF[name][1])
    return cls.from_pretrained(folders[name], attn_implementation=attn).eval()


def hf_call(model: nn.Module, x: Tensor) -> Tensor:
    """The main output of a tower: logits, image embeds, or the pooled output."""
    out: Any = model(pixel_values=x)
    return (
        out[0]
        if not hasattr(out, "pooler_output")
        else torch.cat([out.last_hidden_state.flatten(1), out.pooler_output], 1)
    )


def vistok_host(name: str) -> tuple[nn.Module, Callable[[Tensor], Tensor]]:
    import vistok

    torch.manual_seed(0)
    tok = vistok.create(name).eval()
    return tok, tok.reconstruct


HF_HOSTS = [(n, a) for n in _HF for a in ("sdpa", "eager")]
VISTOK_HOSTS = ["vit2d-tiny", "latent1d-tiny"]
