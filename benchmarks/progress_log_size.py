"""Bytes a 300-step loop writes to a non-terminal stderr: tqdm's bar frames vs vistok's progress helper.

Run: ``python benchmarks/progress_log_size.py`` (about two minutes: 300 steps of 0.2 s, twice).
Each step calls ``update(1)`` and ``set_postfix(loss, psnr, usage)`` as ``vistok train`` does.
"""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from typing import Any

from tqdm.auto import tqdm

from vistok.utils.progress import progress


def _run(make: Callable[[io.StringIO], Any], steps: int = 300, step_s: float = 0.2) -> dict[str, int]:
    buf = io.StringIO()
    bar = make(buf)
    for i in range(steps):
        time.sleep(step_s)
        bar.update(1)
        bar.set_postfix(loss=f"{1 / (i + 1):.4f}", psnr=f"{20 + i / 30:.2f}", usage="0.875")
    bar.close()
    text = buf.getvalue()
    return {"bytes": len(text.encode()), "frames": text.count("\n") + text.count("\r")}


def main() -> None:
    before = _run(lambda f: tqdm(total=300, unit="step", dynamic_ncols=True, desc="train", file=f))
    after = _run(lambda f: progress(total=300, unit="step", desc="train", stream=f))
    print(json.dumps({"tqdm": before, "vistok.utils.progress": after}))


if __name__ == "__main__":
    main()
