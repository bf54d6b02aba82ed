"""Speed and memory of vistok's quantizers next to vector-quantize-pytorch (CPU).

    pip install vector-quantize-pytorch   # benchmark only, not a vistok dependency
    python benchmarks/quantizers.py                  # all cases, ~5 minutes on 2 cores
    python benchmarks/quantizers.py --cases vq,fsq --reps 5 --json out.json
    python benchmarks/quantizers.py --cases fsq,vq --stress 120   # under contention (both cores busy)

Time: forward + backward (``quantized.square().mean() + loss``) of a batch of 64 x 256
tokens, both libraries in this one process, interleaved (ours, theirs, ours, ...), best of
``--reps`` (at least ~0.3 s worth, up to 300, for sub-millisecond cases) after a warm-up
step (which also runs first-batch initializations). FSQ also times vistok's torch path (its C
kernel switched off) in the same rotation.

Memory: every (case, library) runs again in a fresh subprocess: after imports and
model/input creation the heap is trimmed and the resident-set high-water mark reset
(``/proc/self/clear_refs``); two training steps run; the peak (``VmHWM``, which sees
torch's allocations, unlike tracemalloc; ``getrusage`` maxrss would carry the parent's
peak over fork+exec) minus the resident set at the reset is reported. The subprocess gets an address-space limit
of ``--mem-limit-gb`` above its footprint, so a case that would need tens of GB (their
LFQ entropy is O(tokens x 2^bits)) fails fast with "OOM" instead of swapping the machine;
such a case is then not timed.

VQ roofline: the nearest-code search is counted as 2*N*K*D flops and compared with a
4096^3 ``torch.mm`` and with the naive full distance matmul + argmax; both of vistok's search
backends are timed (``native``: the fused C kernel, the default when a C compiler is found;
``torch``: the chunked matmul + two-level argmax fallback).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

B, N = 64, 256  # batch x tokens
MB = 1024 * 1024


@dataclass
class Case:
    name: str
    dim: int
    ours: Callable[[], torch.nn.Module]
    theirs: Callable[[], torch.nn.Module]
    note: str = ""


def _cases() -> dict[str, Case]:
    from vistok.quantize import QUANTIZERS

    def vqp(cls_name: str, **kw):
        def build():
            import vector_quantize_pytorch as vqp_mod

            return getattr(vqp_mod, cls_name)(**kw)

        return build

    cases = [
        Case(
            "vq",
            8,
            lambda: QUANTIZERS.create(
                "vq:codebook_size=16384,distance=cosine,kmeans_init=false,rotation_trick=true", dim=8
            ),
            vqp("VectorQuantize", dim=8, codebook_size=16384, use_cosine_sim=True),
            "16384 codes x 8, cosine, EMA, rotation trick (both)",
        ),
        Case(
            "fsq",
            6,
            lambda: QUANTIZERS.create("fsq:levels=[8,8,8,5,5,5]", dim=6),
            vqp("FSQ", levels=[8, 8, 8, 5, 5, 5]),
            "levels [8,8,8,5,5,5] = 64000 codes",
        ),
        Case(
            "lfq-16",
            16,
            lambda: QUANTIZERS.create("lfq:bits=16", dim=16),
            vqp("LFQ", dim=16, codebook_size=2**16, entropy_loss_weight=0.1),
            "2^16 codes, entropy loss",
        ),
        Case(
            "lfq-18",
            18,
            lambda: QUANTIZERS.create("lfq:bits=18", dim=18),
            vqp("LFQ", dim=18, codebook_size=2**18, entropy_loss_weight=0.1),
            "2^18 codes, entropy loss",
        ),
        Case(
            "bsq-16",
            16,
            lambda: QUANTIZERS.create("bsq:bits=16", dim=16),
            vqp("LFQ", dim=16, codebook_size=2**16, entropy_loss_weight=0.1, spherical=True),
            "2^16 codes, entropy loss (theirs: LFQ spherical=True)",
        ),
        Case(
            "bsq-18",
            18,
            lambda: QUANTIZERS.create("bsq:bits=18", dim=18),
            vqp("LFQ", dim=18, codebook_size=2**18, entropy_loss_weight=0.1, spherical=True),
            "2^18 codes, entropy loss (theirs: LFQ spherical=True)",
        ),
        Case(
            "rvq",
            8,
            lambda: QUANTIZERS.create("rvq:num_stages=8,codebook_size=1024,kmeans_init=false", dim=8),
            vqp("ResidualVQ", dim=8, num_quantizers=8, codebook_size=1024, rotation_trick=False),
            "8 stages x 1024 codes x 8, euclidean EMA",
        ),
    ]
    return {c.name: c for c in cases}


def _step(lib: str, q: torch.nn.Module, x: torch.Tensor) -> torch.Tensor | None:
    """One forward + backward; returns the indices."""
    x = x.detach().requires_grad_(True)
    if lib == "vistok":
        out = q(x)
        (out.quantized.square().mean() + out.loss).backward()
        return out.indices
    res = q(x)
    quantized, indices = res[0], res[1]
    loss = quantized.square().mean()
    if len(res) > 2 and torch.is_tensor(res[2]):
        loss = loss + res[2].sum()
    loss.backward()
    return indices


def _input(dim: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(B, N, dim, generator=torch.Generator().manual_seed(seed))


# -- memory: one fresh subprocess per (case, library) ---------------------------------------


def _proc_status(key: str) -> int:
    """A ``/proc/self/status`` size field (``VmSize``, ``VmRSS``, ``VmHWM``) in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return 0


def _reset_peak_rss() -> None:
    """Return free heap pages to the OS and reset the resident-set high-water mark.

    Without ``malloc_trim`` a step could reuse memory freed during imports without raising
    the resident set; ``clear_refs`` = 5 resets ``VmHWM``/maxrss (Linux >= 4.0).
    """
    import ctypes

    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _memory_child(case: str, lib: str, limit_gb: float) -> None:
    """Runs in the subprocess: prints one JSON line."""
    torch.manual_seed(0)
    c = _cases()[case]
    q = (c.ours if lib == "vistok" else c.theirs)().train()
    x = _input(c.dim)
    torch.ones(8).sum()  # start the thread pool before measuring
    limit = _proc_status("VmSize") + int(limit_gb * 1024**3)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    _reset_peak_rss()
    base = _proc_status("VmRSS")
    status = "ok"
    try:
        for _ in range(2):
            _step(lib, q, x)
    except (RuntimeError, MemoryError) as e:
        status = "OOM" if "alloc" in str(e).lower() or isinstance(e, MemoryError) else f"error: {e}"[:200]
    # VmHWM, not getrusage: ru_maxrss survives fork+exec and would report the parent's peak.
    peak = _proc_status("VmHWM")
    res = {"status": status, "base_mb": base / MB, "peak_mb": peak / MB, "delta_mb": (peak - base) / MB}
    print(json.dumps(res))


def _memory(case: str, lib: str, limit_gb: float, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--memory-child", case, "--lib", lib, "--mem-limit-gb", str(limit_gb)]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"]
        oom = "alloc" in tail[0].lower() or proc.returncode in (-9, 137)
        return {"status": "OOM" if oom else f"failed: {tail[0][:120]}", "delta_mb": float("nan")}
    return json.loads(lines[-1])


# -- time: interleaved in this process -------------------------------------------------------


def _time_pair(c: Case, reps: int, skip_theirs: bool) -> dict:
    """Ours, theirs and (FSQ) ours on its torch path, interleaved round by round, best of each."""
    torch.manual_seed(0)
    ours = c.ours().train()
    theirs = None if skip_theirs else c.theirs().train()
    x = _input(c.dim)
    steps = {"ours_s": lambda: _step("vistok", ours, x)}
    if theirs is not None:
        steps["theirs_s"] = lambda: _step("theirs", theirs, x)
    if c.name == "fsq":  # the same module with its C kernel switched off
        steps["ours_torch_path_s"] = lambda: _torch_path(lambda: _step("vistok", ours, x))
    for fn in steps.values():  # warm-up (first-batch init)
        fn()
    s = time.perf_counter()
    steps["ours_s"]()
    # sub-millisecond cases: many interleaved repetitions, so the minimum is not noise
    reps = max(reps, min(300, int(0.3 / max(time.perf_counter() - s, 1e-6))))
    times: dict[str, list[float]] = {k: [] for k in steps}
    for _ in range(reps):
        for key, fn in steps.items():
            s = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - s)
    res = {k: min(v) for k, v in times.items()}
    res.setdefault("theirs_s", float("nan"))
    res["reps"] = reps
    if c.name == "fsq":
        res["indices"] = _check_fsq_indices(ours, theirs)
    if c.name == "vq" and theirs is not None:
        res["indices"] = _vq_agreement(ours, theirs)
    return res


def _torch_path(fn: Callable[[], object]) -> object:
    """Run ``fn`` with vistok's FSQ kernel switched off (its torch path)."""
    from vistok.quantize import _fsq_native

    usable = _fsq_native.usable
    _fsq_native.usable = lambda z, size: None
    try:
        return fn()
    finally:
        _fsq_native.usable = usable


def _check_fsq_indices(ours, theirs) -> str:
    """Same levels -> the same codes; the index convention (first level least significant) matches."""
    x = torch.randn(B, N, 6, generator=torch.Generator().manual_seed(7)) * 2
    with torch.no_grad():
        a = ours.eval()(x).indices
        b = theirs.eval()(x)[1].long()
    assert torch.equal(a, b), f"FSQ indices differ at {(a != b).sum()} of {a.numel()} tokens"
    return f"identical ({a.numel()} tokens)"


def _vq_agreement(ours, theirs) -> str:
    """Load their codebook into ours and compare nearest codes on one batch."""
    import torch.nn.functional as F

    embed = theirs._codebook.embed.detach().reshape(-1, 8)
    with torch.no_grad():
        ours.codebook.copy_(F.normalize(embed, dim=1))
        x = torch.randn(B, N, 8, generator=torch.Generator().manual_seed(7))
        a = ours.eval()(x).indices
        b = theirs.eval()(x)[1].long()
    agree = (a == b).float().mean().item()
    return f"{100 * agree:.2f}% identical with their codebook"


def _mm_gflops(best: Callable[[Callable[[], object]], float]) -> float:
    a, b = torch.randn(4096, 4096), torch.randn(4096, 4096)
    return 2 * 4096**3 / best(lambda: a @ b) / 1e9


def _roofline(reps: int) -> dict:
    """GFLOP/s: torch.mm 4096^3, naive distance matmul + argmax, vistok's chunked search."""
    from vistok.quantize import nearest_code

    def best(fn: Callable[[], object], n: int = reps) -> float:
        fn()
        ts = []
        for _ in range(n):
            s = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - s)
        return min(ts)

    mm = _mm_gflops(best)
    g = torch.Generator().manual_seed(0)
    k, d, n = 16384, 8, B * N
    x = torch.nn.functional.normalize(torch.randn(n, d, generator=g), dim=1)
    cb = torch.nn.functional.normalize(torch.randn(k, d, generator=g), dim=1)
    flops = 2 * n * k * d
    naive = flops / best(lambda: (x @ cb.t()).argmax(1), 2) / 1e9
    res = {"mm_gflops": mm, "naive_gflops": naive}
    ref = (x @ cb.t()).argmax(1)
    for backend in ("native", "torch"):
        try:
            assert torch.equal(nearest_code(x, cb, cosine=True, backend=backend), ref)
        except RuntimeError as e:  # no C compiler: the native backend is reported missing
            res[f"{backend}_error"] = str(e)
            continue
        t = best(lambda b=backend: nearest_code(x, cb, cosine=True, backend=b))
        res[f"{backend}_gflops"] = flops / t / 1e9
    res["search_gflops"] = res.get("native_gflops", res["torch_gflops"])
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cases", default=",".join(_cases()))
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    p.add_argument("--mem-limit-gb", type=float, default=6.0)
    p.add_argument("--skip-memory", action="store_true")
    p.add_argument("--json", default=None)
    p.add_argument(
        "--stress",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="time under contention: a second process keeps every core busy (at most SECONDS)",
    )
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--lib", default="vistok", help=argparse.SUPPRESS)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory_child:
        _memory_child(args.memory_child, args.lib, args.mem_limit_gb)
        return

    import vector_quantize_pytorch

    cases = _cases()
    names = [n.strip() for n in args.cases.split(",") if n.strip()]
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{args.threads} threads, vector-quantize-pytorch {vector_quantize_pytorch.__version__ if hasattr(vector_quantize_pytorch, '__version__') else _vqp_version()}"
    )
    print(f"# load average at start: {os.getloadavg()}")
    print(f"# batch {B} x {N} tokens, forward+backward, best of {args.reps}")
    stress = _start_stress(args.stress) if args.stress > 0 else None
    if stress is not None:
        print(f"# under contention: {os.cpu_count()} busy-loop processes for at most {args.stress:g} s")
        args.skip_memory = True  # the memory children would be timed against the stress too
    try:
        rows = _run_cases(args, cases, names)
    finally:
        if stress is not None:
            stress.terminate()
            stress.wait()
    if stress is not None and "fsq" in names:
        fsq = next(r for r in rows if r["case"] == "fsq")
        ok = fsq["ratio"] >= 2 and fsq["ours_s"] <= fsq["ours_torch_path_s"]
        print(
            f"# FSQ under contention: vqp/vistok {fsq['ratio']:.1f}x (>= 2x), native/torch path "
            f"{fsq['ours_s'] / fsq['ours_torch_path_s']:.2f} (<= 1): {'holds' if ok else 'DOES NOT HOLD'}"
        )
    if stress is not None and "vq" in names:
        roof = next(r for r in rows if r["case"] == "roofline")
        if "native_gflops" in roof:
            ok = roof["native_gflops"] >= roof["torch_gflops"]
            print(
                f"# VQ search under contention: native {roof['native_gflops']:.1f} vs torch "
                f"{roof['torch_gflops']:.1f} GFLOP/s: {'holds' if ok else 'DOES NOT HOLD'}"
            )
    print(f"# load average at end: {os.getloadavg()}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2, default=str)


_STRESS = """
import multiprocessing as mp, sys, time
def spin(deadline):
    x = 0
    while time.time() < deadline:
        for i in range(10000):
            x += i * i
if __name__ == "__main__":
    deadline = time.time() + float(sys.argv[1])
    procs = [mp.Process(target=spin, args=(deadline,)) for _ in range(int(sys.argv[2]))]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
"""


def _start_stress(seconds: float) -> subprocess.Popen:
    """A process whose children busy-loop on every core until ``seconds`` have passed."""
    proc = subprocess.Popen([sys.executable, "-c", _STRESS, str(seconds), str(os.cpu_count() or 1)])
    time.sleep(0.5)  # the loops are running before the first timing
    return proc


def _run_cases(args: argparse.Namespace, cases: dict[str, Case], names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        c = cases[name]
        mem = {"vistok": {}, "theirs": {}}
        if not args.skip_memory:
            for lib in ("vistok", "theirs"):
                mem[lib] = _memory(name, lib, args.mem_limit_gb, args.threads)
        skip = mem["theirs"].get("status") == "OOM"
        t = _time_pair(c, args.reps, skip_theirs=skip)
        row = {"case": name, "note": c.note, **t, "mem": mem}
        row["ratio"] = t["theirs_s"] / t["ours_s"] if not skip else float("nan")
        rows.append(row)
        _print_row(row, args.mem_limit_gb)
    if "vq" in names:
        roof = _roofline(args.reps)
        rows.append({"case": "roofline", **roof})
        mm = roof["mm_gflops"]
        paths = "; ".join(
            f"{b} {roof[b + '_gflops']:.1f} GFLOP/s = {100 * roof[b + '_gflops'] / mm:.0f}% of mm"
            if b + "_gflops" in roof
            else f"{b} unavailable ({roof[b + '_error']})"
            for b in ("native", "torch")
        )
        print(
            f"# VQ search (16384 x 16384 x 8, cosine): torch.mm 4096^3 {mm:.0f} GFLOP/s; "
            f"naive matmul+argmax {roof['naive_gflops']:.1f} GFLOP/s; vistok nearest_code {paths}"
        )
    return rows


def _vqp_version() -> str:
    from importlib.metadata import version

    return version("vector-quantize-pytorch")


def _fmt_mem(m: dict, limit: float) -> str:
    if not m:
        return "-"
    if m.get("status") == "OOM":
        return f"OOM (>{limit:g} GB)"
    if m.get("status") != "ok":
        return str(m.get("status"))[:30]
    return f"{m['delta_mb']:.0f} MB"


def _print_row(row: dict, limit: float) -> None:
    ours_ms = 1e3 * row["ours_s"]
    theirs = row["theirs_s"]
    if theirs != theirs:  # nan
        theirs_txt, ratio = "OOM expected (O(tokens*2^bits))", "-"
    else:
        theirs_txt, ratio = f"{1e3 * theirs:.2f} ms", f"{row['ratio']:.1f}x"
    extra = f"  [{row['indices']}]" if "indices" in row else ""
    if "ours_torch_path_s" in row:
        extra += f"  [vistok torch path {1e3 * row['ours_torch_path_s']:.2f} ms]"
    print(
        f"{row['case']:8s} vistok {ours_ms:9.2f} ms | vqp {theirs_txt:>12s} | speed-up {ratio:>6s} | "
        f"peak mem vistok {_fmt_mem(row['mem']['vistok'], limit)}, vqp {_fmt_mem(row['mem']['theirs'], limit)}"
        f"{extra}",
        flush=True,
    )


if __name__ == "__main__":
    main()
