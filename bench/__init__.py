"""Benchmarks for bindwatch (issue #6): ``bench/run.sh [--quick] [names...]``. Never part of the test suite."""
