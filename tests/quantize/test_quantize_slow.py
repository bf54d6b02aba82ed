"""Full-size checks (seconds each): big codebooks, the memory target, k-means at scale."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F

from vistok.quantize import QUANTIZERS, VectorQuantizer, nearest_code

pytestmark = pytest.mark.slow


def test_nearest_code_with_a_2_18_codebook_equals_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    x = F.normalize(torch.randn(700, 8, generator=g), dim=1)
    cb = F.normalize(torch.randn(1 << 18, 8, generator=g), dim=1)
    got = nearest_code(x, cb, cosine=True)
    ref = torch.cat([(x[i : i + 100].double() @ cb.double().t()).argmax(1) for i in range(0, 700, 100)])
    assert torch.equal(got, ref)


_MEMORY_PROBE = textwrap.dedent(
    """
    import ctypes, json, sys, torch
    from vistok.quantize import QUANTIZERS

    torch.set_num_threads(1)

    def status(key):
        for line in open("/proc/self/status"):
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024

    q = QUANTIZERS.create(sys.argv[1]).train()
    x = torch.randn(64, 256, q.dim)
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    open("/proc/self/clear_refs", "w").write("5")
    base = status("VmRSS")
    for _ in range(2):
        xx = x.clone().requires_grad_(True)
        out = q(xx)
        (out.quantized.square().mean() + out.loss).backward()
    print(json.dumps({"delta": status("VmHWM") - base}))
    """
)


@pytest.mark.parametrize("spec", ["lfq:bits=16", "lfq:bits=18", "bsq:bits=16", "bsq:bits=18"])
def test_binary_quantizers_with_entropy_stay_under_2gb(spec: str) -> None:
    """64 x 256 tokens, 2^16 / 2^18 codes, entropy loss on: far below the 2 GB target."""
    proc = subprocess.run(
        [sys.executable, "-c", _MEMORY_PROBE, spec], capture_output=True, text=True, timeout=600, check=True
    )
    delta = json.loads(proc.stdout.strip().splitlines()[-1])["delta"]
    assert delta < 2 * 1024**3
    assert delta < 256 * 1024**2  # in fact O(tokens x bits) plus 1 MiB chunks


def test_kmeans_init_of_a_16k_codebook_on_two_batches() -> None:
    """k-means++ seeding (16384 sequential D^2 draws over 32768 samples) + Lloyd steps."""
    torch.manual_seed(0)
    q = QUANTIZERS.create("vq:codebook_size=16384,distance=cosine,kmeans_iters=3", dim=8)
    x = torch.randn(2 * 64 * 256, 8)
    out = q(x)
    assert bool(q.initialized)
    assert float(out.stats["usage"]) > 0.6
    assert torch.unique(q.codebook, dim=0).shape[0] == 16384
    q.eval()
    assert torch.equal(q(x).indices, VectorQuantizer.search(q, F.normalize(x, dim=1))[1])
