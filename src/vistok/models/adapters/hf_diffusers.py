"""diffusers autoencoders through the vistok contract.

``vistok.create("diffusers:stabilityai/sd-vae-ft-mse")`` wraps an ``AutoencoderKL``
(continuous: latents) or a ``VQModel`` (discrete: ids), from a hub repo or a local folder.
diffusers is imported only when such a tokenizer is created (``pip install vistok[diffusers]``).

Rates: ``AutoencoderKL`` latents are counted at float16 (16 bits per value, how latents are
usually stored for diffusion training); ``VQModel`` ids at log2(num_vq_embeddings) bits each.
The stride is ``2 ** (len(block_out_channels) - 1)``; any multiple is accepted.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import torch
from torch import Tensor

from vistok.registry import TOKENIZERS
from vistok.tokenizer import Tokenizer
from vistok.tokens import Tokens

__all__ = ["DiffusersKL", "DiffusersVQ"]

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def _diffusers() -> Any:
    try:
        import diffusers
    except ImportError:
        raise ImportError("the diffusers adapter needs `pip install vistok[diffusers]` (diffusers)") from None
    return diffusers


class _DiffusersBase(Tokenizer):
    def __init__(self, model: Any, source: str, dtype: torch.dtype):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.source = source
        self.dtype = dtype
        cfg = model.config
        self.stride = 2 ** (len(cfg.block_out_channels) - 1)

    def _in(self, images: Tensor) -> Tensor:
        self.check_input(images)
        return (images * 2 - 1).to(self.dtype)

    def _out(self, x: Tensor) -> Tensor:
        return ((x.float() + 1) / 2).clamp(0, 1)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["adapter"] = {
            "library": "diffusers",
            "class": type(self.model).__name__,
            "source": self.source,
            "dtype": str(self.dtype).replace("torch.", ""),
            "model_config": {
                k: v
                for k, v in dict(self.model.config).items()
                if isinstance(v, (int, float, str, bool, list, tuple, type(None)))
            },
        }
        return d


class DiffusersKL(_DiffusersBase):
    """``AutoencoderKL``: latents ``[B, C, h, w]`` (posterior mode, or a sample)."""

    kind = "continuous"

    def __init__(self, model: Any, source: str, dtype: torch.dtype, sample: bool, seed: int):
        super().__init__(model, source, dtype)
        self.sample = sample
        self.seed = seed

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        self.check_num_tokens(num_tokens)
        dist = self.model.encode(self._in(images)).latent_dist
        if self.sample:
            g = torch.Generator(device=images.device).manual_seed(self.seed)
            z = dist.mean + dist.std * torch.randn(
                dist.mean.shape, generator=g, device=images.device, dtype=dist.mean.dtype
            )
        else:
            z = dist.mode()
        z = z.to(torch.float16)
        bits = torch.full((z.shape[0],), 16.0 * z[0].numel(), dtype=torch.float64)
        return Tokens(bits=bits, latents=z, meta={"latent_dtype": "float16"})

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        assert tokens.latents is not None
        return self._out(self.model.decode(tokens.latents.to(self.dtype)).sample)


class DiffusersVQ(_DiffusersBase):
    """``VQModel``: ids ``[B, h, w]`` into ``num_vq_embeddings`` codes."""

    kind = "discrete"

    def __init__(self, model: Any, source: str, dtype: torch.dtype):
        super().__init__(model, source, dtype)
        self.vocab_size = int(model.config.num_vq_embeddings)

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        self.check_num_tokens(num_tokens)
        h = self.model.encode(self._in(images)).latents
        _, _, info = self.model.quantize(h)
        b, _, hh, ww = h.shape
        ids = info[2].reshape(b, hh, ww).long()
        bits = torch.full((b,), hh * ww * math.log2(self.vocab_size), dtype=torch.float64)
        return Tokens(bits=bits, ids=ids, meta={"latent_channels": int(h.shape[1])})

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        ids = tokens.ids
        assert ids is not None
        q = self.embed(ids).permute(0, 3, 1, 2).contiguous().to(self.dtype)
        return self._out(self.model.decode(q, force_not_quantize=True).sample)

    def embed(self, ids: Tensor) -> Tensor:
        """Code vectors ``[..., C]`` of ids ``[...]``."""
        return self.model.quantize.embedding.weight[ids]

    @property
    def has_neighbours(self) -> bool:
        return True

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codebook entries of each id: long ``[..., k]``."""
        w = self.model.quantize.embedding.weight.float()
        d = torch.cdist(w, w)
        d.fill_diagonal_(float("inf"))
        table = d.topk(min(k, w.shape[0] - 1), largest=False).indices
        return table[ids]


@TOKENIZERS.register("diffusers", positional="model")
def diffusers_tokenizer(
    *,
    model: str = "",
    subfolder: str | None = None,
    dtype: Literal["float32", "float16", "bfloat16"] = "float32",
    sample: bool = False,
    seed: int = 0,
    revision: str | None = None,
) -> Tokenizer:
    """A diffusers AutoencoderKL (continuous) or VQModel (discrete), from a hub repo or folder."""
    if not model:
        raise ValueError("diffusers needs a model: diffusers:ORG/NAME or diffusers:model=/local/folder")
    lib = _diffusers()
    torch_dtype = _DTYPES[dtype]
    kwargs: dict[str, Any] = {"torch_dtype": torch_dtype}
    if subfolder:
        kwargs["subfolder"] = subfolder
    if revision:
        kwargs["revision"] = revision
    try:
        config = lib.AutoencoderKL.load_config(
            model, **{k: v for k, v in kwargs.items() if k != "torch_dtype"}
        )
    except Exception as e:  # offline, missing repo, not a diffusers folder
        raise ValueError(f"{model}: cannot read a diffusers config ({type(e).__name__}: {e})") from None
    cls_name = config.get("_class_name", "AutoencoderKL")
    if cls_name == "VQModel":
        return DiffusersVQ(lib.VQModel.from_pretrained(model, **kwargs), model, torch_dtype)
    if cls_name == "AutoencoderKL":
        return DiffusersKL(
            lib.AutoencoderKL.from_pretrained(model, **kwargs), model, torch_dtype, sample, seed
        )
    raise ValueError(f"{model}: unsupported diffusers class {cls_name!r} (AutoencoderKL or VQModel)")
