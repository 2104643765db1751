"""Benchmarks: `python -m bench.run` (pipeline limit, service, seed-style baseline) and `bench.sweep`."""
