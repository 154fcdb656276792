"""sipfork's benchmark harness: sipfork beside Kamailio under SIPp load.

Run from the repository root: `.venv/bin/python -m benchmarks run` (see
benchmarks/README.md).
"""
