"""What the benchmark runs on: the built-in sample sets or a user folder, with annotations.

Annotations follow the sample sets' formats (``vistok.text/1``: words with ``text`` and
``box``; ``vistok.faces/1``: faces with ``box`` and optional ``landmarks5``). A user
folder without annotations gets the metrics that need none (pixel, FD, rate, speed).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vistok.data.images import find_images
from vistok.data.samples import sample_set
from vistok.utils.io import sha256_files

__all__ = ["BenchData", "BenchImage", "corpus_data", "folder_data", "load_data", "samples_data"]


@dataclass
class BenchImage:
    path: Path
    rel: str  # name in results, e.g. "text/text_000.png"
    words: list[dict[str, Any]] | None = None
    faces: list[dict[str, Any]] | None = None


@dataclass
class BenchData:
    name: str
    items: list[BenchImage]
    sha256: str
    provenance: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "sha256": self.sha256,
            "count": len(self.items),
            "words": sum(len(i.words or []) for i in self.items),
            "faces": sum(len(i.faces or []) for i in self.items),
            "provenance": self.provenance,
        }

    def subset(self, limit: int | None) -> BenchData:
        """At most ``limit`` images of each kind (plain/text/face), for quick runs."""
        if limit is None:
            return self
        kept: list[BenchImage] = []
        counts: dict[str, int] = {}
        for it in self.items:
            kind = "text" if it.words else "face" if it.faces else "plain"
            if counts.get(kind, 0) < limit:
                kept.append(it)
                counts[kind] = counts.get(kind, 0) + 1
        return BenchData(f"{self.name}[limit={limit}]", kept, self.sha256, self.provenance)


def _by_file(ann: dict[str, Any] | None, key: str) -> dict[str, list[dict[str, Any]]]:
    if not ann:
        return {}
    return {entry["file"]: entry.get(key, []) for entry in ann.get("images", [])}


def samples_data(sets: tuple[str, ...] = ("photos", "text", "faces")) -> BenchData:
    """The built-in sample sets as one benchmark dataset."""
    items: list[BenchImage] = []
    hashes, prov = [], []
    for name in sets:
        s = sample_set(name)
        words, faces = _by_file(s.annotations, "words"), _by_file(s.annotations, "faces")
        items += [BenchImage(p, f"{name}/{p.name}", words.get(p.name), faces.get(p.name)) for p in s.paths]
        hashes.append(f"{name}:{s.sha256}")
        prov += list(s.provenance)
    import hashlib

    digest = hashlib.sha256("\n".join(hashes).encode()).hexdigest()
    return BenchData("samples:" + "+".join(sets), items, digest, prov)


def folder_data(root: str | Path, annotations: list[str | Path] | None = None) -> BenchData:
    """Images under ``root`` (recursive) with optional text/face annotation files.

    The annotation files name images by path relative to ``root`` (``file`` key).
    """
    root = Path(root)
    files = find_images(root)
    if not files:
        raise ValueError(f"{root}: no image files found")
    words: dict[str, list[dict[str, Any]]] = {}
    faces: dict[str, list[dict[str, Any]]] = {}
    for a in annotations or []:
        try:
            ann = json.loads(Path(a).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{a}: cannot read annotations ({e})") from None
        words.update(_by_file(ann, "words"))
        faces.update(_by_file(ann, "faces"))
    rels = [str(f.relative_to(root)) for f in files]
    items = [BenchImage(f, r, words.get(r) or None, faces.get(r) or None) for f, r in zip(files, rels)]
    return BenchData(str(root), items, sha256_files(root, rels), [f"user folder {root}"])


def corpus_data(selector: str = "heldout") -> BenchData:
    """The photo corpus's ``selector`` split or package (``vistok.data.corpus``) as a dataset;
    images are named ``<package>/<file name>`` and each one's licence is in the provenance."""
    import hashlib

    from vistok.data.corpus import corpus_images

    images = corpus_images(selector)
    items = [BenchImage(Path(i.path), f"{i.package}/{Path(i.path).name}") for i in images]
    h = hashlib.sha256()
    for it in items:
        h.update(it.rel.encode() + b"\0" + hashlib.sha256(it.path.read_bytes()).digest())
    prov = [f"{i.package} ({i.split}): {i.path}, {i.licence}" for i in images]
    return BenchData(f"corpus:{selector}", items, h.hexdigest(), prov)


def load_data(spec: str, annotations: list[str | Path] | None = None) -> BenchData:
    """``samples``, ``samples:photos+text``, ``corpus:heldout`` (or another corpus selector) or a folder path."""
    if spec.startswith("corpus:"):
        return corpus_data(spec.split(":", 1)[1])
    if spec == "samples" or spec.startswith("samples:"):
        sets = tuple(spec.split(":", 1)[1].split("+")) if ":" in spec else ("photos", "text", "faces")
        return samples_data(sets)
    return folder_data(spec, annotations)
