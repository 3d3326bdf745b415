"""Benchmarks: each `vitrina bench <task>` prints a markdown table and writes JSON."""
