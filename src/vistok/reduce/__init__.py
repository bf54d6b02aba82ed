"""Token reduction for ViT encoders: merge, prune or pool tokens inside the blocks.

Methods (one file each): ``tome`` (ToMe), ``evit`` (EViT), ``divprune`` (DivPrune),
``kcenter`` (greedy k-center), ``dymu`` (DyMU-style threshold merging, variable count),
``matryoshka`` (M3 nested pooling), and the baselines ``random`` and ``pool``.

Hosts: Hugging Face ``transformers`` (>= 5) ``ViTModel``/``ViTForImageClassification``,
``CLIPVisionModel``/``CLIPVisionModelWithProjection``, ``SiglipVisionModel``; vistok's
``vit2d`` encoder (the grid is restored before the latent projection) and the ``latent1d``
and ``latent1d-grid`` encoders (patch tokens reduced, latent tokens never).

Example::

    import vistok.reduce as vr
    handle = vr.apply(model, "tome", r=13)      # or keep=0.5, or "tome:keep=0.5"
    out = model(pixel_values)                   # fewer tokens; handle.state.size tells how many patches each is
    vr.remove(model)                            # the model is as before

Importing this package does not import ``transformers``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from vistok.reduce import divprune, dymu, evit, hosts, kcenter, matryoshka, pool, random_prune, tome  # noqa: F401
from vistok.reduce.base import REDUCERS, LayerContext, Reducer
from vistok.reduce.patch import ReductionHandle, apply_reducer, get_handle, remove

__all__ = [
    "REDUCERS",
    "LayerContext",
    "Reducer",
    "ReductionHandle",
    "apply",
    "get_handle",
    "list_methods",
    "remove",
]


def apply(model: nn.Module, method: str | Reducer, **options: Any) -> ReductionHandle:
    """Patch ``model``'s blocks in place to reduce tokens with ``method``.

    Args:
        model: a supported host (see the module docstring).
        method: a registered name, optionally with options (``"tome:r=13"``), or a
            :class:`Reducer` instance.
        **options: the method's options (``keep=0.5``, ``r=13``, ``at=1`` ...).

    Returns:
        A :class:`ReductionHandle`; ``handle.remove()`` (or :func:`remove`) undoes the patch.
    """
    reducer = method if isinstance(method, Reducer) else REDUCERS.create(method, **options)
    return apply_reducer(model, reducer)


def list_methods() -> list[str]:
    """Names of the registered reduction methods."""
    return REDUCERS.names()
