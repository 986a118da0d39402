"""The learning-curve table: a grid of configs, every epoch's validation metrics, on disk and in memory.

A tabular benchmark in the style of LCBench / NAS-Bench-201 / YAHPO Gym: learning curves of a
grid of configurations are recorded once (``benchmarks/record_table.py``) and searchers are
replayed against them (``benchmarks/replay.py``) without training anything.

On disk a table is a directory:

- ``meta.json``: format tag, the grid (``decoder``, ``beta``, ``latent_dim``, ``schedule``,
  ``seed`` axes, and optionally ``lr``: a table without it trained every curve at the fixed
  ``settings.lr``), epochs per curve, the fixed trial settings (``trial_spec``), and one entry per
  recording session (command, machine, date).
- ``*.jsonl``: one line per recorded (grid point, seed): the point's keys, ``epochs`` and one
  list per metric (index e = epoch e + 1), plus ``error`` for a trial that failed (its curve
  holds the epochs it reported). Files are appended line by line, so a session that is cut off
  loses at most the line being written; a truncated last line is skipped on reading.

No Ray here: pure data handling, used by both the recorder and the replay.
"""
from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

FORMAT = "vaesearch-lc-table/1"
META_FILE = "meta.json"
AXES = ("decoder", "beta", "latent_dim", "schedule")   # a config of the table (the searched keys)
OPTIONAL_AXES = ("lr",)   # axes a table may add; without one, its value is a fixed setting of the table
SEED_AXIS = "seed"
METRICS = ("val/nelbo", "val/rate", "val/distortion", "val/active_units", "time/epoch_seconds", "time_this_iter_s")
DIGITS = 4  # decimals kept per value: 1e-4 nats is far below seed noise, and keeps lines short


@dataclass(frozen=True, order=True)
class Point:
    """One config of the grid (without the seed)."""

    decoder: str
    beta: float
    latent_dim: int
    schedule: str
    lr: float | None = None   # None: the table has no lr axis

    def as_config(self) -> dict[str, Any]:
        """The trial config keys the trainable reads (``trainables.spec.TrialSpec``)."""
        config: dict[str, Any] = {"decoder": self.decoder, "beta": self.beta, "latent_dim": self.latent_dim,
                                  "schedule": self.schedule}
        if self.lr is not None:
            config["lr"] = self.lr
        return config


@dataclass(frozen=True)
class Grid:
    """The axes of a table; every combination, times every seed, is one curve."""

    decoder: tuple[str, ...]
    beta: tuple[float, ...]
    latent_dim: tuple[int, ...]
    schedule: tuple[str, ...]
    seed: tuple[int, ...]
    lr: tuple[float, ...] = ()   # empty: not an axis of this table

    @property
    def axes(self) -> tuple[str, ...]:
        """The config axes this table varies (the seed apart)."""
        return (*AXES, *(a for a in OPTIONAL_AXES if getattr(self, a)))

    def __post_init__(self) -> None:
        for name in (*self.axes, SEED_AXIS):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"grid axis {name!r} is empty; give at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"grid axis {name!r} has repeated values, got {values}")
        if any(b <= 0 for b in self.beta) or any(d < 1 for d in self.latent_dim):
            raise ValueError(f"beta must be > 0 and latent_dim >= 1, got {self.beta=}, {self.latent_dim=}")
        if any(not lr > 0 for lr in self.lr):
            raise ValueError(f"lr must be > 0, got {self.lr=}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[Any]]) -> Grid:
        missing = [k for k in (*AXES, SEED_AXIS) if k not in data]
        if missing:
            raise ValueError(f"grid is missing axes {missing}; it needs {[*AXES, SEED_AXIS]}")
        return cls(
            decoder=tuple(str(v) for v in data["decoder"]), beta=tuple(float(v) for v in data["beta"]),
            latent_dim=tuple(int(v) for v in data["latent_dim"]), schedule=tuple(str(v) for v in data["schedule"]),
            seed=tuple(int(v) for v in data[SEED_AXIS]), lr=tuple(float(v) for v in data.get("lr", ())),
        )

    def to_dict(self) -> dict[str, list[Any]]:
        return {name: list(getattr(self, name)) for name in (*self.axes, SEED_AXIS)}

    def points(self) -> list[Point]:
        """Every config, decoder-major (a fixed order: parts and resume rely on it)."""
        return [Point(*values)
                for values in product(self.decoder, self.beta, self.latent_dim, self.schedule, self.lr or (None,))]

    def runs(self) -> list[tuple[Point, int]]:
        """Every (config, seed) curve to record, seed-major so a part of the grid covers every config early."""
        return [(p, s) for s in self.seed for p in self.points()]

    @property
    def size(self) -> int:
        return len(self.points()) * len(self.seed)


@dataclass
class Curve:
    """One recorded trial: a point, a seed and its per-epoch metrics."""

    point: Point
    seed: int
    metrics: dict[str, list[float]]
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs(self) -> int:
        return len(self.metrics["val/nelbo"])

    def to_json(self) -> str:
        row: dict[str, Any] = {**self.point.as_config(), SEED_AXIS: self.seed, "epochs": self.epochs}
        row.update({k: [_round(v) for v in vs] for k, vs in self.metrics.items()})
        if self.error:
            row["error"] = self.error
        row.update(self.extra)
        return json.dumps(row, separators=(",", ":"))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Curve:
        point = Point(str(row["decoder"]), float(row["beta"]), int(row["latent_dim"]), str(row["schedule"]),
                      float(row["lr"]) if row.get("lr") is not None else None)
        # A non-finite value (a diverged epoch) is written as null.
        metrics = {k: [math.nan if v is None else float(v) for v in row[k]] for k in METRICS if k in row}
        if "val/nelbo" not in metrics:
            raise ValueError(f"curve row has no 'val/nelbo', got keys {sorted(row)}")
        lengths = {k: len(v) for k, v in metrics.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"curve row's metric lists differ in length: {lengths}")
        known = {*AXES, *OPTIONAL_AXES, SEED_AXIS, "epochs", "error", *METRICS}
        return cls(point, int(row[SEED_AXIS]), metrics, row.get("error"),
                   {k: v for k, v in row.items() if k not in known})


def _round(value: float) -> float | None:
    value = float(value)
    return round(value, DIGITS) if math.isfinite(value) else None


def read_meta(directory: Path) -> dict[str, Any]:
    path = Path(directory) / META_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no learning-curve table at {directory}: {META_FILE} is missing "
                                "(record one with `python -m benchmarks.record_table --out DIR`)")
    meta = json.loads(path.read_text())
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return meta


def write_meta(directory: Path, meta: Mapping[str, Any]) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (META_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(directory / META_FILE)  # atomic: a reader never sees half a meta file


def iter_curves(directory: Path) -> Iterator[Curve]:
    """Every curve of every ``*.jsonl`` file (sorted names), skipping unreadable (truncated) lines."""
    for path in sorted(Path(directory).glob("*.jsonl")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield Curve.from_row(json.loads(line))
            except (ValueError, KeyError, TypeError) as exc:
                log.warning("%s:%d skipped (%s)", path, number, exc)


def append_curve(path: Path, curve: Curve) -> None:
    with open(path, "a") as f:
        f.write(curve.to_json() + "\n")
        f.flush()


@dataclass
class Table:
    """A complete table in memory: for each point, one curve per seed."""

    grid: Grid
    epochs: int
    curves: dict[Point, list[Curve]]
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_curves(cls, grid: Grid, epochs: int, curves: Iterable[Curve], meta: dict[str, Any] | None = None,
                    *, require_complete: bool = True) -> Table:
        by_point: dict[Point, dict[int, Curve]] = {}
        for curve in curves:
            seen = by_point.setdefault(curve.point, {})
            if curve.seed in seen:
                log.warning("duplicate curve for %s seed %d; keeping the first", curve.point, curve.seed)
                continue
            seen[curve.seed] = curve
        if require_complete:
            missing = [(p, s) for p, s in grid.runs() if s not in by_point.get(p, {})]
            if missing:
                raise ValueError(f"the table is incomplete: {len(missing)} of {grid.size} curves missing "
                                 f"(first: {missing[0]}); record the rest with benchmarks.record_table")
        short = [c for seeds in by_point.values() for c in seeds.values() if c.error is None and c.epochs != epochs]
        if short:
            raise ValueError(f"{len(short)} curves without an error have != {epochs} epochs, e.g. {short[0].point}")
        table = {p: [seeds[s] for s in sorted(seeds)] for p, seeds in by_point.items()}
        return cls(grid, epochs, table, dict(meta or {}))

    @classmethod
    def load(cls, directory: str | Path) -> Table:
        directory = Path(directory)
        meta = read_meta(directory)
        return cls.from_curves(Grid.from_dict(meta["grid"]), int(meta["epochs"]), iter_curves(directory), meta)

    def values(self, metric: str = "val/nelbo") -> list[float]:
        """Every finite recorded value of ``metric`` (all points, seeds and epochs)."""
        return [v for cs in self.curves.values() for c in cs for v in c.metrics.get(metric, []) if _finite(v)]

    def final_values(self, metric: str = "val/nelbo") -> list[float]:
        """The last recorded value of every curve that did not fail."""
        return [c.metrics[metric][-1] for cs in self.curves.values() for c in cs if c.error is None and c.epochs]


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)
