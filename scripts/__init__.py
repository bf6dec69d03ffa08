"""Benchmark and maintenance scripts (run as ``python -m scripts.NAME`` or ``python scripts/NAME.py``)."""
