"""`vistok tokenize` that SIGKILLs itself part-way (for the resume tests).

KILL_AT=batch:N kills right after the N-th encoded batch; KILL_AT=write:N kills inside the
N-th shard write, after the temporary file is complete and before its rename.
"""

from __future__ import annotations

import os
import signal
import sys

import vistok.utils.io as io_mod
from vistok.cli import main
from vistok.data import tokenize as tok_mod

where, _, count = os.environ["KILL_AT"].partition(":")
limit = int(count)
seen = [0]


def _tick() -> None:
    seen[0] += 1
    if seen[0] == limit:
        os.kill(os.getpid(), signal.SIGKILL)


if where == "batch":
    encode = tok_mod._ShardWriter._encode

    def _encode(self: tok_mod._ShardWriter, n: int) -> None:
        encode(self, n)
        _tick()

    tok_mod._ShardWriter._encode = _encode  # type: ignore[method-assign]
else:
    replace = io_mod.os.replace

    def _replace(src: str, dst: str) -> None:
        if ".safetensors" in str(dst):
            _tick()
        replace(src, dst)

    io_mod.os.replace = _replace  # type: ignore[assignment]

sys.exit(main(sys.argv[1:]))
