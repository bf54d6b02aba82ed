"""One-D-Piece: TiTok trained with tail-token drop, so that any prefix of its 256 tokens decodes.

Names: ``one-d-piece-s-256``, ``one-d-piece-b-256``, ``one-d-piece-l-256`` (ViT-S/B/L encoder and
decoder, 256 tokens, VQ 4096 x 12-d l2-normalized codes, 256x256 ImageNet). ``NAME@k`` and
``encode(..., num_tokens=k)`` keep the first ``k`` tokens.

Official source: ``turingmotors/One-D-Piece`` ``modeling/one_d_piece.py`` (``OneDPiece``, a
subclass of its copy of TiTok's ``modeling/titok.py``), configs ``configs/one-d-piece_*256.yaml``.
The architecture is legacy two-stage TiTok (:class:`vistok.models.zoo.titok.TiTok` with
``legacy=True``, reused here): the decoder predicts MaskGIT-VQGAN proxy-code logits that the
MaskGIT-VQGAN pixel decoder renders.

Prefix decoding, as the official code does it: ``decode(z, length=k)`` cuts the token map to
its first ``k`` tokens and runs the decoder on that shorter sequence (``strict_length_assertion:
False`` lets ``n <= 256`` tokens through), each token keeping its own positional embedding
``latent_token_positional_embedding[:k]``. Nothing pads or masks the tail: the dropped tokens
are simply absent from the decoder's sequence. In vistok ``Tokens.ids`` of ``k`` tokens decode
this way; a batch whose ``lengths`` differ decodes each length group on its own (the official
code cuts a whole batch to one length).

Checkpoint layout: ``turing-motors/One-D-Piece-{S,B,L}-256`` hold ``pytorch_model.bin``, the
bare state dict of ``OneDPiece`` (the official notebook downloads that file; keys as TiTok's,
MaskGIT pixel decoder included as ``pixel_decoder.*`` / ``pixel_quantize.*``). A folder (with a
``config.json``, checked as for TiTok) loads too.
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import Tensor

from vistok.models.zoo.titok import VIT_SIZES, TiTok
from vistok.registry import TOKENIZERS
from vistok.tokens import Tokens

__all__ = ["OneDPiece"]


@TOKENIZERS.register(
    "one-d-piece",
    doc="One-D-Piece (turingmotors/One-D-Piece): TiTok whose token prefixes decode; defaults: S-256.",
)
class OneDPiece(TiTok):
    """One-D-Piece: images ``[B, 3, S, S]`` in ``[0, 1]`` <-> ids ``[B, k]``, any ``1 <= k <= N``.

    Args: as :class:`vistok.models.zoo.titok.TiTok` (always legacy: MaskGIT proxy-code head and
    MaskGIT-VQGAN pixel decoder).
    """

    variable_length: ClassVar[bool] = True
    official: ClassVar[str] = "turingmotors/One-D-Piece modeling/one_d_piece.py"

    def __init__(
        self,
        *,
        image_size: int = 256,
        enc_patch_size: int = 16,
        dec_patch_size: int = 16,
        enc_width: int = 512,
        enc_depth: int = 8,
        enc_heads: int = 8,
        dec_width: int = 512,
        dec_depth: int = 8,
        dec_heads: int = 8,
        num_latent_tokens: int = 256,
        codebook_size: int = 4096,
        token_size: int = 12,
        use_l2_norm: bool = True,
        pixel_hidden_channels: int = 128,
        pixel_channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4),
        pixel_num_res_blocks: int = 2,
        pixel_z_channels: int = 256,
        pixel_codebook_size: int = 1024,
        weights: str | None = None,
        pretrained: bool = False,
        hub: str = "turing-motors/One-D-Piece-S-256/pytorch_model.bin",
    ) -> None:
        super().__init__(
            image_size=image_size, enc_patch_size=enc_patch_size, dec_patch_size=dec_patch_size,
            enc_width=enc_width, enc_depth=enc_depth, enc_heads=enc_heads, dec_width=dec_width,
            dec_depth=dec_depth, dec_heads=dec_heads, num_latent_tokens=num_latent_tokens,
            codebook_size=codebook_size, token_size=token_size, use_l2_norm=use_l2_norm, legacy=True,
            pixel_hidden_channels=pixel_hidden_channels, pixel_channel_mult=pixel_channel_mult,
            pixel_num_res_blocks=pixel_num_res_blocks, pixel_z_channels=pixel_z_channels,
            pixel_codebook_size=pixel_codebook_size, weights=weights, pretrained=pretrained, hub=hub,
        )  # fmt: skip

    @torch.no_grad()
    def decode(self, tokens: Tokens) -> Tensor:
        """:class:`Tokens` with ``ids [B, n]`` (``1 <= n <= N``; per-image ``lengths <= n`` when
        given) -> float ``[B, 3, S, S]`` in ``[0, 1]``, each image decoded from its prefix alone."""
        ids = tokens.ids
        n = 0 if ids is None or ids.ndim != 2 else ids.shape[1]
        if ids is None or not 1 <= n <= (self.max_tokens or 0):
            shape = None if ids is None else tuple(ids.shape)
            raise ValueError(
                f"{self.spec}: decode needs ids [B, n] with 1 <= n <= {self.max_tokens}, got {shape}"
            )
        lengths = tokens.lengths
        if lengths is None or bool((lengths == n).all()):
            return self.render(self.quantize.lookup(ids))
        lengths = lengths.to(ids.device)
        if bool((lengths < 1).any() or (lengths > n).any()):
            raise ValueError(f"{self.spec}: lengths must lie in 1..{n}, got {lengths.tolist()}")
        out = torch.empty(ids.shape[0], 3, self.input_size or 0, self.input_size or 0, device=ids.device)
        for k in lengths.unique().tolist():
            sel = lengths == k
            out[sel] = self.render(self.quantize.lookup(ids[sel, :k]))
        return out


for _name, _size in (
    ("one-d-piece-s-256", "small"),
    ("one-d-piece-b-256", "base"),
    ("one-d-piece-l-256", "large"),
):
    _w, _d, _h = VIT_SIZES[_size]
    TOKENIZERS.register_variant(
        _name, "one-d-piece", enc_width=_w, enc_depth=_d, enc_heads=_h, dec_width=_w, dec_depth=_d, dec_heads=_h,
        hub=f"turing-motors/One-D-Piece-{_size[0].upper()}-256/pytorch_model.bin",
        doc=f"One-D-Piece-{_size[0].upper()}-256: any prefix of its 256 VQ tokens decodes (NAME@k), 256x256.",
    )  # fmt: skip
