"""The photo corpus: licences from DEP-5 copyright files, splits, provenance in the docs."""

from __future__ import annotations

from pathlib import Path

import pytest

from vistok.data import corpus
from vistok.data.corpus import CORPUS_SOURCES, RESERVED_PACKAGES, corpus_images, dep5_licence

DEP5 = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: demo

Files: *
Copyright: 2020 Someone
License: GPL-2+

Files: 16.04/Bridge_by_X.jpg
Copyright: 2018 X
License: CC-BY-SA-4.0

Files: desktop/Stripes-*.png
Copyright: 2018 Y
License: CC0-1.0

Files: debian/*
Copyright: 2020 Packager
License: GPL-2+
 Long licence text
 continues here.
"""


def test_dep5_last_matching_stanza_wins() -> None:
    assert dep5_licence(DEP5, "/usr/share/backgrounds/other.jpg") == "GPL-2+"
    # the package flattened 16.04/ on install: matched by the (wildcard-free) file name
    assert dep5_licence(DEP5, "/usr/share/backgrounds/Bridge_by_X.jpg") == "CC-BY-SA-4.0"
    assert dep5_licence(DEP5, "/usr/share/backgrounds/mate/desktop/Stripes-blue.png") == "CC0-1.0"
    # a wildcard file name is never matched by name alone (debian/* is not "everything")
    assert dep5_licence(DEP5, "/usr/share/backgrounds/Stripes-blue.png") == "GPL-2+"


def test_dep5_not_machine_readable() -> None:
    assert dep5_licence("This package was debianized by ...\nLicensed under CC-BY-SA.", "/x.jpg") is None


def _fake_package(root: Path, package: str, files: dict[str, bytes], copyright_text: str) -> None:
    info = root / "info"
    info.mkdir(exist_ok=True)
    paths = []
    for rel, data in files.items():
        p = root / "fs" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
        paths.append(str(p))
    (info / f"{package}.list").write_text("\n".join([str(root / "fs"), *paths]) + "\n")
    doc = root / "doc" / package
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(copyright_text)


def test_corpus_records_package_split_and_licence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train = next(s for s in CORPUS_SOURCES if s.split == "train" and not s.one_per_folder)
    held = [s for s in CORPUS_SOURCES if s.split == "heldout"]
    _fake_package(tmp_path, train.package, {"nature/a.jpg": b"x" * 10, "nature/b.png": b"y"}, DEP5)
    for s in held:
        _fake_package(tmp_path, s.package, {f"{s.package}/Bridge_by_X.jpg": b"z", "readme.txt": b""}, DEP5)
    monkeypatch.setattr(corpus, "DPKG_INFO", tmp_path / "info")
    monkeypatch.setattr(corpus, "DOC_ROOT", tmp_path / "doc")

    got = corpus_images(train.package)
    assert [Path(i.path).name for i in got] == ["a.jpg", "b.png"]
    assert all(i.package == train.package and i.split == "train" and i.licence == "GPL-2+" for i in got)
    held_imgs = corpus_images("heldout")
    assert len(held_imgs) == len(held)  # readme.txt is not an image
    assert {i.licence for i in held_imgs} == {"CC-BY-SA-4.0"}
    # a missing train package is named, with the command that installs it
    with pytest.raises(FileNotFoundError, match="apt-get install -y"):
        corpus_images("train")
    assert corpus_images("train", strict=False) == got


def test_reserved_and_unknown_selectors() -> None:
    for pkg in RESERVED_PACKAGES:
        with pytest.raises(ValueError, match="reserved"):
            corpus_images(pkg)
    with pytest.raises(ValueError, match="valid: train, heldout"):
        corpus_images("wallpapers")
    assert not {s.package for s in CORPUS_SOURCES} & set(RESERVED_PACKAGES)
    # whole sources are held out: no package is in both splits
    assert {s.split for s in CORPUS_SOURCES} == {"train", "heldout"}


def test_docs_record_every_source_and_its_licence() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "data.md").read_text()
    for s in CORPUS_SOURCES:
        assert s.package in doc, f"docs/data.md does not record corpus source {s.package}"
    for pkg in RESERVED_PACKAGES:
        assert pkg in doc


def test_bench_reads_a_corpus_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from PIL import Image

    from vistok.bench.data import load_data

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 20, 30)).save(buf, format="PNG")
    held = [s for s in CORPUS_SOURCES if s.split == "heldout"]
    for s in held:
        _fake_package(tmp_path, s.package, {f"{s.package}/Bridge_by_X.jpg": buf.getvalue()}, DEP5)
    monkeypatch.setattr(corpus, "DPKG_INFO", tmp_path / "info")
    monkeypatch.setattr(corpus, "DOC_ROOT", tmp_path / "doc")
    data = load_data("corpus:heldout")
    assert data.name == "corpus:heldout" and len(data.items) == len(held)
    assert sorted(i.rel for i in data.items) == sorted(f"{s.package}/Bridge_by_X.jpg" for s in held)
    assert all("CC-BY-SA-4.0" in p for p in data.provenance)
    assert len(data.sha256) == 64
