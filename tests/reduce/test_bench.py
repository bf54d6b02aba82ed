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
