"""Benchmark: protocol, metrics, runner and reports (`vistok bench`)."""
