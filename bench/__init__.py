"""Benchmarks, one module per question (bench/REPORT.md lists them): each measures in one run and
writes bench/results/<name>-<timestamp>.json."""
