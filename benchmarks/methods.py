"""The search methods the replay compares, built by the same code a live search uses.

Each method is a searcher (``search.space.make_searcher`` on a ``search.config.Config``: Ray
Tune's ``OptunaSearch`` with TPE, GP or random sampling, or our ``BanditTPESearcher``, wrapped in
Tune's ``ConcurrencyLimiter``) and a scheduler (``search.searchers.make_scheduler``: FIFO or ASHA, or
Tune's ``HyperBandScheduler``). The search space is the table's: the grid's decoders and
schedules as categoricals, β log-uniform over the grid's range (snapped back to the grid),
the latent size an integer log range (snapped likewise); the learning rate and schedule
parameters are not searched (the table holds one value of each).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ray.tune.schedulers import HyperBandScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher

from benchmarks.table import Grid

# HyperBand pauses trials at its rungs and they stay live (counted by the ConcurrencyLimiter)
# until their bracket is halved; with only W live trials a bracket could never fill. Live
# searches with HyperBand run without a tight concurrency limit, so the replay allows this many.
HYPERBAND_LIVE_TRIALS = 32


@dataclass(frozen=True)
class Method:
    name: str
    algorithm: str           # search.algorithm: random | optuna | gp | bandit_tpe
    scheduler: str           # none | asha | hyperband
    description: str
    search: tuple[tuple[str, Any], ...] = ()   # further search.* settings of the live config


METHODS: dict[str, Method] = {m.name: m for m in (
    Method("random", "random", "none", "Optuna RandomSampler, every trial to the end"),
    Method("optuna", "optuna", "none", "Optuna TPE (decoder categorical), every trial to the end"),
    Method("optuna+asha", "optuna", "asha", "Optuna TPE + ASHA early stopping"),
    Method("random+asha", "random", "asha", "Optuna RandomSampler + ASHA early stopping (the Syne Tune "
           "ASHA calibration, benchmarks/peers)"),
    Method("gp", "gp", "none", "Optuna GPSampler (Gaussian-process BO), every trial to the end"),
    Method("gp+asha", "gp", "asha", "Optuna GPSampler + ASHA early stopping"),
    Method("hyperband", "random", "hyperband", "random sampling + Tune's HyperBandScheduler"),
    Method("bandit_tpe", "bandit_tpe", "none", "UCB1 over decoders, a TPE study per decoder, each decoder's "
           "first 10 trials from a study pooled over every decoder's trials"),
    Method("bandit_tpe+asha", "bandit_tpe", "asha", "bandit_tpe + ASHA early stopping"),
    Method("bandit_tpe-per-arm", "bandit_tpe", "none", "bandit_tpe before pooling: every trial from its decoder's "
           "own study (search.pooled_trials: 0)", (("pooled_trials", 0),)),
    Method("bandit_tpe-per-arm+asha", "bandit_tpe", "asha", "bandit_tpe-per-arm + ASHA early stopping",
           (("pooled_trials", 0),)),
    Method("bandit_tpe-common-step", "bandit_tpe", "none", "bandit_tpe before pairwise comparison: every decoder "
           "compared at the deepest epoch all have reached (search.arm_comparison: common_step)",
           (("arm_comparison", "common_step"),)),
    Method("bandit_tpe-common-step+asha", "bandit_tpe", "asha", "bandit_tpe-common-step + ASHA early stopping",
           (("arm_comparison", "common_step"),)),
)}


def available_methods() -> list[str]:
    return list(METHODS)


def lookup(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise ValueError(f"unknown replay method, got {name=}; valid names: {available_methods()}") from None


def search_space(grid: Grid) -> dict[str, Any]:
    """The table's grid as a ``search.space`` mapping (what a YAML ``search.space`` would say)."""
    def rng(values: tuple[float, ...] | tuple[int, ...]) -> Any:
        return {"low": min(values), "high": max(values), "log": True} if len(values) > 1 else values[0]

    space: dict[str, Any] = {
        "decoder": list(grid.decoder) if len(grid.decoder) > 1 else grid.decoder[0],
        "beta": rng(grid.beta),
        "latent_dim": rng(grid.latent_dim),
        "schedule": {name: {} for name in grid.schedule},
    }
    if grid.lr:
        space["lr"] = rng(grid.lr)
    return space


def build_config(method: Method, grid: Grid, *, epochs: int, seed: int, workers: int,
                 metric: str = "val/nelbo", overrides: Mapping[str, Any] | None = None) -> Any:
    """The ``search.config.Config`` a live search of this method over the table's space would use."""
    from search.config import parse_config

    live = HYPERBAND_LIVE_TRIALS if method.scheduler == "hyperband" else workers
    search: dict[str, Any] = {
        "algorithm": method.algorithm, "metric": metric, "max_concurrent": max(live, workers),
        "space": search_space(grid),
        "scheduler": {"name": "asha" if method.scheduler == "asha" else "none"},
    }
    search.update(dict(method.search))
    search.update(overrides or {})
    return parse_config({"seed": seed, "train": {"epochs": epochs}, "search": search})


def build(method: Method, config: Any, *, epochs: int, hyperband_eta: float = 3.0) -> tuple[Searcher, TrialScheduler]:
    """Searcher and scheduler, by the live search's own factories."""
    from search.searchers import make_scheduler, make_searcher

    searcher = make_searcher(config)
    scheduler: TrialScheduler
    if method.scheduler == "hyperband":
        scheduler = HyperBandScheduler(time_attr="training_iteration", max_t=epochs, reduction_factor=hyperband_eta)
    else:
        scheduler = make_scheduler(config)
    return searcher, scheduler


def max_pending(searcher: Searcher) -> int:
    """Tune's ``_get_max_pending_trials`` for a custom searcher: the ConcurrencyLimiter's limit, else 1."""
    inner: Any = searcher
    while inner is not None:
        if isinstance(inner, ConcurrencyLimiter):
            return inner.max_concurrent
        inner = getattr(inner, "searcher", None)
    return 1

