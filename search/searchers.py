"""The searcher, sampler and scheduler of a single-objective search, built from the config.

``optuna`` is Ray Tune's ``OptunaSearch`` over the define-by-run space (``search/space.py``) with
a seeded TPE sampler; ``random`` the same space with Optuna's RandomSampler; ``bandit_tpe`` the
decoder bandit's searcher (``search/bandit/searcher.py``; with ``objective: rate_distortion`` the
hypervolume bandit, told the same two metrics as ``OptunaSearch``). A ``ConcurrencyLimiter`` keeps
``max_concurrent`` trials in flight; ASHA (``scheduler: {name: asha}``) stops poor trials early.
"""
from __future__ import annotations

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from search.bandit.searcher import BanditTPESearcher
from search.config import Config
from search.config.sections import RATE_DISTORTION
from search.space import DefineByRun
from trainables.beta_conditioning import CURVE_LOSS


def make_sampler(config: Config) -> optuna.samplers.BaseSampler:
    """The seeded Optuna sampler of ``search.algorithm``: TPE (``n_startup_trials`` random trials
    first; multi-objective TPE when there are two objectives), random, GP (Gaussian-process BO,
    ``n_startup_trials`` random first; conditional parameters are fine: it models the parameters a
    trial has), or NSGA-II (a genetic algorithm; its generations are ``n_startup_trials`` trials,
    at least Optuna's minimum of 2)."""
    algorithm, seed, startup = config.search.algorithm, config.seed, config.search.n_startup_trials
    if algorithm == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if algorithm == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if algorithm == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(2, startup))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)


def objectives(config: Config) -> tuple[str | list[str], str | list[str]]:
    """The searcher's metric(s) and mode(s): one, or the two of a rate_distortion search; a
    β-conditioned rate_distortion search (one curve per trial) minimises the curve's score,
    ``rd/mean_beta_loss``, the mean over the β grid of D(β) + β·R(β)."""
    if config.search.objective == "rate_distortion":
        if config.model.beta_conditioned is not None:
            # Each trial is a whole curve: one score of it (trainables.beta_conditioned.curve_metrics).
            return CURVE_LOSS, "min"
        return list(RATE_DISTORTION), ["min"] * len(RATE_DISTORTION)
    return config.search.metric, config.search.mode


def make_searcher(config: Config) -> Searcher:
    """Ray Tune searcher for the config, limited to ``max_concurrent`` trials in flight."""
    search = config.search
    searcher: Searcher
    metric, mode = objectives(config)
    if search.algorithm == "bandit_tpe":   # two objectives: the hypervolume bandit
        searcher = BanditTPESearcher(search.space, metric=metric, mode=mode, seed=config.seed,
                                     n_startup_trials=search.n_startup_trials, exploration=search.exploration,
                                     pooled_trials=search.bandit_pooled_trials(),
                                     arm_comparison=search.arm_comparison)
    else:
        searcher = OptunaSearch(space=DefineByRun(search.space), metric=metric, mode=mode, sampler=make_sampler(config))
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
