"""Print docs/zoo.md's table of published names from the registry (tokens, bits and parameters as vistok computes them).

    python scripts/zoo_table.py > /tmp/table.md    # then paste it between the markers in docs/zoo.md

Each name is built on the meta device (no weights, no memory), so the figures are the
architecture's own: tokens per image at the native size, bits per image (discrete: tokens x
codebooks x log2(codebook); continuous: 16 bits per latent value) and parameter count.
"""

from __future__ import annotations

import math

import torch

import vistok
from vistok.models.zoo import PublishedTokenizer
from vistok.registry import TOKENIZERS

# a family module -> the docs/zoo/ section that covers it
SECTIONS = {"one_d_piece": "titok", "maskgit_vqgan": "titok"}
# bases that are a release themselves although a variant reads the same file (var-vqvae-512)
BASE_RELEASES = {"var-vqvae"}


def published_names() -> list[str]:
    """Registered published names: every variant of a published family, and each base that is a
    release of its own (its ``hub`` is no variant's: ``taesd``, ``var-vqvae``, ``maskgit-vqgan``)."""
    entries = [
        e
        for e in TOKENIZERS.entries()
        if isinstance(e.factory, type) and issubclass(e.factory, PublishedTokenizer)
    ]
    variant_hubs = {e.defaults().get("hub") for e in entries if e.base is not None}
    return [
        e.name
        for e in entries
        if e.base is not None or e.defaults().get("hub") not in variant_hubs or e.name in BASE_RELEASES
    ]


def row(name: str) -> str:
    entry = TOKENIZERS.get(name)
    with torch.device("meta"):
        tok = vistok.create(name)
    params = sum(p.numel() for p in tok.parameters())
    module = entry.factory.__module__.rsplit(".", 1)[1]
    section = SECTIONS.get(module, module)
    size = f" at {tok.input_size}²" if tok.input_size else f" (stride {tok.stride})"
    if tok.kind == "discrete" and tok.vocab_size:
        bits = f"{tok.max_tokens * tok.num_codebooks * math.log2(tok.vocab_size):,.0f}"
    else:
        bits = "16 per latent value"
    hub = entry.defaults().get("hub")
    where = f"`{hub}`" if hub else "outside the Hub (see section)"
    return (
        f"| `{name}` | [{section}](zoo/{section}.md) | {tok.kind} | {tok.max_tokens}{size} | "
        f"{tok.vocab_size or '–'} | {bits} | {params / 1e6:.1f} M | {where} |"
    )


def main() -> None:
    vistok.list()
    print(
        "| name | section | kind | tokens (native size) | codebook | bits / image | parameters | release on the Hub |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in published_names():
        print(row(name))


if __name__ == "__main__":
    main()
