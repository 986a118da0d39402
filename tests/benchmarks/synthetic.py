"""A small synthetic learning-curve table whose best config is known by construction.

val/nelbo(point, seed, epoch e = 1..E) = floor(point) + 60·exp(−e / τ(decoder)) + 0.2·seed, with
floor = 100 + 8·|log2 β| + 4·|log2(d / 16)| + decoder offset + schedule offset: the best config is
``BEST`` = (deconv_4x4, β = 1, latent 16, constant), seed 0, last epoch: 100 + 60·exp(−E/3).
"""
from __future__ import annotations

import math
from pathlib import Path

from benchmarks.table import FORMAT, Curve, Grid, Table, append_curve, write_meta

# Real decoder names (the search config validates them): offset, τ, seconds per epoch.
DECODERS = {"deconv_4x4": (0.0, 3.0, 1.0), "mlp_large": (6.0, 2.0, 0.5), "mlp_small": (15.0, 1.0, 0.25)}
BEST = ("deconv_4x4", 1.0, 16, "constant")
SCHEDULES = {"constant": 0.0, "linear": 3.0}
GRID = Grid(decoder=tuple(DECODERS), beta=(0.25, 1.0, 4.0), latent_dim=(4, 16, 64), schedule=tuple(SCHEDULES),
            seed=(0, 1))
EPOCHS = 8


def floor(decoder: str, beta: float, latent_dim: int, schedule: str) -> float:
    return 100 + 8 * abs(math.log2(beta)) + 4 * abs(math.log2(latent_dim / 16)) + DECODERS[decoder][0] + SCHEDULES[schedule]


def curve(point, seed: int, epochs: int = EPOCHS) -> Curve:
    _, tau, seconds = DECODERS[point.decoder]
    nelbo = [floor(point.decoder, point.beta, point.latent_dim, point.schedule) + 60 * math.exp(-e / tau) + 0.2 * seed
             for e in range(1, epochs + 1)]
    rate = [5.0 + point.latent_dim / 16] * epochs
    return Curve(point, seed, {
        "val/nelbo": nelbo, "val/rate": rate, "val/distortion": [n - r for n, r in zip(nelbo, rate)],
        "val/active_units": [float(point.latent_dim)] * epochs,
        "time/epoch_seconds": [seconds] * epochs, "time_this_iter_s": [seconds] * epochs,
    })


def write_table(directory: Path, grid: Grid = GRID, epochs: int = EPOCHS) -> Path:
    write_meta(directory, {"format": FORMAT, "grid": grid.to_dict(), "epochs": epochs, "settings": {}, "sessions": []})
    for point, seed in grid.runs():
        append_curve(directory / "part-1of1.jsonl", curve(point, seed, epochs))
    return directory


def load(directory: Path) -> Table:
    return Table.load(write_table(directory))
