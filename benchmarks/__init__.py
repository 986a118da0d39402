"""Reproducible benchmarks: the trainable's overhead, the learning-curve table and searcher replay.

Run the scripts as modules from the repository root (``python -m benchmarks.replay ...``) so
that they can import one another.
"""
