"""Benchmarks for lstmviz (`make bench`); not part of the installed package."""
