"""The prior contract, its registry, and save/load (``config.json`` + ``model.safetensors``).

Every prior models one :class:`~vistok.prior.space.TokenSpace` and offers

* ``loss(ids, lengths=None, labels=None)`` -> scalar training loss (nats per predicted token);
* ``sample(n, ...)`` -> long ids ``[n, *token_shape]`` (a 1D sequence cut at ``num_tokens``);
* ``log_prob(ids, lengths, labels)`` -> nats per item ``[B]`` when ``exact_likelihood``
  (the AR prior; MaskGIT's training loss is not a likelihood, so it declares ``False``).

A prior is built by name, ``create_prior("ar:dim=256,depth=6", space)``; its architecture
parameters are declared once, on the registered factory, and read by the registry.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import Tensor, nn

from vistok.configurable import Configurable
from vistok.prior.sampling import SamplingConfig
from vistok.prior.space import TokenSpace
from vistok.registry import Registry, SpecError
from vistok.utils.io import atomic_write_bytes, atomic_write_text

__all__ = [
    "PRIORS",
    "Prior",
    "PriorCheckpointError",
    "create_prior",
    "load_prior",
    "register_prior",
    "save_prior",
]

PRIORS: Registry[Any] = Registry("prior", context=("space",))  # space: what the prior models
FORMAT = "vistok.prior/1"
CONFIG_NAME, WEIGHTS_NAME = "config.json", "model.safetensors"


class PriorCheckpointError(ValueError):
    """A prior folder that cannot be loaded; the message names the file and the reason."""


class Prior(Configurable, nn.Module):
    """Base class: the space, the class-condition table, and the shared pieces of the contract.

    Args:
        space: what is generated.
        dim: model width.
        num_classes: ``0`` for unconditional; else labels in ``[0, num_classes)``. Row
            ``num_classes`` of the condition table is the null (unconditional) label, used for
            the start token, for label dropout in training and for classifier-free guidance.
        class_dropout: training labels replaced by the null label with this probability.
    """

    exact_likelihood: ClassVar[bool] = False
    config_exclude: ClassVar[tuple[str, ...]] = ("space",)

    def __init__(self, space: TokenSpace, dim: int, num_classes: int, class_dropout: float):
        super().__init__()
        if num_classes < 0 or not 0.0 <= class_dropout < 1.0:
            raise ValueError(
                f"need num_classes >= 0 and 0 <= class_dropout < 1, got {num_classes}, {class_dropout}"
            )
        self.space = space
        self.num_classes = num_classes
        self.class_dropout = class_dropout
        self.cond = nn.Embedding(num_classes + 1, dim)
        nn.init.normal_(self.cond.weight, std=0.02)

    @property
    def positions(self) -> int:
        return self.space.positions

    def condition_index(self, n: int, labels: Tensor | None, device: torch.device, *, train: bool) -> Tensor:
        """Rows of the condition table ``[n]``: the labels, the null label where absent or dropped."""
        null = torch.full((n,), self.num_classes, dtype=torch.long, device=device)
        if labels is None or self.num_classes == 0:
            return null
        labels = labels.to(device).long()
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise ValueError(
                f"labels must lie in [0, {self.num_classes}), got [{int(labels.min())}, {int(labels.max())}]"
            )
        if train and self.class_dropout > 0:
            labels = torch.where(torch.rand(n, device=device) < self.class_dropout, null, labels)
        return labels

    def guidance(self, labels: Tensor | None, cfg_scale: float) -> bool:
        """Whether sampling runs a guided (doubled) batch."""
        return labels is not None and self.num_classes > 0 and cfg_scale != 1.0

    @staticmethod
    def guide_fn(n: int, scale: float) -> Any:
        """Logits of ``[2n, V]`` rows (conditional first) -> guided ``[n, V]``."""

        def guide(logits: Tensor) -> Tensor:
            c, u = logits[:n], logits[n:]
            return u + scale * (c - u)

        return guide

    def valid_mask(self, lengths: Tensor | None, n: int, length: int, device: torch.device) -> Tensor:
        """bool ``[n, length]``: True at positions ``< lengths`` (all True without lengths)."""
        if lengths is None:
            return torch.ones(n, length, dtype=torch.bool, device=device)
        return torch.arange(length, device=device)[None, :] < lengths.to(device)[:, None]

    def num_positions(self, num_tokens: int | None) -> int:
        """Positions to sample: ``num_tokens`` (1D sequences) or all of them."""
        if num_tokens is None:
            return self.positions
        if self.space.layout != "sequence" or not 1 <= num_tokens <= self.positions:
            raise ValueError(
                f"num_tokens={num_tokens}: only 1D sequences can be sampled shorter, at 1..{self.positions}"
            )
        return num_tokens

    # ---- contract ---------------------------------------------------------------------
    def forward(self, ids: Tensor, lengths: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        """The training loss (what DDP wraps): :meth:`loss`."""
        return self.loss(ids, lengths, labels)

    def loss(self, ids: Tensor, lengths: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def log_prob(self, ids: Tensor, lengths: Tensor | None = None, labels: Tensor | None = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no exact likelihood")

    def sample(
        self,
        n: int,
        *,
        num_tokens: int | None = None,
        labels: Tensor | None = None,
        cfg_scale: float = 1.0,
        sampling: SamplingConfig = SamplingConfig(),
        generator: torch.Generator | None = None,
    ) -> Tensor:
        raise NotImplementedError


P = TypeVar("P", bound=type)


def register_prior(name: str) -> Callable[[P], P]:
    """Class decorator: register a :class:`Prior` subclass under ``name``.

    The registry reads the keyword parameters (types and defaults) of the class's
    ``__init__(self, space, *, ...)``, so they are declared once; ``space`` is context,
    passed by :func:`create_prior` and saved beside the config, not in it.
    """

    def deco(cls: P) -> P:
        if not (isinstance(cls, type) and issubclass(cls, Prior)):
            raise TypeError(f"register_prior({name!r}): {cls!r} is not a Prior subclass")
        return PRIORS.register(name)(cls)  # type: ignore[return-value]

    return deco


def create_prior(spec: str, space: TokenSpace, **overrides: Any) -> Prior:
    """Build a prior by name (``"ar"``, ``"maskgit:steps=8"``) for ``space``."""
    import vistok.prior.ar
    import vistok.prior.maskgit  # noqa: F401

    if not isinstance(space, TokenSpace):
        raise ValueError(f"prior {spec!r} needs a TokenSpace: create_prior(spec, space)")
    return PRIORS.create(spec, space=space, **overrides)  # type: ignore[no-any-return]


def save_prior(prior: Prior, directory: str | Path, *, extra: dict[str, Any] | None = None) -> Path:
    """Write ``config.json`` (format, name, space, architecture, ``extra``) and
    ``model.safetensors`` into ``directory``, each atomically."""
    from safetensors.torch import save

    import vistok

    directory = Path(directory)
    state = {k: v.detach().cpu().contiguous() for k, v in prior.state_dict().items()}
    cfg = {
        "format": FORMAT,
        "vistok_version": vistok.__version__,
        "name": prior.registry_name,  # type: ignore[attr-defined]
        "space": prior.space.to_json(),
        "config": prior.config,
        **(extra or {}),
    }
    atomic_write_bytes(directory / WEIGHTS_NAME, save(state, metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG_NAME, json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    return directory


def read_prior_config(directory: str | Path) -> dict[str, Any]:
    """The ``config.json`` of a saved prior (validated to be one)."""
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        raise PriorCheckpointError(f"{path}: missing (a saved prior holds {CONFIG_NAME} and {WEIGHTS_NAME})")
    try:
        cfg = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise PriorCheckpointError(f"{path}: not JSON ({e})") from None
    if cfg.get("format") != FORMAT:
        raise PriorCheckpointError(
            f"{path}: not a vistok prior (format {cfg.get('format')!r}, want {FORMAT!r})"
        )
    return cfg


def load_prior(directory: str | Path) -> Prior:
    """Rebuild a prior saved by :func:`save_prior` (no code execution, no pickle)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    cfg = read_prior_config(directory)
    try:
        prior = create_prior(cfg["name"], TokenSpace.from_json(cfg["space"]), **cfg["config"])
    except (SpecError, KeyError, TypeError, ValueError) as e:
        raise PriorCheckpointError(f"{directory / CONFIG_NAME}: {e}") from None
    wpath = directory / WEIGHTS_NAME
    try:
        state = load_file(str(wpath))
    except (SafetensorError, OSError) as e:
        raise PriorCheckpointError(f"{wpath}: unreadable safetensors file ({e})") from None
    own = prior.state_dict()
    bad = sorted(set(own) ^ set(state)) or [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise PriorCheckpointError(f"{wpath}: tensors do not match {cfg['name']!r} (first: {bad[0]!r})")
    prior.load_state_dict(state)
    return prior.eval()
