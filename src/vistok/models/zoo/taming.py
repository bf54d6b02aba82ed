"""taming-transformers' VQGAN (Esser, Rombach & Ommer, CVPR 2021): the first-stage ImageNet f16 models.

Names:

* ``taming-f16-1024``: ``vqgan_imagenet_f16_1024`` (1024 codes of 256 dims, 16x16 tokens at 256);
* ``taming-f16-16384``: ``vqgan_imagenet_f16_16384`` (16384 codes);
* ``taming-vqgan``: the architecture with every hyper-parameter a spec key.

Official source: ``CompVis/taming-transformers``, ``taming/models/vqgan.py`` (``VQModel``),
``taming/modules/diffusionmodules/model.py`` (``Encoder``/``Decoder``: here
:mod:`vistok.models.zoo._taming_codec`) and ``taming/modules/vqvae/quantize.py``
(``VectorQuantizer2``, imported by ``vqgan.py`` as ``VectorQuantizer``). Both releases use
``configs/imagenet_vqgan.yaml``'s encoder/decoder: ``ch=128``, ``ch_mult=[1,1,2,2,4]``,
``num_res_blocks=2``, ``attn_resolutions=[16]``, ``z_channels=embed_dim=256``,
``resolution=256``, ``double_z=False``, dropout 0.

Checkpoint: the PyTorch Lightning ``last.ckpt`` of training, ``{"state_dict": {...}, "epoch",
"global_step", "optimizer_states", "callbacks", ...}``, read without unpickling any of its
classes (:func:`vistok.utils.checkpoints.read_pickle`). The state dict holds the model under
its own key names (``encoder.*``, ``decoder.*``, ``quant_conv.*``, ``post_quant_conv.*``,
``quantize.embedding.weight``) and the training loss (``loss.*``: the LPIPS network and the
patch discriminator), which is dropped (:attr:`TamingVQGAN.ignore_keys`). The key map is the
identity.

Numerics: images ``[0, 1]`` are mapped to the ``[-1, 1]`` the models were trained on; the
quantizer picks ``argmin_j |z|^2 + |e_j|^2 - 2 z.e_j`` per position, as ``VectorQuantizer2``
does (same expression, so ties break alike); its ``legacy`` beta (the commitment weight applied
to the codebook term) only changes the training loss, and ``remap``/``sane_index_shape`` are
off in these releases, so the ids are plain row-major indices into ``quantize.embedding``:
``[B, h, w]`` here (the official code returns them flattened to ``[B*h*w]``). Attention uses
``scaled_dot_product_attention`` instead of the explicit ``bmm``/softmax (same maths).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor, nn

from vistok.models.zoo._base import PublishedTokenizer
from vistok.models.zoo._taming_codec import Decoder, Encoder
from vistok.quantize._search import code_neighbours
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens

__all__ = ["TamingVQGAN", "VectorQuantizer"]


class VectorQuantizer(nn.Module):
    """Nearest-neighbour codebook lookup of taming's ``VectorQuantizer2`` (inference part).

    Args:
        n_embed: codebook size ``K``.
        embed_dim: code dimension ``C``.
    """

    def __init__(self, n_embed: int, embed_dim: int) -> None:
        super().__init__()
        self.n_embed, self.embed_dim = n_embed, embed_dim
        self.embedding = nn.Embedding(n_embed, embed_dim)

    @staticmethod
    def _distances(z: Tensor, e: Tensor) -> Tensor:
        """``[N, C]``, ``[K, C]`` -> squared L2 ``[N, K]`` written as taming writes it."""
        return torch.sum(z**2, dim=1, keepdim=True) + torch.sum(e**2, dim=1) - 2 * (z @ e.t())

    def codes(self, z: Tensor) -> Tensor:
        """Latent map ``[B, C, h, w]`` -> ids long ``[B, h, w]`` (index of the nearest code)."""
        b, c, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, c)
        return self._distances(flat, self.embedding.weight).argmin(dim=1).view(b, h, w)

    def lookup(self, ids: Tensor) -> Tensor:
        """ids ``[B, h, w]`` -> code map ``[B, C, h, w]``."""
        return self.embedding(ids).permute(0, 3, 1, 2).contiguous()

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes (squared L2 between code vectors) of each id: ``[...] -> [..., k]``."""
        return code_neighbours(self.embedding.weight, ids, k)


@TOKENIZERS.register(
    "taming-vqgan",
    doc="taming-transformers VQGAN (Esser et al. 2021): f16 conv encoder/decoder + one codebook; reads the official Lightning .ckpt",
)
class TamingVQGAN(PublishedTokenizer):
    """taming-transformers ``VQModel``: images ``[B, 3, H, W]`` in ``[0, 1]`` <-> ids ``[B, H/s, W/s]``.

    ``s = 2 ** (len(ch_mult) - 1)`` (16 for the releases); ``H`` and ``W`` must be multiples
    of it. Rate: ``h * w * log2(n_embed)`` bits per image.

    Args:
        ch, ch_mult, num_res_blocks, attn_resolutions, resolution, z_channels, dropout,
            resamp_with_conv: the official ``ddconfig`` (see :class:`~._taming_codec.Encoder`).
        embed_dim: code dimension (``quant_conv`` maps ``z_channels`` -> ``embed_dim``).
        n_embed: codebook size.
        groups: GroupNorm groups (32 in the releases; the parity fixtures use fewer to stay small).
        weights: the official ``.ckpt`` (or a bare ``{name: tensor}`` file) to load.
        pretrained: fetch ``hub`` with huggingface_hub instead.
        hub: ``ORG/REPO/FILE`` of a mirror of the release (the originals are on heibox).
    """

    kind = "discrete"
    variable_length = False
    formats = "PyTorch Lightning .ckpt (taming-transformers last.ckpt, 'state_dict'), or a bare state dict / safetensors"
    official = "CompVis/taming-transformers taming/models/vqgan.py"
    state_keys: ClassVar[tuple[str, ...]] = ("state_dict",)
    ignore_keys: ClassVar[tuple[str, ...]] = (r"loss\.",)

    def __init__(
        self,
        *,
        ch: int = 128,
        ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        num_res_blocks: int = 2,
        attn_resolutions: tuple[int, ...] = (16,),
        resolution: int = 256,
        z_channels: int = 256,
        embed_dim: int = 256,
        n_embed: int = 1024,
        dropout: float = 0.0,
        resamp_with_conv: bool = True,
        groups: int = 32,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "Nehc/vqgan_imagenet_f16_1024/ckpts/last.ckpt",
    ) -> None:
        super().__init__()
        if not ch_mult:
            raise ValueError("ch_mult needs at least one level")
        dd = dict(
            ch=ch,
            ch_mult=tuple(ch_mult),
            num_res_blocks=num_res_blocks,
            attn_resolutions=tuple(attn_resolutions),
            resolution=resolution,
            z_channels=z_channels,
            dropout=dropout,
            resamp_with_conv=resamp_with_conv,
            groups=groups,
        )
        self.encoder = Encoder(**dd)
        self.decoder = Decoder(**dd)
        self.quantize = VectorQuantizer(n_embed, embed_dim)
        self.quant_conv = nn.Conv2d(z_channels, embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, z_channels, 1)
        self.stride = 2 ** (len(ch_mult) - 1)
        self.vocab_size = n_embed
        self.max_tokens = (resolution // self.stride) ** 2
        self.load_official(weights=weights, pretrained=pretrained, hub=hub)

    # ---- the codebook ----------------------------------------------------------------------
    @property
    def has_neighbours(self) -> bool:
        return True

    def embed(self, ids: Tensor) -> Tensor:
        """Code vectors of ids: long ``[...]`` -> float ``[..., embed_dim]``."""
        return self.quantize.embedding(ids)

    def neighbours(self, ids: Tensor, k: int) -> Tensor:
        """The ``k`` nearest other codes of each id (the quantizer's squared L2): ``[...] -> [..., k]``."""
        return self.quantize.neighbours(ids, k)

    # ---- the contract ----------------------------------------------------------------------
    def latent(self, images: Tensor) -> Tensor:
        """The pre-quantization map ``quant_conv(encoder(x))``: ``[B, 3, H, W]`` in ``[0, 1]`` -> ``[B, embed_dim, h, w]``."""
        return self.quant_conv(self.encoder(self.to_model(images)))

    @torch.no_grad()
    def encode(self, images: Tensor, *, num_tokens: int | None = None) -> Tokens:
        """Images ``[B, 3, H, W]`` in ``[0, 1]`` -> ``Tokens(ids=[B, H/s, W/s])``."""
        self.check_input(images)
        self.check_num_tokens(num_tokens)
        ids = self.quantize.codes(self.latent(images))
        b, h, w = ids.shape
        return Tokens(ids=ids, bits=self.rate(b, h * w, self.index_bits(self.quantize.n_embed)))

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """``Tokens(ids=[B, h, w])`` -> images ``[B, 3, h*s, w*s]`` in ``[0, 1]``."""
        if tokens.ids is None:
            raise ValueError(f"{self.spec}: decode needs ids")
        return self.from_model(self.decoder(self.post_quant_conv(self.quantize.lookup(tokens.ids))))


_RELEASE = "official taming-transformers release (heibox), through a Hugging Face mirror"
TOKENIZERS.register_variant(
    "taming-f16-1024",
    "taming-vqgan",
    doc=f"VQGAN ImageNet f16, 1024 codes (256 tokens at 256x256, 10 bits each); {_RELEASE}",
    n_embed=1024,
    hub="Nehc/vqgan_imagenet_f16_1024/ckpts/last.ckpt",
)
TOKENIZERS.register_variant(
    "taming-f16-16384",
    "taming-vqgan",
    doc=f"VQGAN ImageNet f16, 16384 codes (256 tokens at 256x256, 14 bits each); {_RELEASE}",
    n_embed=16384,
    hub="Somnai/pytti-vqgan-checkpoints/imagenet/imagenet.ckpt",
)
