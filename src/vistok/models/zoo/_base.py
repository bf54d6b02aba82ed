"""What every published family shares: where weights come from, reading them safely, the key map.

A published family is a :class:`PublishedTokenizer` subclass whose constructor takes the
official architecture's hyper-parameters (defaults: the released model) and, last, the three
source keywords every family has::

    weights: str | None = None   # the file or folder exactly as released
    pretrained: bool = False     # fetch the release named by ``hub`` (huggingface_hub, cached)
    hub: str = "ORG/REPO/FILE"   # where the release lives (preset per registered name)

and ends with ``self.load_official(weights=weights, pretrained=pretrained, hub=hub)``. The
family declares how its release is laid out:

* :attr:`PublishedTokenizer.formats`: the file formats it reads (for docs and errors);
* :meth:`PublishedTokenizer.read_official`: file/folder -> official ``{key: tensor}``
  (default: :func:`vistok.utils.checkpoints.read_state_dict` looking under
  :attr:`state_keys`);
* :meth:`PublishedTokenizer.convert_state`: the key map, official keys -> this module's keys
  (default: the identity), dropping only what :attr:`ignore_keys` documents (GAN
  discriminators, EMA shadows, optimizer buffers).

The loaded state must then match the module exactly: a missing, unexpected or mis-shaped
tensor is a one-line :class:`~vistok.utils.checkpoints.CheckpointError` naming the file.

``hub`` is ``ORG/REPO`` (a whole-repo release such as a ``PyTorchModelHubMixin`` folder),
``ORG/REPO/PATH`` (one file) or ``ORG/REPO/PATH+PATH`` (several files of one release, read
as the folder that holds them).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from vistok.tokenizer import Tokenizer
from vistok.utils.checkpoints import CheckpointError, read_state_dict

__all__ = ["PublishedTokenizer", "fetch_release", "split_hub"]


def split_hub(hub: str) -> tuple[str, list[str]]:
    """``"org/repo/a.pt+b.pt"`` -> ``("org/repo", ["a.pt", "b.pt"])``; ``"org/repo"`` -> ``(..., [])``.

    Raises:
        ValueError: when ``hub`` has fewer than two path segments.
    """
    parts = [p for p in hub.strip().split("/") if p]
    if len(parts) < 2:
        raise ValueError(f"hub location {hub!r} is not ORG/REPO[/FILE[+FILE...]]")
    repo = "/".join(parts[:2])
    rest = "/".join(parts[2:])
    return repo, [f for f in rest.split("+") if f] if rest else []


def fetch_release(hub: str, *, who: str) -> Path:
    """Download (or find in the cache) the release at ``hub``; returns the file, or the folder.

    Raises:
        CheckpointError: one line naming the repository, the files and how to pass a local
            path instead (offline, missing ``huggingface_hub``, unknown repository, ...).
    """
    repo, files = split_hub(hub)
    what = f"{repo} ({', '.join(files) if files else 'the whole repository'})"
    hint = f"download it elsewhere and pass {who}:weights=PATH"
    try:
        import huggingface_hub as hf
    except ImportError:
        raise CheckpointError(
            f"{who}: pretrained=true fetches {what} with huggingface_hub, which is not installed "
            f"(pip install huggingface_hub), or {hint}"
        ) from None
    try:
        if not files:
            return Path(hf.snapshot_download(repo))
        paths = [Path(hf.hf_hub_download(repo, f)) for f in files]
    except Exception as e:  # offline, gated, missing file: one line, whatever huggingface_hub raised
        reason = " ".join(str(e).split())[:160]
        raise CheckpointError(
            f"{who}: could not fetch {what} from the Hugging Face Hub ({type(e).__name__}: {reason}); "
            f"offline? {hint}"
        ) from None
    if len(paths) == 1:
        return paths[0]
    parents = {p.parent for p in paths}
    if len(parents) != 1:
        raise CheckpointError(f"{who}: the files of {what} are not in one folder of the repository")
    return parents.pop()


class PublishedTokenizer(Tokenizer):
    """Base of the published families (see the module docstring for the protocol).

    Class attributes a family sets:
        formats: the release formats it reads, as a sentence for docs and errors.
        state_keys: where the state dict sits inside a pickled checkpoint, tried in order.
        ignore_keys: regular expressions of official keys dropped on purpose (documented in
            docs/zoo.md); any other key the module lacks is an error.
        official: ``"org/repo path/in/repo.py"`` of the official implementation.

    After loading, ``weights_source`` is the path read (``None``: random weights) and
    ``ignored`` the official keys that were dropped.
    """

    source_keys: ClassVar[tuple[str, ...]] = ("weights", "pretrained")
    formats: ClassVar[str] = "torch .pt/.pth state dict"
    state_keys: ClassVar[tuple[str, ...]] = ("state_dict", "model")
    ignore_keys: ClassVar[tuple[str, ...]] = ()
    official: ClassVar[str] = ""

    def __init__(self) -> None:
        super().__init__()
        self.weights_source: str | None = None
        self.ignored: list[str] = []

    # ---- the family's hooks ----------------------------------------------------------------
    def read_official(self, path: Path) -> dict[str, Tensor]:
        """The official ``{key: tensor}`` of the release at ``path`` (a file or a folder)."""
        return read_state_dict(path, keys=self.state_keys)

    def convert_state(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        """Official keys -> this module's keys (the family's declared map; identity here)."""
        return state

    # ---- loading -----------------------------------------------------------------------------
    def load_official(self, *, weights: str | None, pretrained: bool, hub: str) -> None:
        """Load the release (``weights`` path, or ``hub`` when ``pretrained``); always ends in eval mode.

        Raises:
            ValueError: both ``weights`` and ``pretrained`` given.
            CheckpointError: unreadable file, or tensors that do not match this architecture.
        """
        who = type(self).__name__
        if weights and pretrained:
            raise ValueError(f"{who}: give weights=PATH or pretrained=true, not both")
        if pretrained:
            if not hub:
                raise ValueError(f"{who}: pretrained=true needs hub=ORG/REPO[/FILE]")
            path = fetch_release(hub, who=who)
        elif weights:
            path = Path(weights).expanduser()
            if not path.exists():
                raise CheckpointError(f"{path}: no such file or folder (weights= of {who})")
        else:
            self.eval()
            return
        state = self.convert_state(self.read_official(path))
        self._load_checked(state, path)
        self.weights_source = str(path)
        self.eval()

    def _drop_ignored(self, state: dict[str, Tensor]) -> dict[str, Tensor]:
        if not self.ignore_keys:
            return state
        pattern = re.compile("|".join(f"(?:{p})" for p in self.ignore_keys))
        self.ignored = sorted(k for k in state if pattern.match(k))
        return {k: v for k, v in state.items() if k not in set(self.ignored)}

    def _load_checked(self, state: dict[str, Tensor], path: Path) -> None:
        state = self._drop_ignored(state)
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(
                    f"missing {len(missing)} ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})"
                )
            if unexpected:
                parts.append(
                    f"unexpected {len(unexpected)} ({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''})"
                )
            raise CheckpointError(
                f"{path}: not a {type(self).__name__} checkpoint of this configuration: tensors "
                + "; ".join(parts)
            )
        for k, t in own.items():
            if tuple(state[k].shape) != tuple(t.shape):
                raise CheckpointError(
                    f"{path}: tensor {k!r} has shape {tuple(state[k].shape)}, this configuration "
                    f"expects {tuple(t.shape)} (another size of the family? set its parameters)"
                )
        self.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=True)

    # ---- helpers the families share ----------------------------------------------------------
    @staticmethod
    def to_model(images: Tensor) -> Tensor:
        """``[0, 1]`` -> ``[-1, 1]`` (most releases read this range)."""
        return images * 2.0 - 1.0

    @staticmethod
    def from_model(x: Tensor) -> Tensor:
        """``[-1, 1]`` -> ``[0, 1]``, clamped (what ``decode`` returns)."""
        return ((x.float() + 1.0) * 0.5).clamp(0.0, 1.0)

    @staticmethod
    def rate(batch: int, values: int, bits_per_value: float) -> Tensor:
        """float64 ``[B]``: ``values`` stored values per image at ``bits_per_value`` bits each."""
        return torch.full((batch,), float(values) * float(bits_per_value), dtype=torch.float64)

    @staticmethod
    def index_bits(vocab_size: int) -> float:
        """Bits of one index into a codebook of ``vocab_size`` entries."""
        return math.log2(vocab_size)

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["published"] = {
            "family": type(self).__name__,
            "official": self.official,
            "weights": self.weights_source,
            "ignored_keys": len(self.ignored),
        }
        return d
