"""Benchmarks. ``make bench`` (``python -m bench``) runs them and prints markdown tables; the
figures are recorded in docs/benchmarks.md with the machine and the date."""
