"""The decoder-bandit comparison: allocation policies replayed on the table's per-decoder curves.

An arm is a decoder at one fixed config (β, latent size and schedule of the table nearest to
``arm_config``, default β = 1, latent 16, constant schedule). Each replay runs our
:class:`search.bandit.scheduler.BanditAllocationScheduler` with a policy from
:mod:`trainables.policies`, built as ``search.bandit.allocation`` builds it (policy budget =
``budget_epochs // epochs_per_pull`` pulls), in the simulated controller with one worker; every
arm's trial replays one recorded seed of its decoder, drawn per replay. The trials come from a
fixed list of configs, standing in for the ``tune.grid_search`` over decoders of a live run.

Reported per policy, over the replays: how often the recommendation (``policy.best_arm()``) is
the true best decoder (the best mean over seeds of the final −reward metric), the epochs used,
and that as a fraction of training every arm to the end (uniform).
"""
from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from benchmarks.simulator import replay
from benchmarks.snap import snap
from benchmarks.table import Point, Table
from search.bandit.scheduler import BanditAllocationScheduler
from trainables.policies import available_policies, build_policy

DEFAULT_ARM_CONFIG: dict[str, Any] = {"beta": 1.0, "latent_dim": 16}


class ConfigList:
    """The trial source of an allocation run: one trial per arm config, then FINISHED (what
    Tune's BasicVariantGenerator does with a grid_search). Ignores results."""

    def __init__(self, configs: Sequence[Mapping[str, Any]]) -> None:
        self._configs = [dict(c) for c in configs]
        self._next = 0

    def suggest(self, trial_id: str) -> dict | str | None:
        if self._next >= len(self._configs):
            return "FINISHED"
        self._next += 1
        return dict(self._configs[self._next - 1])

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        pass

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass


def arm_points(table: Table, arm_config: Mapping[str, Any] | None = None) -> list[Point]:
    """One grid point per decoder: ``arm_config`` snapped to the grid (schedule: the grid's first)."""
    config = {"schedule": table.grid.schedule[0], **DEFAULT_ARM_CONFIG, **(arm_config or {})}
    return [snap({**config, "decoder": d}, table.grid) for d in table.grid.decoder]


def true_best_arm(table: Table, points: Sequence[Point], metric: str) -> int:
    """The arm whose mean final ``metric`` over its recorded seeds is lowest."""
    finals = [statistics.fmean(c.metrics[metric][-1] for c in table.curves[p]) for p in points]
    return int(np.argmin(finals))


@dataclass
class PolicyReport:
    policy: str
    replays: int
    p_best: float                 # fraction of replays recommending the true best arm
    epochs_median: float
    epochs_mean: float
    fraction_of_uniform: float    # median epochs / (arms × epochs per curve)
    chosen: dict[str, int]        # recommendations per decoder

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_policy(table: Table, policy: str, seed: int, *, points: Sequence[Point], budget_epochs: int,
               epochs_per_pull: int = 1, reward_metric: str = "val/distortion",
               params: Mapping[str, Any] | None = None) -> tuple[int, int]:
    """One allocation replay; returns (recommended arm, epochs used)."""
    arms = [p.decoder for p in points]
    bandit = build_policy(policy, len(arms), budget=budget_epochs // epochs_per_pull, seed=seed, **dict(params or {}))
    scheduler = BanditAllocationScheduler(arms, bandit, epochs_per_pull=epochs_per_pull, budget_epochs=budget_epochs,
                                          reward_metric=reward_metric, max_concurrent=1)
    source = ConfigList([p.as_config() for p in points])
    replay(table, source, scheduler, workers=1, metric=reward_metric, max_pending=len(points),
           budget_epochs=budget_epochs, rng=np.random.default_rng(seed))
    return bandit.best_arm(), scheduler.ledger.budget_used


def compare_policies(table: Table, policies: Sequence[str] | None = None, *, seeds: int = 20,
                     arm_config: Mapping[str, Any] | None = None, budget_epochs: int | None = None,
                     epochs_per_pull: int = 1, reward_metric: str = "val/distortion") -> dict[str, Any]:
    points = arm_points(table, arm_config)
    if len({p.decoder for p in points}) < 2:
        raise ValueError(f"the decoder bandit needs at least two decoders in the table, got {table.grid.decoder}")
    budget = budget_epochs or len(points) * table.epochs
    uniform_cost = len(points) * table.epochs
    best = true_best_arm(table, points, reward_metric)
    reports = []
    for name in policies or available_policies():
        picks, used = zip(*(run_policy(table, name, s, points=points, budget_epochs=budget,
                                       epochs_per_pull=epochs_per_pull, reward_metric=reward_metric)
                            for s in range(seeds)))
        chosen = {p.decoder: sum(1 for a in picks if a == i) for i, p in enumerate(points)}
        reports.append(PolicyReport(
            policy=name, replays=seeds, p_best=sum(1 for a in picks if a == best) / seeds,
            epochs_median=float(np.median(used)), epochs_mean=float(np.mean(used)),
            fraction_of_uniform=float(np.median(used)) / uniform_cost, chosen=chosen,
        ))
    return {"arms": [asdict(p) for p in points], "true_best": points[best].decoder, "budget_epochs": budget,
            "uniform_epochs": uniform_cost, "reward_metric": reward_metric, "epochs_per_pull": epochs_per_pull,
            "policies": [r.to_dict() for r in reports]}


def format_policies(report: Mapping[str, Any]) -> str:
    lines = [(f"decoder bandit: true best {report['true_best']} (by final {report['reward_metric']}); "
              f"uniform = {report['uniform_epochs']} epochs"),
             f"{'policy':<20}{'P(best)':>9}{'epochs (median)':>17}{'x uniform':>11}"]
    for r in report["policies"]:
        lines.append(f"{r['policy']:<20}{r['p_best']:>9.2f}{r['epochs_median']:>17.0f}{r['fraction_of_uniform']:>11.2f}")
    return "\n".join(lines)
