"""Published tokenizers, re-implemented natively and loaded from their official checkpoints.

One module per family (``llamagen.py``, ``titok.py``, ...). Each holds the architecture, the
declared map from the official state-dict keys to vistok's (:meth:`PublishedTokenizer.convert_state`)
and the file formats it reads, and registers its names in ``vistok.registry.TOKENIZERS``.
Importing this package imports every family module in this folder (no hand-kept list): a
new family is a new module. The page of every name, with licences and published numbers:
docs/zoo.md.
"""

from __future__ import annotations

import importlib
import pkgutil

from vistok.models.zoo._base import PublishedTokenizer, fetch_release

__all__ = ["PublishedTokenizer", "family_modules", "fetch_release"]


def family_modules() -> list[str]:
    """Names of the family modules in this package (those not starting with ``_``)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


for _name in family_modules():
    importlib.import_module(f"{__name__}.{_name}")
