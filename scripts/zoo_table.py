"""Print docs/zoo.md's table of published names from the registry (tokens, bits and parameters as vistok computes them).

    python scripts/zoo_table.py > /tmp/table.md    # then paste it between the markers in docs/zoo.md
    python scripts/zoo_table.py --speed run1.json [run2.json ...]   # the speed table (zoo-speed markers)

Each name is built on the meta device (no weights, no memory), so the figures are the
architecture's own: tokens per image at the native size, bits per image (discrete: tokens x
codebooks x log2(codebook); continuous: 16 bits per latent value) and parameter count.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

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


def speed_table(paths: list[str]) -> str:
    """The speed table of docs/zoo.md from ``benchmarks/zoo_speed.py --json`` runs: one ratio
    column per run (official / vistok median time, > 1: vistok faster) and the largest
    reconstruction difference seen."""
    runs = [json.loads(Path(p).read_text()) for p in paths]
    names: list[str] = []
    for run in runs:
        names += [r["name"].split(":")[0] for r in run["rows"] if r["name"].split(":")[0] not in names]
    head = "| name | official ms | vistok ms | " + " | ".join(f"ratio, run {i + 1}" for i in range(len(runs)))
    lines = [head + " | max abs diff |", "|---|---:|---:|" + "---:|" * len(runs) + "---:|"]
    for name in names:
        cells, off, ours, diff = [], "–", "–", 0.0
        for run in runs:
            row = next((r for r in run["rows"] if r["name"].split(":")[0] == name), None)
            cells.append("–" if row is None else f"{row['ratio']:.2f}")
            if row is not None:
                off, ours = f"{row['official_ms']:.0f}", f"{row['vistok_ms']:.0f}"
                diff = max(diff, row["max_abs_diff"])
        lines.append(f"| `{name}` | {off} | {ours} | " + " | ".join(cells) + f" | {diff:.1e} |")
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--speed":
        print(speed_table(sys.argv[2:]))
        return
    vistok.list()
    print(
        "| name | section | kind | tokens (native size) | codebook | bits / image | parameters | release on the Hub |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name in published_names():
        print(row(name))


if __name__ == "__main__":
    main()
