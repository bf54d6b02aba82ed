"""The photo corpus: real photographs from Debian packages, with a per-image licence and a
held-out split of whole sources.

A *source* is one Debian package that installs images (wallpapers). Which files belong to a
package is read from dpkg's own file list (``/var/lib/dpkg/info/<package>.list``), and each
file's licence from the package's machine-readable ``/usr/share/doc/<package>/copyright``
(DEP-5: the last ``Files:`` stanza whose pattern matches the file wins). Nothing is
downloaded: ``apt-get install <packages>`` installs a source (``vistok data corpus`` prints
the command).

Splits (decided once, recorded in ``docs/data.md``): ``train`` sources are the only ones a
shipped model is trained on; ``heldout`` sources are never trained on and every quality
number of the shipped models is measured on them. ``opencv-doc``, ``opencv-data`` and
``ukui-wallpapers`` are reserved for independent evaluation and are in neither split.
``sway-backgrounds`` (eight colour variants of one logo) and ``gnome-backgrounds`` (vector
art, no per-file licences) were surveyed and left out.

Use it as a training source: ``data.sources: ["corpus:train"]`` (any split or package name
after ``corpus:``, e.g. ``corpus:heldout`` or ``corpus:mate-backgrounds``).
"""

from __future__ import annotations

import fnmatch
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "CORPUS_SOURCES",
    "RESERVED_PACKAGES",
    "CorpusImage",
    "CorpusSource",
    "corpus_images",
    "dep5_licence",
    "install_command",
]

# Never used for training, tuning or our own evaluation: kept for independent evaluation.
RESERVED_PACKAGES = ("opencv-doc", "opencv-data", "ukui-wallpapers")

_EXTS = (".jpg", ".jpeg", ".png", ".webp")
DPKG_INFO = Path("/var/lib/dpkg/info")
DOC_ROOT = Path("/usr/share/doc")


@dataclass(frozen=True)
class CorpusSource:
    """One Debian package of images.

    Attributes:
        package: Debian package name.
        split: ``"train"`` or ``"heldout"``.
        content: what the images are (for the docs).
        one_per_folder: keep only the largest file of each folder (packages that ship one
            picture at several resolutions, e.g. KDE's ``contents/images/<W>x<H>.jpg``).
        exclude: glob patterns (on the installed path) left out (screenshots, logos).
    """

    package: str
    split: str
    content: str
    one_per_folder: bool = False
    exclude: tuple[str, ...] = ()


@dataclass(frozen=True)
class CorpusImage:
    """One image of the corpus: where it is, which package installed it, under which licence."""

    path: str
    package: str
    split: str
    licence: str


CORPUS_SOURCES: tuple[CorpusSource, ...] = (
    CorpusSource(
        "mate-backgrounds", "train", "MATE wallpapers: nature photographs, abstract and desktop art"
    ),
    CorpusSource(
        "plasma-workspace-wallpapers",
        "train",
        "KDE Plasma wallpapers: photographs and digital art",
        one_per_folder=True,
        exclude=("*/screenshot.*",),
    ),
    CorpusSource("lomiri-wallpapers", "heldout", "Ubuntu/Lomiri wallpaper: photograph"),
    CorpusSource("lomiri-wallpapers-16.04", "heldout", "Ubuntu 16.04 community wallpapers: photographs"),
    CorpusSource(
        "lomiri-wallpapers-20.04", "heldout", "Ubuntu 20.04 community wallpapers: photographs, a painting"
    ),
)
assert not {s.package for s in CORPUS_SOURCES} & set(RESERVED_PACKAGES)


def install_command(sources: list[CorpusSource] | None = None) -> str:
    """The ``apt-get install`` line for ``sources`` (default: the whole corpus)."""
    return "apt-get install -y " + " ".join(s.package for s in sources or CORPUS_SOURCES)


def _stanzas(text: str) -> list[dict[str, str]]:
    """Paragraphs of a Debian control-style file as ``{field: value}`` (continuations joined)."""
    out: list[dict[str, str]] = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if fields:
            out.append(fields)
    return out


def dep5_licence(copyright_text: str, installed_path: str) -> str | None:
    """Licence of ``installed_path`` from a DEP-5 ``copyright`` file, or ``None``.

    DEP-5 patterns are source-tree paths (``nature/Wood.jpg``, ``16.04/x.jpg``, ``*``); an
    installed file matches a pattern when its path ends with it, or, since packages often
    flatten the source tree on install, when its file name equals the pattern's (wildcard-free) file name
    (``*`` matches anything). The last matching stanza wins, as the format specifies.
    """
    if "copyright-format" not in copyright_text.split("\n", 2)[0] + copyright_text[:300]:
        return None
    found = None
    for st in _stanzas(copyright_text):
        if "files" not in st or "license" not in st:
            continue
        licence = st["license"].split("\n", 1)[0].strip()
        for pat in st["files"].split():
            if (
                pat == "*"
                or fnmatch.fnmatch(installed_path, "*/" + pat.lstrip("/"))
                or (
                    "/" in pat
                    and not any(c in Path(pat).name for c in "*?[")
                    and Path(installed_path).name == Path(pat).name
                )
            ):
                found = licence
    return found


def _package_files(package: str) -> list[Path] | None:
    lst = DPKG_INFO / f"{package}.list"
    if not lst.is_file():
        return None
    return [Path(p) for p in lst.read_text().splitlines() if p.lower().endswith(_EXTS)]


def _select(src: CorpusSource, files: list[Path]) -> list[Path]:
    files = [f for f in files if f.is_file() and not any(fnmatch.fnmatch(str(f), e) for e in src.exclude)]
    if src.one_per_folder:
        best: dict[Path, Path] = {}
        for f in files:
            cur = best.get(f.parent)
            if cur is None or f.stat().st_size > cur.stat().st_size:
                best[f.parent] = f
        files = list(best.values())
    return sorted(set(files))


def corpus_images(selector: str = "train", *, strict: bool = True) -> list[CorpusImage]:
    """The corpus images of a split (``train``, ``heldout``, ``all``) or one package.

    Args:
        selector: a split name, ``all``, or a package name of :data:`CORPUS_SOURCES`.
        strict: raise when a selected package is not installed (else skip it).

    Raises:
        FileNotFoundError: a selected package is not installed (the message gives the
            ``apt-get install`` line), or the selection holds no images.
        ValueError: an unknown selector or a reserved package.
    """
    if selector in RESERVED_PACKAGES:
        raise ValueError(f"{selector} is reserved for independent evaluation; vistok never reads it")
    if selector == "all":
        chosen = list(CORPUS_SOURCES)
    elif selector in ("train", "heldout"):
        chosen = [s for s in CORPUS_SOURCES if s.split == selector]
    else:
        chosen = [s for s in CORPUS_SOURCES if s.package == selector]
        if not chosen:
            valid = ["train", "heldout", "all"] + [s.package for s in CORPUS_SOURCES]
            raise ValueError(f"unknown corpus selector {selector!r}; valid: {', '.join(valid)}")
    images: list[CorpusImage] = []
    missing: list[CorpusSource] = []
    for src in chosen:
        files = _package_files(src.package)
        if files is None:
            missing.append(src)
            continue
        cp = DOC_ROOT / src.package / "copyright"
        text = cp.read_text(errors="replace") if cp.is_file() else ""
        for f in _select(src, files):
            licence = dep5_licence(text, str(f)) or f"unknown (see /usr/share/doc/{src.package}/copyright)"
            images.append(CorpusImage(str(f), src.package, src.split, licence))
    if missing and strict:
        raise FileNotFoundError(
            f"corpus:{selector}: package(s) not installed: {', '.join(s.package for s in missing)}. "
            f"Install them with: {install_command(missing)}"
        )
    if not images:
        raise FileNotFoundError(f"corpus:{selector}: no images (install with: {install_command(chosen)})")
    return images


def manifest_json(images: list[CorpusImage]) -> str:
    """A JSON manifest (one record per image: path, package, split, licence)."""
    return json.dumps({"format": "vistok.corpus/1", "images": [asdict(i) for i in images]}, indent=1)


def manifest_markdown(images: list[CorpusImage]) -> str:
    """A Markdown table of ``images`` (package, split, path, licence) for docs/data.md."""
    rows = ["| package | split | path | licence |", "|---|---|---|---|"]
    rows += [f"| {i.package} | {i.split} | `{i.path}` | {i.licence} |" for i in images]
    return "\n".join(rows)
