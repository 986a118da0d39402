"""bandit_tpe: a UCB1 bandit over decoder architectures, with one TPE study per decoder.

Across trials, UCB1 (Auer, Cesa-Bianchi & Fischer 2002, "Finite-time analysis of the multiarmed
bandit problem") picks the decoder (the arm) of the next trial; that arm's own Optuna study, a
TPE sampler (Bergstra et al. 2011, "Algorithms for hyper-parameter optimization"), proposes β,
latent dimension, learning rate and the KL schedule. Results go back to both.

UCB scores an arm by its *best* value so far, not its running mean: a VAE search's values are
heavy-tailed (one bad β ruins a trial) and improve as TPE learns, so the mean would punish an arm
for its early random trials. Arms are compared at equal training: every epoch any trial reports
(running ones included) updates its arm's best value at that epoch, and each pair of arms is
compared at the deepest epoch both have reached; an arm's UCB quality is its share of pairwise
wins (:func:`pairwise_quality`, ``arm_comparison="pairwise"``). Comparing final values instead
would mix an early-stopped trial's first-epoch value with another arm's 20-epoch value, and would
leave the bandit blind while the first trials run. ``arm_comparison="common_step"`` is the rule
before: every arm at the deepest epoch all reporting arms have reached (:func:`equal_fidelity`),
which an arm that ASHA cut at its first rung pins to epoch 1 for the rest of the search. Each arm
has its own study because the good β / latent size depend on the decoder; one shared study would
blur them.

But an arm's own study knows nothing until that arm has trials of its own, while much of what the
other arms' trials show holds for every decoder (a bad learning rate or KL schedule is bad for all
of them). So until an arm has finished ``pooled_trials`` trials of its own, its trials are proposed
by one *pooled* study that learns from every arm's finished trials (the decoder fixed by the
bandit, TPE over the rest); after that by the arm's own study, which holds every finished trial of
that arm, pooled ones included. Each finished trial is told to the study that proposed it and
copied into the other one (the pooled study, or its arm's own). ``pooled_trials=0`` is the
per-arm-only searcher. See DESIGN.md, "The decoder bandit".

With two objectives (``metric=["val/rate", "val/distortion"]``, ``mode=["min", "min"]``, as the
rate–distortion mode hands them to Tune's ``OptunaSearch``) it is the *hypervolume bandit*: each
arm's study is a multi-objective TPE study, told both values of a finished trial, and UCB1's
reward for an arm is its share of the hypervolume of the front of all finished trials
(:func:`search.bandit.hypervolume.hypervolume_rewards`), with no rescaling (it is already in
[0, 1]). Only finished trials count (every trial of that mode runs to its last epoch; a front of
half-trained points would mix fidelities), and an arm tried but with no finished trial yet gets
the exploration bonus alone (reward 0): its first trial is still running, and optimism would
send the next trials to it before anything is known.
"""
from __future__ import annotations

import logging
import math
import pickle
from dataclasses import dataclass
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState
from ray.tune.result import TRAINING_ITERATION
from ray.tune.search import UNDEFINED_METRIC_MODE, Searcher
from ray.tune.search.variant_generator import parse_spec_vars

from search.bandit.hypervolume import hypervolume_rewards
from search.bandit.ucb import ARM_COMPARISONS, MODES, ArmStats, equal_fidelity, pairwise_quality, ucb_arm, ucb_pick
from search.config import SearchSpace
from search.space import DefineByRun
from trainables.search_names import DECODER_KEY

logger = logging.getLogger(__name__)


def _arm_names(space: SearchSpace) -> list[str]:
    decoders = space.decoder_choices()
    if not isinstance(decoders, list) or len(decoders) < 2:
        raise ValueError(
            f"bandit_tpe needs a list of decoders to choose from (at least 2), got {decoders=}; "
            "with one decoder use the plain optuna search"
        )
    if len(set(decoders)) != len(decoders):
        raise ValueError(f"bandit_tpe arms must be distinct decoders, got {decoders=}")
    return list(decoders)


def _finite(value: Any) -> float | None:
    """The value as a float if it is a finite number, else None (NaN, inf, missing, not a number)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _objectives(metric: str | list[str] | None, mode: str | list[str] | None) -> None:
    """Refuse a metric/mode pair the searcher cannot run: one metric with "min"/"max", or the two
    minimised objectives of the hypervolume bandit (``search.pareto`` minimises both)."""
    if mode is None:
        return
    if isinstance(mode, str):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode=}")
        if isinstance(metric, list):
            raise ValueError(f"one mode for a list of metrics: give one mode per metric, got {metric=}, {mode=}")
        return
    if len(mode) != 2 or any(m != "min" for m in mode):
        raise ValueError(f"with two objectives bandit_tpe minimises both: mode must be ['min', 'min'], got {mode=}")
    if metric is not None and (not isinstance(metric, list) or len(metric) != len(mode)):
        raise ValueError(f"give one metric per mode, got {metric=}, {mode=}")


@dataclass
class _Live:
    arm: int
    trial: optuna.Trial
    config: dict[str, Any]
    pooled: bool = False   # proposed by the pooled study (else by the arm's own)


class _Arms:
    """Bookkeeping: per-arm studies, counts and best values, and the trials in flight."""

    def __init__(self, names: list[str], seed: int, n_startup_trials: int, pooled_trials: int = 0) -> None:
        self.names = names
        self.seed = seed
        self.pooled_trials = pooled_trials
        self.pooled: optuna.Study | None = None  # created with the arms' studies when pooled_trials > 0
        # Untried arms are tried in a seeded random order: the order of the config's decoder list
        # says nothing about their quality, and with ASHA the first trials run longest.
        self.first = [int(i) for i in np.random.default_rng(seed).permutation(len(names))]
        self.n_startup_trials = n_startup_trials
        self.studies: list[optuna.Study] = []  # created once the direction (mode) is known
        self.trials = [0] * len(names)
        self.completed = [0] * len(names)
        self.best: list[float | None] = [None] * len(names)
        self.curves: list[dict[int, float]] = [{} for _ in names]  # per arm: step -> best value reported
        self.points: list[list[tuple[float, float]]] = [[] for _ in names]  # two objectives: finished trials
        self.live: dict[str, _Live] = {}
        self.finished: set[str] = set()

    def create_studies(self, mode: str | list[str]) -> None:
        """One study per arm; a list of modes makes each a multi-objective study (TPE handles both)."""
        modes = [mode] if isinstance(mode, str) else mode
        directions = ["minimize" if m == "min" else "maximize" for m in modes]
        # NopPruner: early stopping is the Tune scheduler's job (ASHA), as in OptunaSearch.
        self.studies = [
            optuna.create_study(
                directions=directions,
                sampler=optuna.samplers.TPESampler(seed=self.seed + i, n_startup_trials=self.n_startup_trials),
                pruner=optuna.pruners.NopPruner(),
                study_name=f"bandit_tpe-{name}",
            )
            for i, name in enumerate(self.names)
        ]
        if self.pooled_trials > 0:
            self.pooled = optuna.create_study(
                directions=directions,
                sampler=optuna.samplers.TPESampler(seed=self.seed + len(self.names),
                                                   n_startup_trials=self.n_startup_trials),
                pruner=optuna.pruners.NopPruner(), study_name="bandit_tpe-pooled",
            )

    def study_of(self, entry: _Live) -> optuna.Study:
        return self.pooled if entry.pooled and self.pooled is not None else self.studies[entry.arm]

    def start(self, trial_id: str, arm: int, define: DefineByRun) -> dict[str, Any]:
        study = self.pooled if self.pooled is not None and self.completed[arm] < self.pooled_trials else self.studies[arm]
        trial = study.ask()
        fixed = define(trial)
        config = {**trial.params, **fixed, DECODER_KEY: self.names[arm]}
        self.live[trial_id] = _Live(arm, trial, config, pooled=study is self.pooled)
        self.trials[arm] += 1
        return config

    def share(self, entry: _Live, told: optuna.trial.FrozenTrial) -> None:
        """Copy a finished trial into the other study that learns from it: the pooled study (one
        of an arm's own) or the arm's own (one of the pooled). Only COMPLETE trials carry values."""
        if self.pooled is None or told.state != TrialState.COMPLETE:
            return
        other = self.studies[entry.arm] if entry.pooled else self.pooled
        other.add_trial(optuna.trial.create_trial(params=told.params, distributions=told.distributions,
                                                  values=told.values, state=TrialState.COMPLETE))

    def finish(self, trial_id: str) -> _Live | None:
        entry = self.live.pop(trial_id, None)
        if entry is not None:
            self.finished.add(trial_id)
        return entry

    def record(self, arm: int, value: float, mode: str) -> None:
        better = min if mode == "min" else max
        self.completed[arm] += 1
        self.best[arm] = value if self.best[arm] is None else better(self.best[arm], value)

    def report(self, arm: int, step: int, value: float, mode: str) -> None:
        better = min if mode == "min" else max
        curve = self.curves[arm]
        curve[step] = value if step not in curve else better(curve[step], value)

    def add_point(self, arm: int, point: tuple[float, float]) -> None:
        self.completed[arm] += 1
        self.points[arm].append(point)

    def rewards(self) -> list[float]:
        return hypervolume_rewards(self.points)

    def stats(self, two_objectives: bool = False) -> list[ArmStats]:
        rewards = self.rewards() if two_objectives else [None] * len(self.names)
        return [
            ArmStats(arm=name, trials=self.trials[i], completed=self.completed[i], best=self.best[i], reward=rewards[i])
            for i, name in enumerate(self.names)
        ]


class BanditTPESearcher(Searcher):
    """Ray Tune searcher: UCB1 picks the decoder, that decoder's TPE study proposes the rest.

    A trial stopped early by a scheduler (ASHA) is told COMPLETE with its last reported value, so
    TPE learns from it instead of discarding it as PRUNED. Picklable: no closures, no locks kept.
    ``metric``/``mode`` as lists of two (both "min") make it the hypervolume bandit (module doc).
    """

    def __init__(
        self,
        space: SearchSpace,
        *,
        metric: str | list[str] | None = None,
        mode: str | list[str] | None = None,
        seed: int = 0,
        n_startup_trials: int = 5,
        exploration: float = 1.0,
        pooled_trials: int = 0,
        arm_comparison: str = "pairwise",
    ) -> None:
        names = _arm_names(space)
        _objectives(metric, mode)
        if exploration < 0:
            raise ValueError(f"exploration must be >= 0, got {exploration=}")
        if n_startup_trials < 0:
            raise ValueError(f"n_startup_trials must be >= 0, got {n_startup_trials=}")
        if pooled_trials < 0:
            raise ValueError(f"pooled_trials must be >= 0, got {pooled_trials=}")
        if arm_comparison not in ARM_COMPARISONS:
            raise ValueError(f"arm_comparison must be one of {ARM_COMPARISONS}, got {arm_comparison=}")
        super().__init__(metric=metric, mode=mode)
        # The decoder is the bandit's choice, so each arm's study searches the rest of the space.
        self._define = DefineByRun(space.model_copy(update={DECODER_KEY: None}))
        self._exploration = exploration
        self._arm_comparison = arm_comparison
        self._arms = _Arms(names, seed, n_startup_trials, pooled_trials)

    def set_search_properties(self, metric: str | list[str] | None, mode: str | list[str] | None, config: dict,
                              **spec: Any) -> bool:
        """Take metric/mode from ``TuneConfig``. The space is ours, so Tune's ``config`` must hold
        only fixed values (the rest of a trial's config): with ``tune.uniform`` & co. in it we
        return False, and Tune raises its "already instantiated with a search space" error."""
        _objectives(metric or self._metric, mode)
        if self._arms.studies and mode is not None and mode != self._mode:
            raise ValueError(f"bandit_tpe studies already run in mode {self._mode!r}, got {mode=}")
        self._metric = metric or self._metric
        self._mode = mode or self._mode
        _, domains, grids = parse_spec_vars(config or {})
        return not (domains or grids)

    def suggest(self, trial_id: str) -> dict | None:
        if not self._metric or not self._mode:
            raise RuntimeError(
                UNDEFINED_METRIC_MODE.format(cls=type(self).__name__, metric=self._metric, mode=self._mode)
            )
        if trial_id in self._arms.live:  # asked again: same answer, as OptunaSearch does
            return dict(self._arms.live[trial_id].config)
        if not self._arms.studies:
            self._arms.create_studies(self._mode)
        if self._two_objectives:
            arm = ucb_pick(self._arms.rewards(), self._arms.trials, self._exploration, first=self._arms.first)
        elif self._arm_comparison == "pairwise":
            quality = pairwise_quality(self._arms.curves, self._mode)
            arm = ucb_pick(quality, self._arms.trials, self._exploration, first=self._arms.first)
        else:
            values, _ = equal_fidelity(self._arms.curves)
            arm = ucb_arm(values, self._arms.trials, self._mode, self._exploration, first=self._arms.first)
        return dict(self._arms.start(trial_id, arm, self._define))

    @property
    def _two_objectives(self) -> bool:
        return isinstance(self._metric, list)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        """Report the intermediate value to the arm's study (step = training_iteration), so a
        trial that ends without a final result is still told its last value as PRUNED. With two
        objectives nothing is reported (Optuna's multi-objective trials take no reports)."""
        entry = self._arms.live.get(trial_id)
        if entry is None:
            logger.warning("bandit_tpe: result for unknown or finished trial %s ignored", trial_id)
            return
        if self._two_objectives:
            return
        value = _finite(result.get(self._metric))
        step = result.get(TRAINING_ITERATION)
        if value is None or step is None:
            return
        entry.trial.report(value, int(step))
        self._arms.report(entry.arm, int(step), value, self._mode)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        entry = self._arms.finish(trial_id)
        if entry is None:
            seen = "already finished" if trial_id in self._arms.finished else "unknown"
            logger.warning("bandit_tpe: completion of %s trial %s ignored", seen, trial_id)
            return
        if self._two_objectives:
            self._complete_two(trial_id, entry, result, error)
            return
        raw = None if result is None else result.get(self._metric)
        value = _finite(raw)
        if error:
            state = TrialState.FAIL  # a crash, even after some epochs, is not a result to learn from
        elif raw is None:
            state = TrialState.PRUNED  # Optuna gives it the last reported value, if any
        elif value is None:
            logger.warning("bandit_tpe: trial %s ended with %s=%r; told as FAIL", trial_id, self._metric, raw)
            state = TrialState.FAIL
        else:
            state = TrialState.COMPLETE
        told = self._arms.study_of(entry).tell(entry.trial, value if state == TrialState.COMPLETE else None, state=state)
        self._arms.share(entry, told)
        if told.value is not None:
            self._arms.record(entry.arm, told.value, self._mode)
        step = None if result is None else result.get(TRAINING_ITERATION)
        if state == TrialState.COMPLETE and step is not None:  # the final result, if never reported
            self._arms.report(entry.arm, int(step), told.value, self._mode)

    def _complete_two(self, trial_id: str, entry: _Live, result: dict | None, error: bool) -> None:
        """Tell the arm's study both objectives; the point joins the arm's share of the front.
        As with one metric: an error is FAIL, no result PRUNED (here without values: nothing was
        reported), a missing or non-finite objective FAIL."""
        assert isinstance(self._metric, list)
        raw = None if result is None else [result.get(m) for m in self._metric]
        values = None if raw is None else [_finite(v) for v in raw]
        if error:
            state = TrialState.FAIL
        elif raw is None:
            state = TrialState.PRUNED
        elif any(v is None for v in values or []):
            logger.warning("bandit_tpe: trial %s ended with %s; told as FAIL", trial_id, dict(zip(self._metric, raw)))
            state = TrialState.FAIL
        else:
            state = TrialState.COMPLETE
        complete = state == TrialState.COMPLETE
        told = self._arms.study_of(entry).tell(entry.trial, values if complete else None, state=state)
        self._arms.share(entry, told)
        if complete:
            assert values is not None
            self._arms.add_point(entry.arm, (float(values[0]), float(values[1])))  # type: ignore[arg-type]

    def arm_stats(self) -> list[ArmStats]:
        """Each arm's record; with two objectives ``best`` is None and ``reward`` its hypervolume share."""
        return self._arms.stats(self._two_objectives)

    @property
    def studies(self) -> dict[str, optuna.Study]:
        """Each arm's Optuna study (empty until the first suggestion), for inspection and plots."""
        return dict(zip(self._arms.names, self._arms.studies))

    @property
    def pooled_study(self) -> optuna.Study | None:
        """The study that proposes an arm's first ``pooled_trials`` trials (None with 0)."""
        return self._arms.pooled

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__dict__.copy(), f)

    def restore(self, checkpoint_path: str) -> None:
        # The saved state (studies, samplers' random states, trials in flight) replaces ours whole,
        # so the next arm and the next parameters are the ones the saved searcher would have given.
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        arms = state["_arms"]
        if arms.names != self._arms.names:
            logger.warning("bandit_tpe: restoring arms %s over %s", arms.names, self._arms.names)
        if not hasattr(arms, "curves"):  # saved before arms were compared at equal training
            arms.curves = [{} for _ in arms.names]
            arms.first = list(range(len(arms.names)))
        if not hasattr(arms, "points"):  # saved before the hypervolume bandit
            arms.points = [[] for _ in arms.names]
        if not hasattr(arms, "pooled"):  # saved before the pooled study: it goes on without one
            arms.pooled, arms.pooled_trials = None, 0
        state.setdefault("_arm_comparison", "common_step")  # saved before pairwise comparison: the rule it ran
        self.__dict__.update(state)
