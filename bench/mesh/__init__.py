"""End-to-end benchmark of the four-service mesh against calling the upstream directly.

Run from the repository root: `.venv/bin/python -m bench.mesh` (see `--help`).
"""
