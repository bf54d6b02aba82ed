"""Built-in sample data: the default input of every vistok command, offline.

Three sets, each deterministic (same version -> same bytes), cached under
``vistok.utils.io.user_cache_dir()/samples/<version>/<set>/`` with an annotation file
(``annotations.json``), a content hash and provenance/licence lines:

- ``photos``: the bundled colour photos of scikit-image (``skimage.data``) and
  scikit-learn's two sample images, stored as PNG.
- ``text``: words of known transcription rendered by vistok (DejaVu fonts shipped with
  matplotlib) at heights of about 6 to 48 px on plain and photo backgrounds, with
  TokBench-style annotations: ``box`` ``[x0, y0, x1, y1]`` (pixels, end exclusive),
  ``text`` and ``height_ratio`` = box height / max(image height, width).
- ``faces``: the face of ``skimage.data.astronaut`` (public domain, NASA) rescaled to
  several sizes and placed on photo and plain backgrounds, with its ``box``, five
  landmarks (dlib's 5-point layout) and ``size_ratio`` = box height / max(H, W).
"""

from __future__ import annotations

import json
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from vistok.utils.io import sha256_files, user_cache_dir

__all__ = ["SAMPLE_SETS", "SampleSet", "materialize", "photo_arrays", "sample_set"]

VERSION = "v1"  # bump when any generator's output changes


@dataclass(frozen=True)
class SampleSet:
    """A materialized sample set on disk."""

    name: str
    root: Path
    files: tuple[str, ...]
    annotations: dict[str, Any] | None
    sha256: str
    provenance: tuple[str, ...]

    @property
    def paths(self) -> list[Path]:
        return [self.root / f for f in self.files]

    def describe(self) -> dict[str, Any]:
        """What a results file records about the data."""
        return {
            "name": f"samples:{self.name}",
            "version": VERSION,
            "sha256": self.sha256,
            "count": len(self.files),
            "provenance": list(self.provenance),
        }


# ---- photos ---------------------------------------------------------------------------
_SKIMAGE_PHOTOS: list[tuple[str, str]] = [
    ("astronaut", "NASA (Eileen Collins), public domain"),
    ("chelsea", "Stefan van der Walt, CC0"),
    ("coffee", "Rachel Michetti, CC0"),
    ("hubble_deep_field", "NASA/ESA Hubble, public domain"),
    ("immunohistochemistry", "scikit-image sample, no known copyright restrictions"),
    ("retina", "Mikael Häggström, CC0 1.0"),
    ("rocket", "SpaceX (DSCOVR launch), public domain"),
    (
        "stereo_motorcycle",
        "Middlebury Stereo 2014 (Scharstein et al.), left view, research use as in scikit-image",
    ),
]
_SKLEARN_PHOTOS: list[tuple[str, str]] = [
    ("china.jpg", "danielbuechele on Flickr, CC BY 2.0 (via scikit-learn)"),
    ("flower.jpg", "vultilion on Flickr, CC BY 2.0 (via scikit-learn)"),
]


def photo_arrays() -> list[tuple[str, np.ndarray, str]]:
    """``(name, uint8 [H, W, 3], provenance)`` of every bundled colour photo."""
    import skimage.data
    from sklearn.datasets import load_sample_image

    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, prov in _SKIMAGE_PHOTOS:
            arr = getattr(skimage.data, name)()
            arr = arr[0] if isinstance(arr, tuple) else arr
            out.append((name, np.ascontiguousarray(arr[..., :3]), f"skimage.data.{name}: {prov}"))
        for fname, prov in _SKLEARN_PHOTOS:
            out.append((Path(fname).stem, load_sample_image(fname), f"sklearn {fname}: {prov}"))
    return out


def _gen_photos(out: Path) -> tuple[dict[str, Any] | None, list[str]]:
    prov = []
    for name, arr, line in photo_arrays():
        Image.fromarray(arr).save(out / f"{name}.png", compress_level=6)
        prov.append(line)
    return None, prov


# ---- shared helpers -------------------------------------------------------------------
def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


_FONTS = ["DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSerif.ttf", "DejaVuSansMono.ttf"]
_WORDS = [
    "token",
    "image",
    "pixel",
    "vision",
    "model",
    "Encoder",
    "decoder",
    "Quantize",
    "latent",
    "Codebook",
    "river",
    "mountain",
    "STOP",
    "EXIT",
    "Open",
    "Coffee",
    "Market",
    "station",
    "Library",
    "2048",
    "1984",
    "42",
    "3.14",
    "A7X-42",
    "km/h",
    "Tuesday",
    "London",
    "Paris",
    "Berlin",
    "OCR",
    "Zebra",
    "quartz",
    "Jumping",
    "FOX",
    "lazy",
    "dog",
    "Harbor",
    "north",
    "SOUTH",
    "Welcome",
    "window",
    "garden",
    "Ticket",
    "Platform",
    "09:45",
    "Exit-3",
    "Bakery",
    "Pharmacy",
    "Hotel",
    "Museum",
    "Gate",
    "B12",
    "kitchen",
    "Summer",
    "winter",
    "Autumn",
    "spring",
    "Danger",
    "Caution",
    "Entrance",
    "Parking",
    "Sale",
    "50%",
    "Price",
    "$19.99",
]
_HEIGHTS = [6, 8, 10, 12, 14, 16, 20, 24, 28, 32, 40, 48]


def _background(
    rng: np.random.Generator, photos: list[np.ndarray], size: tuple[int, int], plain: bool
) -> np.ndarray:
    h, w = size
    if plain:
        colour = rng.integers(0, 256, size=3)
        return np.broadcast_to(colour.astype(np.uint8), (h, w, 3)).copy()
    src = photos[int(rng.integers(len(photos)))]
    sh, sw = src.shape[:2]
    scale = max(h / sh, w / sw) * float(rng.uniform(1.0, 1.6))
    im = Image.fromarray(src).resize(
        (max(w, round(sw * scale)), max(h, round(sh * scale))), Image.Resampling.BICUBIC
    )
    x0 = int(rng.integers(0, im.width - w + 1))
    y0 = int(rng.integers(0, im.height - h + 1))
    return np.asarray(im.crop((x0, y0, x0 + w, y0 + h))).copy()


def _save_annotated(
    path: Path, canvas: Image.Image, plain: bool, key: str, instances: list[dict[str, Any]]
) -> dict[str, Any]:
    """Save ``canvas`` as PNG and return its annotation entry."""
    canvas.save(path, compress_level=6)
    return {
        "file": path.name,
        "height": canvas.height,
        "width": canvas.width,
        "background": "plain" if plain else "photo",
        key: instances,
    }


def _overlaps(box: list[int], boxes: list[list[int]], pad: int) -> bool:
    return any(
        not (box[2] + pad <= b[0] or b[2] + pad <= box[0] or box[3] + pad <= b[1] or b[3] + pad <= box[1])
        for b in boxes
    )


def _place(
    rng: np.random.Generator,
    bw: int,
    bh: int,
    size: tuple[int, int],
    boxes: list[list[int]],
    pad: int,
    tries: int = 200,
) -> tuple[int, int] | None:
    h, w = size
    for _ in range(tries):
        if bw + 2 * pad >= w or bh + 2 * pad >= h:
            return None
        x = int(rng.integers(pad, w - bw - pad))
        y = int(rng.integers(pad, h - bh - pad))
        if not _overlaps([x, y, x + bw, y + bh], boxes, pad):
            return x, y
    return None


_SIZES = [(512, 512), (512, 512), (480, 640), (512, 512)]  # (H, W); non-square exercises padding


def _gen_text(out: Path, *, n_images: int = 12, seed: int = 0) -> tuple[dict[str, Any], list[str]]:
    rng = np.random.default_rng(seed)
    photos = [a for _, a, _ in photo_arrays()]
    fonts = _font_dir()
    images = []
    for i in range(n_images):
        size = _SIZES[i % len(_SIZES)]
        plain = i % 2 == 0
        canvas = Image.fromarray(_background(rng, photos, size, plain))
        draw = ImageDraw.Draw(canvas)
        words: list[dict[str, Any]] = []
        boxes: list[list[int]] = []
        for j in range(18):
            height = _HEIGHTS[(i * 7 + j) % len(_HEIGHTS)]
            text = _WORDS[int(rng.integers(len(_WORDS)))]
            font_name = _FONTS[int(rng.integers(len(_FONTS)))]
            font = ImageFont.truetype(str(fonts / font_name), size=height)
            l, t, r, b = draw.textbbox((0, 0), text, font=font)
            bw, bh = r - l, b - t
            pos = _place(rng, bw, bh, size, boxes, pad=max(4, height // 2))
            if pos is None:
                continue
            x, y = pos
            region = np.asarray(canvas.crop((x, y, x + bw, y + bh)), dtype=np.float64)
            lum = float((region @ [0.299, 0.587, 0.114]).mean()) if region.size else 128.0
            fill = (0, 0, 0) if lum > 128 else (255, 255, 255)
            stroke = 0 if plain or height < 16 else 1
            draw.text(
                (x - l, y - t),
                text,
                font=font,
                fill=fill,
                stroke_width=stroke,
                stroke_fill=tuple(255 - c for c in fill),
            )
            box = [x, y, x + bw, y + bh]
            if stroke:  # the stroke grows the ink by its width on every side
                box = [box[0] - 1, box[1] - 1, box[2] + 1, box[3] + 1]
            boxes.append(box)
            words.append(
                {
                    "text": text,
                    "box": box,
                    "height_px": box[3] - box[1],
                    "height_ratio": round((box[3] - box[1]) / max(size), 6),
                    "font": font_name,
                }
            )
        images.append(_save_annotated(out / f"text_{i:03d}.png", canvas, plain, "words", words))
    ann = {
        "format": "vistok.text/1",
        "box_format": "xyxy, pixels, end exclusive",
        "height_ratio": "box height / max(image height, width)",
        "images": images,
    }
    prov = [
        "rendered by vistok.data.samples (words chosen by vistok) with DejaVu fonts "
        "(Bitstream Vera licence, shipped with matplotlib); photo backgrounds from the photos set"
    ]
    return ann, prov


# The astronaut's face in skimage.data.astronaut (512x512), found once with dlib's HOG
# detector and 5-point shape predictor; fixed here so the set needs no dlib to build.
_FACE_BOX = (175, 76, 265, 166)
_FACE_LANDMARKS = ((255, 104), (238, 105), (195, 101), (212, 103), (224, 135))
_FACE_SIZES = [12, 16, 20, 24, 32, 40, 48, 64, 80, 96, 128, 160, 192]


def _face_patch(scale: float, flip: bool) -> tuple[Image.Image, Image.Image, tuple[float, float]]:
    """The astronaut's head region scaled by ``scale`` and a feathered elliptical alpha mask.

    Returns the patch, its mask, and the patch's origin in source coordinates.
    """
    import skimage.data

    src = skimage.data.astronaut()
    x0, y0, x1, y1 = _FACE_BOX
    m = 0.6 * (x1 - x0)  # margin around the face so the paste edge is away from it
    cx0, cy0, cx1, cy1 = x0 - m, y0 - m, x1 + m, y1 + m
    crop = Image.fromarray(src).crop((round(cx0), round(cy0), round(cx1), round(cy1)))
    if flip:
        crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    patch = crop.resize(size, Image.Resampling.LANCZOS)
    mask = Image.new("L", size, 0)
    ImageDraw.Draw(mask).ellipse((0, 0, size[0] - 1, size[1] - 1), fill=255)
    mask = mask.filter(ImageFilter.GaussianBlur(radius=max(0.5, 0.08 * size[0])))
    return patch, mask, (round(cx0), round(cy0))


def _gen_faces(out: Path, *, n_images: int = 10, seed: int = 1) -> tuple[dict[str, Any], list[str]]:
    rng = np.random.default_rng(seed)
    photos = [a for name, a, _ in photo_arrays() if name != "astronaut"]
    images = []
    k = 0
    face_w = _FACE_BOX[2] - _FACE_BOX[0]
    for i in range(n_images):
        size = _SIZES[i % len(_SIZES)]
        plain = i % 3 == 2
        canvas = Image.fromarray(_background(rng, photos, size, plain))
        faces: list[dict[str, Any]] = []
        boxes: list[list[int]] = []
        for _ in range(3):
            target = _FACE_SIZES[k % len(_FACE_SIZES)]
            k += 1
            scale = target / face_w
            flip = bool(rng.integers(2))
            patch, mask, (ox, oy) = _face_patch(scale, flip)
            pos = _place(rng, patch.width, patch.height, size, boxes, pad=2)
            if pos is None:
                continue
            px, py = pos
            canvas.paste(patch, (px, py), mask)
            boxes.append([px, py, px + patch.width, py + patch.height])

            src_w = patch.width / scale  # width of the crop in source pixels

            def tx(
                x: float,
                y: float,
                src_w: float = src_w,
                scale: float = scale,
                flip: bool = flip,
                ox: int = ox,
                oy: int = oy,
                px: int = px,
                py: int = py,
            ) -> tuple[float, float]:
                u = x - ox
                if flip:
                    u = src_w - u
                return px + u * scale, py + (y - oy) * scale

            (ax, ay), (bx, by) = tx(_FACE_BOX[0], _FACE_BOX[1]), tx(_FACE_BOX[2], _FACE_BOX[3])
            box = [round(min(ax, bx)), round(min(ay, by)), round(max(ax, bx)), round(max(ay, by))]
            lms = [tx(x, y) for x, y in _FACE_LANDMARKS]
            if flip:  # keep dlib's order: eye points swap sides under a mirror
                lms = [lms[2], lms[3], lms[0], lms[1], lms[4]]
            faces.append(
                {
                    "box": box,
                    "landmarks5": [[round(x, 2), round(y, 2)] for x, y in lms],
                    "size_px": box[3] - box[1],
                    "size_ratio": round((box[3] - box[1]) / max(size), 6),
                    "identity": "astronaut",
                    "flipped": flip,
                }
            )
        images.append(_save_annotated(out / f"faces_{i:03d}.png", canvas, plain, "faces", faces))
    ann = {
        "format": "vistok.faces/1",
        "box_format": "xyxy, pixels, end exclusive",
        "size_ratio": "box height / max(image height, width)",
        "landmarks5": "dlib 5-point order: eye corners (2 per eye), nose base",
        "images": images,
    }
    prov = [
        "face: skimage.data.astronaut (NASA, public domain), rescaled and pasted by vistok.data.samples; "
        "backgrounds from the photos set"
    ]
    return ann, prov


SAMPLE_SETS: dict[str, Callable[[Path], tuple[dict[str, Any] | None, list[str]]]] = {
    "photos": _gen_photos,
    "text": _gen_text,
    "faces": _gen_faces,
}


def _build(name: str, target: Path) -> None:
    """Generate set ``name`` into a temporary folder, then rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=target.parent))
    try:
        ann, prov = SAMPLE_SETS[name](tmp)
        files = sorted(p.name for p in tmp.glob("*.png"))
        if ann is not None:
            (tmp / "annotations.json").write_text(json.dumps(ann, indent=1) + "\n")
        meta = {
            "name": name,
            "version": VERSION,
            "files": files,
            "sha256": sha256_files(tmp, files + (["annotations.json"] if ann else [])),
            "provenance": prov,
        }
        (tmp / "manifest.json").write_text(json.dumps(meta, indent=1) + "\n")
        try:
            tmp.rename(target)
        except OSError:  # another process built it first
            if not (target / "manifest.json").is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def sample_set(name: str, *, cache_dir: Path | None = None) -> SampleSet:
    """The sample set ``name`` (``photos``, ``text`` or ``faces``), built on first use."""
    if name not in SAMPLE_SETS:
        raise ValueError(f"unknown sample set {name!r}; valid: {', '.join(SAMPLE_SETS)}")
    root = (cache_dir or user_cache_dir() / "samples") / VERSION / name
    if not (root / "manifest.json").is_file():
        _build(name, root)
    meta = json.loads((root / "manifest.json").read_text())
    ann_path = root / "annotations.json"
    ann = json.loads(ann_path.read_text()) if ann_path.is_file() else None
    return SampleSet(
        name=name,
        root=root,
        files=tuple(meta["files"]),
        annotations=ann,
        sha256=meta["sha256"],
        provenance=tuple(meta["provenance"]),
    )


def materialize(out: Path, names: list[str] | None = None) -> list[SampleSet]:
    """Copy the sample sets into ``out/<name>/`` (annotations and manifest included)."""
    sets = []
    for name in names or list(SAMPLE_SETS):
        s = sample_set(name)
        dest = Path(out) / name
        if dest.exists():
            shutil.rmtree(dest)
        shutil.copytree(s.root, dest)
        sets.append(s)
    return sets
