"""State learned outside the gradient is bit-identical on every rank (2 CPU processes, gloo)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as tdist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from vistok.quantize import (
    QUANTIZERS,
    MultiScaleResidualVQ,
    PostTrainingQuantizer,
    ResidualVQ,
    VectorQuantizer,
)

WORLD = 2


def _models() -> dict[str, torch.nn.Module]:
    torch.manual_seed(0)  # identical construction; data differs per rank below
    return {
        "vq_cos": VectorQuantizer(64, 8, code_dim=4, distance="cosine", decay=0.5, dead_code_threshold=0.3),
        "vq_euc": VectorQuantizer(64, 4, decay=0.5, dead_code_threshold=0.3),
        "vq_loss": VectorQuantizer(32, 4, update="loss", decay=0.5, dead_code_threshold=0.3),
        "rvq": ResidualVQ(2, 32, 4, decay=0.5, dead_code_threshold=0.3, quantizer_dropout=0.5),
        "msvq": MultiScaleResidualVQ([1, 2, 4], 32, 4, decay=0.5, dead_code_threshold=0.3),
        "ptq": PostTrainingQuantizer(4, 3),
    }


def _batch(name: str, rank: int, step: int) -> torch.Tensor:
    """Different data on each rank: other sizes (uneven gathers), other distributions."""
    n = 150 + 70 * rank + 10 * step
    shift = 2.0 * rank
    if name == "msvq":
        return torch.randn(2 + rank, 4, 4, 4) + shift
    dim = 8 if name == "vq_cos" else 4
    x = torch.randn(n, dim) * (1 + rank) + shift
    x[: n // 3] *= 0.01  # a dense blob: codes elsewhere go unused and get restarted
    return x


def _worker(rank: int, init_file: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    tdist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        models = _models()
        restarts = {name: 0 for name in models}
        for name, q in models.items():
            for vq in [m for m in q.modules() if isinstance(m, VectorQuantizer)]:
                original = vq.restart_dead_codes

                def counting(data: torch.Tensor, _orig=original, _name=name) -> int:
                    n = _orig(data)
                    restarts[_name] += n
                    return n

                vq.restart_dead_codes = counting  # type: ignore[method-assign]
        torch.manual_seed(100 + rank)  # different data and different local randomness per rank
        first_means = {}
        for step in range(6):
            for name, q in models.items():
                x = _batch(name, rank, step)
                out = q(x)
                first_means.setdefault(name, out.quantized.detach().mean().reshape(1))
                if out.loss.requires_grad:
                    out.loss.backward()
        state = {
            f"{name}.{k}": v.detach().clone().contiguous()
            for name, q in models.items()
            for k, v in q.state_dict().items()
        }
        state.update({f"restarts.{k}": torch.tensor([v]) for k, v in restarts.items()})
        state.update({f"local_mean.{k}": v for k, v in first_means.items()})
        save_file(state, os.path.join(out_dir, f"rank{rank}.safetensors"))
    finally:
        tdist.destroy_process_group()


def _bits(t: torch.Tensor) -> torch.Tensor:
    return t.contiguous().view(torch.uint8) if t.dtype != torch.bool else t


def test_two_ranks_learn_identical_codebooks(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(str(tmp_path / "init"), str(tmp_path)), nprocs=WORLD, join=True)
    a = load_file(str(tmp_path / "rank0.safetensors"))
    b = load_file(str(tmp_path / "rank1.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        if key.startswith("local_mean."):
            assert not torch.equal(a[key], b[key]), f"{key}: ranks should have seen different data"
            continue
        assert torch.equal(_bits(a[key]), _bits(b[key])), f"{key} differs between ranks"
    for name in ["vq_cos", "vq_euc", "vq_loss", "rvq", "msvq"]:
        assert int(a[f"restarts.{name}"]) > 0, f"{name}: no dead-code restart happened"
    torch.manual_seed(0)
    fresh = _models()
    assert not torch.equal(a["vq_euc.codebook"], fresh["vq_euc"].codebook)  # it did learn
    assert bool(a["ptq.fitted"]) and not torch.equal(a["ptq.edges"], fresh["ptq"].edges)


def test_no_collective_calls_without_a_process_group(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not tdist.is_initialized()

    def forbidden(*args, **kwargs):
        raise AssertionError("collective called without an initialized process group")

    for fn in ["all_reduce", "broadcast", "all_gather", "gather", "barrier", "get_world_size", "get_rank"]:
        monkeypatch.setattr(tdist, fn, forbidden)
    for name, q in _models().items():
        for step in range(3):
            q(_batch(name, 0, step))
    for name in QUANTIZERS.names():
        kwargs = {"scales": [1, 2]} if name in ("msvq", "var") else {}
        q = QUANTIZERS.create(name, dim=8, **kwargs)
        q(torch.randn(2, 2, 2, 8))
