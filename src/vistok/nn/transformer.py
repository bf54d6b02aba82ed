"""Pre-norm transformer blocks (ViT layout): ``x + attn(norm(x))``, ``x + mlp(norm(x))``."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from vistok.nn.attention import MLP, Attention

__all__ = ["Transformer", "TransformerBlock", "init_weights"]


class TransformerBlock(nn.Module):
    """One pre-norm block on tokens ``[B, L, D]``."""

    def __init__(self, dim: int, num_heads: int, *, mlp_ratio: float = 4.0, qk_norm: bool = False):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qk_norm=qk_norm)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


class Transformer(nn.Module):
    """``depth`` pre-norm blocks followed by a final LayerNorm.

    Args:
        dim: token width.
        depth: number of blocks.
        num_heads: attention heads per block.
        mlp_ratio: MLP hidden width / ``dim``.
        qk_norm: LayerNorm on queries and keys.
    """

    def __init__(
        self, dim: int, depth: int, num_heads: int, *, mlp_ratio: float = 4.0, qk_norm: bool = False
    ):
        super().__init__()
        self.blocks = nn.ModuleList(
            TransformerBlock(dim, num_heads, mlp_ratio=mlp_ratio, qk_norm=qk_norm) for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: Tensor, attn_mask: Tensor | None = None) -> Tensor:
        """``x``: ``[B, L, D]`` -> normalized ``[B, L, D]``."""
        for blk in self.blocks:
            x = blk(x, attn_mask)
        return self.norm(x)

    def forward_features(
        self, x: Tensor, layers: Sequence[int], attn_mask: Tensor | None = None
    ) -> tuple[Tensor, list[Tensor]]:
        """Like :meth:`forward`, also returning the (un-normalized) outputs of blocks
        ``layers`` (0-based; negative counts from the end), each ``[B, L, D]``."""
        want = {i % len(self.blocks) for i in layers} if len(self.blocks) else set()
        feats: dict[int, Tensor] = {}
        for i, blk in enumerate(self.blocks):
            x = blk(x, attn_mask)
            if i in want:
                feats[i] = x
        return self.norm(x), [feats[i % len(self.blocks)] for i in layers] if feats else []


def init_weights(module: nn.Module) -> None:
    """ViT initialization: truncated-normal (std 0.02) linears with zero bias, unit LayerNorm.

    Apply with ``model.apply(init_weights)``.
    """
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        if module.weight is not None:
            nn.init.ones_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
