"""Benchmarks of Ridgeline; `make bench` runs them all (bench/run.py)."""
