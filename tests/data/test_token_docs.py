"""The numpy-only reader in docs/generation.md reads what `vistok tokenize` writes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from vistok.cli import main
from vistok.data import TokenDataset

DOC = Path(__file__).resolve().parents[2] / "docs" / "generation.md"


def _numpy_reader() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- numpy-reader[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/generation.md lost its numpy-reader block"
    return m.group(1)


@pytest.mark.parametrize("spec", ["ckpt", "ckpt@3"])
def test_docs_numpy_reader_matches_token_dataset(
    spec: str, image_folder: Path, tiny_ckpt: Path, tiny_1d_ckpt: Path, tmp_path: Path
) -> None:
    t = str(tiny_ckpt) if spec == "ckpt" else f"{tiny_1d_ckpt}@3"
    out = tmp_path / "ds"
    args = ["tokenize", str(image_folder), "-t", t, "-o", str(out), "--size", "32", "-q", "--shard-size", "3"]
    assert main(args) == 0
    code = _numpy_reader()
    imports = {ln.split()[1].split(".")[0] for ln in code.splitlines() if ln.startswith(("import ", "from "))}
    assert imports == {"json", "struct", "pathlib", "numpy"}
    scope: dict[str, object] = {}
    exec(compile(code, str(DOC), "exec"), scope)
    values, lengths, manifest = scope["load_token_dataset"](out)  # type: ignore[operator]
    ds = TokenDataset(out)
    assert isinstance(values, np.ndarray) and values.dtype == np.uint16
    assert np.array_equal(values.astype(np.int64), ds.ids().numpy())
    assert np.array_equal(lengths, ds.lengths().numpy())
    assert manifest == ds.manifest
