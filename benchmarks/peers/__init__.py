"""Peer HPO methods (Syne Tune) replayed on our learning-curve tables, and the comparison report.

Benchmark-only: the runner needs Syne Tune, which lives in its own virtualenv (``make peers``,
``.venv-peers``), never in the runtime dependencies; see ``benchmarks/README.md``.
"""
