"""Our learning-curve table -> Syne Tune's ``BlackboxTabular`` (the tabulated-benchmark format of
its simulated backend, ``syne_tune.blackbox_repository``).

Syne Tune replays a table through ``UserBlackboxBackend``: for each trial it draws one recorded
seed and reports, per fidelity (epoch) 1..E, every objective of that (config, seed, epoch); the
simulated clock places the report at the objective named ``elapsed_time_attr``, the *cumulative*
seconds since the trial started. So the conversion is:

- configs: the table's grid points, one row each (``decoder``, ``beta``, ``latent_dim``,
  ``schedule`` and, where the table has that axis, ``lr``), in the grid's fixed order;
- ``objectives_evaluations[config, seed, epoch, :]`` = (val/nelbo, cumulative seconds), with the
  seconds from the same column our replay's clock runs on (``time_this_iter_s``), so both harnesses
  see the same clock;
- the configuration space: decoder and schedule ``choice``; β and latent size ``logordinal`` on
  the grid's values (ordered, log scale: what the model-based searchers should see, and the values
  are exactly the table's so the tabular lookup never misses); the latent size as a float; ``lr``
  (where an axis) ``logordinal`` too.

:func:`to_arrays` is pure numpy (tested without Syne Tune); :func:`to_blackbox` builds the Syne
Tune objects from it and is the only function here that imports Syne Tune and pandas.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from benchmarks.snap import snap
from benchmarks.table import Grid, Point, Table

METRIC = "val/nelbo"
ELAPSED = "elapsed_time"   # cumulative seconds since the trial started (Syne Tune's convention)
RESOURCE = "epoch"         # the fidelity
OBJECTIVES = (METRIC, ELAPSED)
CLOCK_METRIC = "time_this_iter_s"  # our replay's default clock (benchmarks.replay --clock)


@dataclass(frozen=True)
class TabularArrays:
    """The table as Syne Tune's tabular layout, before any Syne Tune object exists."""

    points: list[Point]          # row i of the hyperparameters
    seeds: list[int]             # the table's seeds, in order (axis 1)
    fidelities: np.ndarray       # (E,) epochs 1..E
    evaluations: np.ndarray      # (configs, seeds, E, 2): val/nelbo, cumulative seconds
    objectives: tuple[str, ...] = OBJECTIVES

    def hyperparameter_rows(self) -> list[dict[str, Any]]:
        return [p.as_config() for p in self.points]


def to_arrays(table: Table, *, metric: str = METRIC, clock_metric: str = CLOCK_METRIC) -> TabularArrays:
    """The table's curves as a (configs, seeds, epochs, objectives) array.

    Syne Tune's tabular backend cannot end a trial early (every config has all fidelities), so a
    failed or non-finite curve is refused here rather than replayed as something it was not."""
    points = table.grid.points()
    seeds = list(table.grid.seed)
    out = np.empty((len(points), len(seeds), table.epochs, len(OBJECTIVES)))
    for i, point in enumerate(points):
        curves = {c.seed: c for c in table.curves.get(point, [])}
        for j, seed in enumerate(seeds):
            curve = curves.get(seed)
            if curve is None:
                raise ValueError(f"no curve for {point} seed {seed}: Syne Tune's tabular blackbox needs every one")
            if curve.error is not None or curve.epochs != table.epochs:
                raise ValueError(f"curve {point} seed {seed} failed or is short ({curve.epochs} epochs, "
                                 f"error={curve.error!r}); a tabular blackbox cannot replay it")
            values = curve.metrics[metric]
            seconds = curve.metrics.get(clock_metric) or curve.metrics.get("time/epoch_seconds")
            if not seconds:
                raise ValueError(f"curve {point} seed {seed} has no {clock_metric!r} timings")
            if not all(math.isfinite(v) for v in (*values, *seconds)):
                raise ValueError(f"curve {point} seed {seed} has non-finite values; a tabular blackbox cannot replay it")
            out[i, j, :, 0] = values
            out[i, j, :, 1] = np.cumsum(seconds)
    return TabularArrays(points, seeds, np.arange(1, table.epochs + 1), out)


def snap_config(config: dict[str, Any], grid: Grid) -> dict[str, Any]:
    """A proposal of the continuous space -> the table's config our replay would train
    (``benchmarks.snap``: nearest grid value in log space), with the latent size as a float."""
    point = snap({k: config[k] for k in grid.axes}, grid)
    return {**point.as_config(), "latent_dim": float(point.latent_dim)}


def to_blackbox(table: Table, *, space: str = "grid", **kwargs: Any) -> Any:
    """A ``syne_tune.blackbox_repository.blackbox_tabular.BlackboxTabular`` of the table.

    ``space="grid"`` (the Syne Tune convention for a tabulated benchmark): β and latent size are
    ``logordinal`` on the grid, so a random searcher draws each grid value equally often.
    ``space="continuous"``: our replay's space (``benchmarks.methods.search_space``): β
    log-uniform and latent size log-uniform integer over the grid's range, each proposal snapped
    to the nearest grid value in log space as ``benchmarks.snap`` does. Snapping gives the two end
    values half the weight of the inner ones, so the two spaces are *different searches*; this
    one exists to compare the two harnesses on the same search (the calibration)."""
    import pandas as pd
    from syne_tune.blackbox_repository.blackbox_tabular import BlackboxTabular
    from syne_tune.config_space import choice, logordinal, lograndint, loguniform, randint

    if space not in ("grid", "continuous"):
        raise ValueError(f"space must be 'grid' or 'continuous', got {space=}")
    arrays = to_arrays(table, **kwargs)
    grid = table.grid
    config_space = {
        "decoder": choice(list(grid.decoder)),
        "beta": logordinal(sorted(float(b) for b in grid.beta)),
        # floats, not ints: DEHB's encoded searcher decodes an int ordinal to numpy.int64, which its
        # own type check then rejects (syne-tune 0.14.2); numpy.float64 is a float and passes.
        "latent_dim": logordinal(sorted(float(d) for d in grid.latent_dim)),
        "schedule": choice(list(grid.schedule)),
    }
    if grid.lr:   # an axis of this table (e.g. digits-mlp): ordered, log scale, like β
        config_space["lr"] = logordinal(sorted(float(v) for v in grid.lr))
    cls = BlackboxTabular
    if space == "continuous":
        config_space["beta"] = loguniform(min(grid.beta), max(grid.beta))
        config_space["latent_dim"] = lograndint(min(grid.latent_dim), max(grid.latent_dim))
        if grid.lr:
            config_space["lr"] = loguniform(min(grid.lr), max(grid.lr))

        class SnappedBlackboxTabular(BlackboxTabular):
            """Looks a continuous proposal up at its snapped grid config."""

            def _objective_function(self, configuration: Any, fidelity: Any = None, seed: Any = None) -> Any:
                if isinstance(configuration, dict):
                    configuration = {**configuration, **snap_config(configuration, grid)}
                return super()._objective_function(configuration, fidelity, seed)

        cls = SnappedBlackboxTabular
    hyperparameters = pd.DataFrame(arrays.hyperparameter_rows(), columns=list(grid.axes)).astype({"latent_dim": float})
    return cls(
        hyperparameters=hyperparameters, configuration_space=config_space,
        fidelity_space={RESOURCE: randint(1, table.epochs)}, objectives_evaluations=arrays.evaluations,
        fidelity_values=arrays.fidelities, objectives_names=list(arrays.objectives),
    )
