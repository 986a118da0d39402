"""The decoder-bandit comparison: allocation policies replayed on the table's per-decoder curves.

An arm is a decoder at one fixed config (β, latent size and schedule of the table nearest to
``arm_config``, default β = 1, latent 16, constant schedule). Each replay runs our
:class:`search.bandit.scheduler.BanditAllocationScheduler` with a policy from
:mod:`trainables.policies`, built as ``search.modes.allocation`` builds it (policy budget =
``budget_epochs // epochs_per_pull`` pulls), in the simulated controller with one worker; every
arm's trial replays one recorded seed of its decoder, drawn per replay. The trials come from a
fixed list of configs, standing in for the ``tune.grid_search`` over decoders of a live run.

Reported per policy and budget (a fraction of training every arm to the end, "uniform"), over
the replays: how often the recommendation (``policy.best_arm()``) is the true best decoder (the
best mean over seeds of the final −reward metric), the epochs used, and that as a fraction of
uniform's. ``all_arm_configs`` makes every (β, latent, schedule) of the grid a problem of its own,
some with close decoders, instead of the one default config.
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
    if table.grid.lr and "lr" not in config:   # a table with an lr axis: its middle value by default
        config["lr"] = sorted(table.grid.lr)[len(table.grid.lr) // 2]
    return [snap({**config, "decoder": d}, table.grid) for d in table.grid.decoder]


def final_means(table: Table, points: Sequence[Point], metric: str) -> list[float]:
    """Each arm's final ``metric``, the mean over its recorded seeds."""
    return [statistics.fmean(c.metrics[metric][-1] for c in table.curves[p]) for p in points]


def true_best_arm(table: Table, points: Sequence[Point], metric: str) -> int:
    """The arm whose mean final ``metric`` over its recorded seeds is lowest."""
    return int(np.argmin(final_means(table, points, metric)))


@dataclass
class PolicyReport:
    policy: str
    budget_fraction: float        # the policy's budget / uniform allocation's epochs
    replays: int
    p_best: float                 # fraction of replays recommending the true best arm
    gap_mean: float               # mean final-metric gap of the recommended arm to the true best
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


def all_arm_configs(table: Table) -> list[dict[str, Any]]:
    """Every (β, latent size, schedule, and lr where it is an axis) of the grid: one decoder-choice problem each."""
    lrs: tuple[float | None, ...] = table.grid.lr or (None,)
    return [{"beta": b, "latent_dim": z, "schedule": s, **({"lr": lr} if lr is not None else {})}
            for b in table.grid.beta for z in table.grid.latent_dim for s in table.grid.schedule for lr in lrs]


def compare_policies(table: Table, policies: Sequence[str] | None = None, *, seeds: int = 20,
                     arm_configs: Sequence[Mapping[str, Any]] | None = None,
                     budget_fractions: Sequence[float] = (1.0,), epochs_per_pull: int = 1,
                     reward_metric: str = "val/distortion") -> dict[str, Any]:
    """Each policy at each budget (a fraction of uniform allocation's epochs), replayed ``seeds``
    times on each arm config (default: the one of :data:`DEFAULT_ARM_CONFIG`); P(best) is against
    each config's own true best decoder."""
    problems = [arm_points(table, c) for c in (arm_configs or [None])]
    if len({p.decoder for p in problems[0]}) < 2:
        raise ValueError(f"the decoder bandit needs at least two decoders in the table, got {table.grid.decoder}")
    if not budget_fractions or any(not 0 < f <= 1 for f in budget_fractions):
        raise ValueError(f"budget fractions must be in (0, 1], got {budget_fractions}")
    uniform_cost = len(problems[0]) * table.epochs
    finals = [final_means(table, points, reward_metric) for points in problems]
    best = [int(np.argmin(f)) for f in finals]
    reports = []
    for fraction in budget_fractions:
        budget = max(len(problems[0]) * epochs_per_pull, round(fraction * uniform_cost))
        for name in policies or available_policies():
            picks, used, gaps, correct = [], [], [], 0
            for points, best_arm, final in zip(problems, best, finals):
                for s in range(seeds):
                    arm, spent = run_policy(table, name, s, points=points, budget_epochs=budget,
                                            epochs_per_pull=epochs_per_pull, reward_metric=reward_metric)
                    picks.append(points[arm].decoder)
                    used.append(spent)
                    correct += arm == best_arm
                    gaps.append(final[arm] - final[best_arm])
            reports.append(PolicyReport(
                policy=name, budget_fraction=fraction, replays=len(picks), p_best=correct / len(picks),
                gap_mean=float(np.mean(gaps)),
                epochs_median=float(np.median(used)), epochs_mean=float(np.mean(used)),
                fraction_of_uniform=float(np.median(used)) / uniform_cost,
                chosen={d: picks.count(d) for d in table.grid.decoder},
            ))
    winners = [problems[i][b].decoder for i, b in enumerate(best)]
    return {"arms": [asdict(p) for p in problems[0]] if len(problems) == 1 else None,
            "configs": len(problems), "true_best": max(set(winners), key=winners.count),
            "true_best_counts": {d: winners.count(d) for d in table.grid.decoder},
            "uniform_epochs": uniform_cost, "reward_metric": reward_metric, "epochs_per_pull": epochs_per_pull,
            "seeds": seeds, "policies": [r.to_dict() for r in reports]}


def format_policies(report: Mapping[str, Any]) -> str:
    where = ("one arm config" if report["configs"] == 1 else
             f"{report['configs']} arm configs, true best per config {report['true_best_counts']}")
    lines = [(f"decoder bandit: true best {report['true_best']} (by final {report['reward_metric']}; {where}); "
              f"uniform = {report['uniform_epochs']} epochs"),
             f"{'policy':<20}{'budget':>8}{'P(best)':>9}{'gap':>7}{'epochs (median)':>17}{'x uniform':>11}"]
    for r in report["policies"]:
        lines.append(f"{r['policy']:<20}{r['budget_fraction']:>8.2f}{r['p_best']:>9.2f}{r['gap_mean']:>7.2f}"
                     f"{r['epochs_median']:>17.0f}{r['fraction_of_uniform']:>11.2f}")
    return "\n".join(lines)
