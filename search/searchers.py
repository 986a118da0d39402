"""The searcher, sampler and scheduler of a single-objective search, built from the config.

``optuna`` is Ray Tune's ``OptunaSearch`` over the define-by-run space (``search/space.py``) with
a seeded TPE sampler; ``random`` the same space with Optuna's RandomSampler; ``bandit_tpe`` the
decoder bandit's searcher (``search/bandit/searcher.py``). A ``ConcurrencyLimiter`` keeps
``max_concurrent`` trials in flight; ASHA (``scheduler: {name: asha}``) stops poor trials early.
"""
from __future__ import annotations

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from search.bandit.searcher import BanditTPESearcher
from search.config import Config
from search.space import DefineByRun


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
        searcher = BanditTPESearcher(search.space, metric=search.metric, mode=search.mode, seed=config.seed,
                                     n_startup_trials=search.n_startup_trials, exploration=search.exploration)
    else:
        searcher = OptunaSearch(space=DefineByRun(search.space), metric=search.metric, mode=search.mode,
                                sampler=make_sampler(config))
    return ConcurrencyLimiter(searcher, max_concurrent=search.max_concurrent)


def make_scheduler(config: Config) -> TrialScheduler:
    """ASHA over epochs (grace period capped at the trial's epochs), or FIFO."""
    sched = config.search.scheduler
    if sched.name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration", max_t=config.train.epochs,
            grace_period=min(sched.grace_period, config.train.epochs), reduction_factor=sched.reduction_factor,
        )
    return FIFOScheduler()
