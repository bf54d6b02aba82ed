"""The reduction benchmark's pure parts: analytic FLOPs, interleaved timing, the CLI entry."""

from __future__ import annotations

import math

from vistok.reduce.bench import _configs, block_flops, time_interleaved


def test_block_flops_known_answer() -> None:
    # one block, n = 2 tokens, D = 3, D_mlp = 5: 4nD^2 + 2n^2D + 2nD*D_mlp MACs, x2
    assert block_flops([(2, 2)], 3, 5) == 2 * (4 * 2 * 9 + 2 * 4 * 3 + 2 * 2 * 3 * 5)
    # merging before the MLP makes the MLP cheaper than the attention part's count
    assert block_flops([(4, 2)], 3, 5) < block_flops([(4, 4)], 3, 5)


def test_configs_and_timing() -> None:
    cfgs = _configs(["tome", "random"], [0.5], 13)
    assert cfgs == [("tome", {"keep": 0.5}), ("random", {"keep": 0.5}), ("tome", {"r": 13})]
    calls = []
    best = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, rounds=2)
    assert calls == ["a", "b", "a", "b", "a", "b"]  # warm-up, then interleaved rounds
    assert all(0 <= v < math.inf for v in best.values())


def test_cli_registers_reduce_bench() -> None:
    from vistok.cli import build_parser

    args = build_parser().parse_args(["reduce-bench", "--methods", "tome", "--keeps", "0.5", "--no-vistok"])
    assert args.methods == ["tome"] and args.keeps == [0.5] and args.no_vistok and args.threads == 2


def test_markdown_report() -> None:
    from vistok.reduce.bench import markdown

    result = {
        "threads": 2, "torch": "x", "fidelity_note": "no --weights given",
        "speed": {"model": "m", "batch": 1, "size": 224, "rounds": 1, "rows": [
            {"method": "tome", "r": 13, "kept_fraction": 0.2, "speedup": 1.6, "flops_ratio": 1.7, "token_layers_ratio": 1.57},
            {"method": "unreduced", "seconds": 1.0, "speedup": 1.0, "flops_ratio": 1.0},
        ]},
        "exactness": {"sdpa": {"tome": True}, "eager": {"tome": False}},
    }  # fmt: skip
    text = markdown(result)
    assert "| tome | r=13 | 0.20 | 1.60 | 1.70 | 1.57 |" in text
    assert "sdpa: 1/1 methods, eager: 0/1 methods" in text
