"""Benchmarks whose outputs (benchmarks/results/) are the only source of figures in the README."""
