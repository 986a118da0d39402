"""The YAML search space as an Optuna define-by-run function, wrapped in Ray Tune's OptunaSearch.

Define-by-run is the only way ``OptunaSearch`` supports conditional parameters: the KL schedule
is a categorical and each schedule's own parameters are suggested only when it is chosen
(``schedule.<name>.<param>``, so TPE models each schedule's parameters separately).
``random`` uses the same space with Optuna's RandomSampler, so the comparison is like for like.
"""
from __future__ import annotations

from typing import Any

import optuna
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from search.config import Config, FloatRange, IntRange, SearchSpace

SCHEDULE_PARAM_PREFIX = "schedule."  # matches trainables.trial.SCHEDULE_PARAM_PREFIX


def _suggest(trial: optuna.Trial, name: str, spec: Any) -> tuple[Any, bool]:
    """One parameter -> (value, whether Optuna suggested it). A one-element list or a scalar is fixed."""
    if isinstance(spec, IntRange):
        return trial.suggest_int(name, spec.low, spec.high, log=spec.log), True
    if isinstance(spec, FloatRange):
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log), True
    if isinstance(spec, list) and len(spec) > 1:
        return trial.suggest_categorical(name, spec), True
    return (spec[0] if isinstance(spec, list) else spec), False


class DefineByRun:
    """Optuna define-by-run function over a :class:`SearchSpace`. Returns the fixed (non-suggested)
    values, which OptunaSearch merges with the suggested ones into the trial's config. A class,
    not a closure, so Tune can pickle the searcher into its experiment checkpoint (for resume)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        specs = {k: getattr(space, k) for k in ("beta", "latent_dim", "lr", "decoder", "free_bits")}
        self.specs = {k: v for k, v in specs.items() if v is not None}

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        fixed: dict[str, Any] = {}
        for key, spec in self.specs.items():
            value, suggested = _suggest(trial, key, spec)
            if not suggested:
                fixed[key] = value
        if self.space.schedule:
            name, suggested = _suggest(trial, "schedule", list(self.space.schedule))
            if not suggested:
                fixed["schedule"] = name
            for param, spec in self.space.schedule[name].items():
                key = f"{SCHEDULE_PARAM_PREFIX}{name}.{param}"
                value, suggested = _suggest(trial, key, spec)
                if not suggested:
                    fixed[key] = value
        return fixed


def define_by_run(space: SearchSpace) -> DefineByRun:
    return DefineByRun(space)


def make_sampler(config: Config) -> optuna.samplers.BaseSampler:
    """TPE (seeded; ``n_startup_trials`` random trials first) or random."""
    if config.search.algorithm == "random":
        return optuna.samplers.RandomSampler(seed=config.seed)
    return optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=config.search.n_startup_trials)


def make_searcher(config: Config) -> Searcher:
    """Ray Tune searcher for the config, limited to ``max_concurrent`` trials in flight."""
    search = config.search
    searcher: Searcher
    if search.algorithm == "bandit_tpe":
        # Imported here: search.bandit builds on this module.
        from search.bandit.searcher import BanditTPESearcher

        searcher = BanditTPESearcher(search.space, metric=search.metric, mode=search.mode, seed=config.seed,
                                     n_startup_trials=search.n_startup_trials, exploration=search.exploration)
    else:
        searcher = OptunaSearch(space=define_by_run(search.space), metric=search.metric, mode=search.mode,
                                sampler=make_sampler(config))
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)
