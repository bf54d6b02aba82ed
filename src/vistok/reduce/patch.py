"""Patch a host's blocks in place (no class replacement) and undo it.

Each block's ``forward`` is replaced, on the instance only, by a composition of the
block's *own* submodules::

    x = x + drop(attn(norm1(x), bias))     # the host's attention (SDPA or eager, as configured)
    x = reduce(x)                          # only in blocks the plan reduces in
    x = x + drop(mlp(norm2(x)))

which is the host's own pre-norm arithmetic, so with nothing to reduce the output is
bit-identical to the unpatched model. ``bias`` is ``None`` (the host runs exactly as
before) until a merge makes sizes differ or a batch gets padding; then it is the additive
``[B, 1, 1, N]`` mask ``log(size)`` that both SDPA and eager attention accept.

Reducers that need keys or class-token attention read the q/k projection outputs through
forward hooks (no projection runs twice); the class-token row is one ``q_cls K^T``
product per reducing block, ``O(N D)`` next to the ``O(N^2 D)`` attention, which keeps its
fused kernel.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.hooks import RemovableHandle

from vistok.reduce._state import TokenState
from vistok.reduce.base import LayerContext, Reducer, square_grid
from vistok.reduce.hosts import Host, find_host, heads_layout, submodule

__all__ = ["ReductionHandle", "apply_reducer", "get_handle", "remove"]

_ATTR = "_vistok_reduction"


class ReductionHandle:
    """A live patch on one model. ``remove()`` restores it; ``state`` describes the last forward
    (``state.size [B, N]``: patches per output token, 0 on padding; None if all are 1)."""

    def __init__(self, model: nn.Module, host: Host, reducer: Reducer):
        self.model, self.host, self.reducer = model, host, reducer
        self.state: TokenState | None = None
        # (attention tokens, MLP tokens) per block in the last forward, padding included
        self.trace: list[tuple[int, int]] = []
        self._plans: dict[int, list[int]] = {}
        self._plan: list[int] = []
        self._capture = False
        self._captured: dict[str, Tensor] = {}
        self._hooks: list[RemovableHandle] = []
        lay = host.layout
        for i, layer in enumerate(host.layers):
            if "forward" in vars(layer):
                raise RuntimeError(f"vistok.reduce: block {i} of {type(model).__name__} is already patched")
            layer.forward = self._block_forward(i, layer)  # instance attribute; the class is untouched
            if reducer.needs:
                for key, path in (("q", lay.q), ("k", lay.k)):
                    self._hooks.append(submodule(layer, path).register_forward_hook(self._capture_hook(key)))
        for mod, kind in host.end_hooks:
            hook = self._restore_grid if kind == "restore_grid" else self._mha_mask
            self._hooks.append(mod.register_forward_pre_hook(hook, with_kwargs=True))

    # ---- hooks ------------------------------------------------------------------------------
    def _capture_hook(self, key: str) -> Any:
        def hook(_mod: nn.Module, _args: Any, out: Tensor) -> None:
            if self._capture:
                self._captured[key] = out

        return hook

    def _restore_grid(self, _mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        st = self.state
        if st is None or st.source is None or st.reductions == 0:
            return None
        x = args[0]
        return (x.gather(1, st.source[..., None].expand(-1, -1, x.shape[-1])), *args[1:]), kwargs

    def _mha_mask(self, _mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        st = self.state
        bias = None if st is None else st.bias(args[1].dtype if len(args) > 1 else torch.float32)
        if bias is None:
            return None
        return args, {**kwargs, "key_padding_mask": bias[:, 0, 0, :]}

    # ---- the patched block ------------------------------------------------------------------
    def _block_forward(self, i: int, layer: nn.Module) -> Any:
        lay = self.host.layout
        norm1, attn = submodule(layer, lay.norm1), submodule(layer, lay.attn)
        norm2, mlp = submodule(layer, lay.norm2), submodule(layer, lay.mlp)
        drop = submodule(layer, lay.dropout) if lay.dropout else None

        def forward(
            hidden_states: Tensor, attention_mask: Tensor | None = None, *args: Any, **kwargs: Any
        ) -> Tensor:
            x = hidden_states
            if i == 0:
                self._start(x)
            st = self.state
            assert st is not None, "vistok.reduce: block 0 did not run first"
            bias = st.bias(x.dtype)
            if bias is not None:
                if attention_mask is not None:
                    raise NotImplementedError("vistok.reduce: the host passed its own attention mask")
                attention_mask = bias
            remove = self._remove_at(i, x)
            self._capture = remove > 0 and bool(self.reducer.needs)
            h = attn(norm1(x), attention_mask, *args, **kwargs)
            if lay.attn_tuple:
                h = h[0]
            x = x + (drop(h) if drop is not None else h)
            n_attn = x.shape[1]
            if remove > 0:
                x = self._reduce(i, x, remove, bias)
            self.trace.append((n_attn, x.shape[1]))
            h = mlp(norm2(x))
            return x + (drop(h) if drop is not None else h)

        return forward

    def _start(self, x: Tensor) -> None:
        h = self.host
        self.state = TokenState(
            x, prefix=h.prefix, suffix=h.suffix, track_source=h.track_source, prop_attn=self.reducer.prop_attn
        )
        n = x.shape[1] - h.prefix - h.suffix
        if n not in self._plans:
            self._plans[n] = self.reducer.plan(n, len(h.layers))
        self._plan = self._plans[n]
        self.trace = []

    def _remove_at(self, i: int, x: Tensor) -> int:
        n = x.shape[1] - self.host.prefix - self.host.suffix
        return max(0, min(self._plan[i], n - 1))

    def _reduce(self, i: int, x: Tensor, remove: int, bias: Tensor | None) -> Tensor:
        st, h = self.state, self.host
        assert st is not None
        n = x.shape[1]
        sl = slice(h.prefix, n - h.suffix)
        keys = cls_attn = None
        if self.reducer.needs:
            k = heads_layout(self._captured.pop("k"), h.layout, h.num_heads)  # [B, H, N, Dh]
            q = heads_layout(self._captured.pop("q"), h.layout, h.num_heads)
            self._capture = False
            if "keys" in self.reducer.needs:
                keys = k.mean(1)[:, sl]
            if "cls_attn" in self.reducer.needs:
                cls_attn = self._cls_row(q, k, bias)[:, sl]
        size = st.sizes(x)[:, sl]
        grid = square_grid(n - h.prefix - h.suffix) if st.grid_intact else None
        ctx = LayerContext(x[:, sl], size, remove, i, keys=keys, cls_attn=cls_attn, grid=grid)
        return st.apply(x, self.reducer.reduce(ctx))

    def _cls_row(self, q: Tensor, k: Tensor, bias: Tensor | None) -> Tensor:
        """Attention of the reference query to every token, mean over heads: float ``[B, N]``.

        The reference query is the class token's (prefix) or, for hosts without one, the
        mean query of the protected latent tokens, or of all tokens. One row: ``O(N D)``.
        """
        h = self.host
        if h.prefix:
            qr = q[:, :, 0]
        elif h.suffix:
            qr = q[:, :, -h.suffix :].mean(2)
        else:
            qr = q.mean(2)
        logits = torch.einsum("bhd,bhnd->bhn", qr.float(), k.float()) * h.head_dim**-0.5
        if bias is not None:
            logits = logits + bias[:, :, 0].float()
        return logits.softmax(-1).mean(1)

    def remove(self) -> None:
        """Restore the model: blocks get their class ``forward`` back, hooks are removed."""
        for layer in self.host.layers:
            vars(layer).pop("forward", None)
        for hk in self._hooks:
            hk.remove()
        self._hooks.clear()
        if getattr(self.model, _ATTR, None) is self:
            delattr(self.model, _ATTR)


def apply_reducer(model: nn.Module, reducer: Reducer) -> ReductionHandle:
    """Patch ``model`` (see :func:`vistok.reduce.apply`)."""
    if get_handle(model) is not None:
        raise RuntimeError("vistok.reduce: model is already reduced; call vistok.reduce.remove(model) first")
    handle = ReductionHandle(model, find_host(model), reducer)
    object.__setattr__(model, _ATTR, handle)
    return handle


def get_handle(model: nn.Module) -> ReductionHandle | None:
    """The live patch on ``model``, or None."""
    return getattr(model, _ATTR, None)


def remove(model: nn.Module) -> None:
    """Undo :func:`vistok.reduce.apply` on ``model`` (a no-op when it is not patched)."""
    handle = get_handle(model)
    if handle is not None:
        handle.remove()
