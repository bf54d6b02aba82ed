"""One spec per tokenizer: ``vistok encode`` then ``vistok decode`` works for every kind.

The ``.vtok`` file stores ``tok.spec``; ``vistok.create`` must rebuild the same tokenizer
from it (weights included), so the decoded image equals ``vistok reconstruct``'s output.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import vistok
from vistok.cli import main
from vistok.data.images import load_image_uint8
from vistok.models.pretrained import weights_dir
from vistok.tokens import Tokens


@pytest.fixture(scope="module")
def titok_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("titok")
    vistok.create("latent1d-tiny").eval().save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def diffusers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("kl")
    diffusers.AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
    ).save_pretrained(d)
    return d


def _round_trip(tmp_path: Path, image: np.ndarray, spec: str, *extra: str) -> tuple[np.ndarray, Tokens, str]:
    """Encode ``image`` with ``-t spec``, decode the token file; also ``reconstruct`` it directly."""
    src = tmp_path / "photo.png"
    Image.fromarray(image).save(src)
    assert main(["encode", str(src), "-t", spec, *extra, "-o", str(tmp_path / "tok")]) == 0
    tokens, stored = Tokens.load(tmp_path / "tok" / "photo.vtok")
    assert main(["decode", str(tmp_path / "tok"), "-o", str(tmp_path / "dec")]) == 0
    decoded = load_image_uint8(tmp_path / "dec" / "photo.png")
    assert decoded.shape == image.shape  # the fit is undone: original geometry
    assert main(["reconstruct", str(src), "-t", spec, *extra, "-o", str(tmp_path / "rec.png")]) == 0
    assert np.array_equal(decoded, load_image_uint8(tmp_path / "rec.png"))
    return decoded, tokens, stored


def test_codec(tmp_path: Path, photo: np.ndarray) -> None:
    _, _, stored = _round_trip(tmp_path, photo[:90, :131], "jpeg:quality=50")
    assert stored == "jpeg:quality=50"


@pytest.mark.parametrize("name", ["vistok-f8", "vistok-pca"])
def test_shipped_model(tmp_path: Path, photo: np.ndarray, name: str) -> None:
    if not (weights_dir(name) / "model.safetensors").is_file():
        pytest.skip(f"{name}: weights not in this checkout")
    decoded, _, stored = _round_trip(tmp_path, photo[:45, :61], name)  # not a multiple of 8
    assert stored == name  # the shipped name, not a folder inside the installed package
    assert np.abs(decoded.astype(float) - photo[:45, :61]).mean() < 40  # a real reconstruction


@pytest.mark.slow  # ~20 s: vistok-1d is built three times (encode, decode, reconstruct)
def test_shipped_variable_length_point(tmp_path: Path, photo: np.ndarray) -> None:
    if not (weights_dir("vistok-1d") / "model.safetensors").is_file():
        pytest.skip("vistok-1d: weights not in this checkout")
    _, tokens, stored = _round_trip(tmp_path, photo[:100, :140], "vistok-1d@4")
    assert stored == "vistok-1d@4" and tokens.lengths.tolist() == [4]


def test_checkpoint_folder(tmp_path: Path, photo: np.ndarray, titok_dir: Path) -> None:
    _, _, stored = _round_trip(tmp_path, photo[:50, :70], str(titok_dir))
    assert stored == str(titok_dir)


@pytest.mark.parametrize("how", ["point", "flag"])
def test_variable_length_below_max(tmp_path: Path, photo: np.ndarray, titok_dir: Path, how: str) -> None:
    spec, extra = (f"{titok_dir}@3", ()) if how == "point" else (str(titok_dir), ("--num-tokens", "3"))
    _, tokens, stored = _round_trip(tmp_path, photo[:40, :40], spec, *extra)
    assert stored == spec and tokens.lengths.tolist() == [3]
    full = vistok.create(str(titok_dir))
    assert full.max_tokens == 8  # k = 3 really is below the maximum


def test_diffusers_adapter(tmp_path: Path, photo: np.ndarray, diffusers_dir: Path) -> None:
    spec = f"diffusers:{diffusers_dir}"
    _, tokens, stored = _round_trip(tmp_path, photo[:30, :41], spec)
    assert tokens.latents is not None
    assert vistok.create(stored).spec == stored  # the stored spec is canonical: it rebuilds itself


def test_point_grammar_everywhere(titok_dir: Path) -> None:
    """``NAME@k`` is one grammar: registry specs, shipped names and folders alike."""
    tiny = vistok.create("latent1d-tiny@5")
    assert tiny.spec == "latent1d-tiny@5" and tiny.default_num_tokens == 5
    x = torch.rand(1, 3, 32, 32)
    assert tiny.encode(x).lengths.tolist() == [5]
    assert tiny.encode(x, num_tokens=2).lengths.tolist() == [2]  # an explicit count wins
    assert vistok.create(tiny.spec).spec == tiny.spec
    assert vistok.create(f"{titok_dir}@2").encode(x).lengths.tolist() == [2]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("jpeg@4", "fixed-length"),
        ("latent1d-tiny@9", "1..8"),
        ("latent1d-tiny@x", "NAME@k"),
        ("latent1d-tiny@0", ">= 1"),
    ],
)
def test_bad_points_are_spec_errors(spec: str, message: str) -> None:
    from vistok.registry import SpecError

    with pytest.raises(SpecError, match=message):
        vistok.create(spec)
