"""Snapping a searcher's proposal to the nearest config of the learning-curve table.

A searcher proposes points of the live search space (β continuous, latent size from a list or
a range, a schedule with its own parameters); the table holds a grid. The replay trains "the
nearest recorded config":

- ``decoder`` and ``schedule``: categorical, must be one of the grid's values (anything else is
  an error: the replay space is built from the grid, so it would be a bug);
- ``beta`` and ``latent_dim``: the grid value nearest in log space, |log x − log g| (β and the
  latent size are searched log-uniformly, and 3 is as far from 2 as 6 is from 4); a tie goes to
  the smaller grid value;
- everything else (``lr``, ``schedule.<name>.<param>``, ``free_bits``) is ignored: the table was
  recorded at one value of each (the trainable's defaults), so it cannot tell them apart.

Pure functions, no Ray.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from benchmarks.table import Grid, Point


def nearest_log(value: float, grid: Sequence[float]) -> float:
    """The grid value nearest to ``value`` in log space (ties: the smaller grid value)."""
    if not grid:
        raise ValueError("cannot snap to an empty grid")
    if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
        raise ValueError(f"a log-space value must be a finite number > 0, got {value=}")
    return min(sorted(grid), key=lambda g: abs(math.log(value) - math.log(g)))


def _categorical(config: Mapping[str, Any], key: str, values: Sequence[str]) -> str:
    if key not in config:
        raise ValueError(f"the proposal has no {key!r} (the table's grid varies it), got {dict(config)}")
    value = config[key]
    if value not in values:
        raise ValueError(f"{key}={value!r} is not in the table's grid {list(values)}")
    return str(value)


def snap(config: Mapping[str, Any], grid: Grid, defaults: Mapping[str, Any] | None = None) -> Point:
    """The grid point a proposed trial config replays. A key the searcher did not propose (a
    fixed value of the space) is taken from ``defaults`` when given there."""
    merged = {**(defaults or {}), **config}
    if "beta" not in merged or "latent_dim" not in merged:
        raise ValueError(f"the proposal needs 'beta' and 'latent_dim', got {dict(config)}")
    return Point(
        decoder=_categorical(merged, "decoder", grid.decoder),
        beta=float(nearest_log(float(merged["beta"]), grid.beta)),
        latent_dim=int(nearest_log(float(merged["latent_dim"]), [float(d) for d in grid.latent_dim])),
        schedule=_categorical(merged, "schedule", grid.schedule),
        lr=_lr(merged, grid),
    )


def _lr(config: Mapping[str, Any], grid: Grid) -> float | None:
    """The learning rate snapped to the grid's (log space) where the table varies it; else None
    (the table trained every curve at one fixed lr, so a proposed one is ignored)."""
    if not grid.lr:
        return None
    if "lr" not in config:
        raise ValueError(f"the proposal has no 'lr' (the table's grid varies it), got {dict(config)}")
    return float(nearest_log(float(config["lr"]), grid.lr))
