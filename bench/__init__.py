"""Benchmarks of dsrprep against the lab fleet, run by hand (`python -m bench.run`), never by the test suite."""
