"""``vaesearch bandit`` in shared-encoder mode: the multi-armed-bandit VAE protocol (reference 003).

One Tune trial = one shared encoder with K decoder heads and a per-minibatch policy
(:mod:`trainables.shared_encoder`). The trials form a grid of datasets × policies × seeds from one
config. MLflow: a child run per trial (pull shares, regret and every head's validation distortion
per epoch, per-head reconstructions and samples) and, on the parent, the pull-share and regret
plots and a table comparing the policies.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

from ray import tune
from ray.tune import ResultGrid, TuneConfig

from search import plots, roles
from search.modes.base import Mode, RunContext, RunSummary
from search.tracking import Tracker
from search.trial_runs import TrialRunStyle
from search.trial_specs import shared_encoder_spec
from trainables.ray_trainables import train_shared_encoder


@dataclass
class SharedTrialResult:
    dataset: str
    policy: str
    seed: int
    pull_share: dict[str, float]       # head -> share of minibatches it was trained on
    val_distortion: dict[str, float]   # head -> last validation distortion
    cumulative_regret: float
    bandit_best: str                   # the policy's recommended head
    val_best: str                      # the head with the lowest validation distortion
    regret_curve: list[tuple[int, float]]   # (step, cumulative regret) per epoch
    error: str | None = None


@dataclass(kw_only=True)
class SharedEncoderSummary(RunSummary):
    trials: list[SharedTrialResult]

    def describe(self) -> str:
        lines = [f"{'dataset':<14} {'policy':<16} {'seed':>4} {'regret':>10} {'bandit best':<20} {'val best':<20} top pull share"]
        for t in self.trials:
            if t.error:
                lines.append(f"{t.dataset:<14} {t.policy:<16} {t.seed:>4} failed: {t.error}")
                continue
            top = max(t.pull_share, key=t.pull_share.__getitem__)
            lines.append(f"{t.dataset:<14} {t.policy:<16} {t.seed:>4} {t.cumulative_regret:>10.1f} {t.bandit_best:<20} "
                         f"{t.val_best:<20} {top} {t.pull_share[top]:.0%}")
        return "\n".join(lines + self.location_lines())


class SharedEncoderMode(Mode):
    role = roles.BANDIT_SHARED_ENCODER

    def trainable(self) -> Callable[..., Any]:
        return tune.with_parameters(train_shared_encoder, spec=shared_encoder_spec(self.config))

    def param_space(self) -> dict[str, Any]:
        se = self.config.bandit.shared_encoder
        return {"dataset": tune.grid_search(se.datasets), "policy": tune.grid_search(se.policies),
                "seed": tune.grid_search(se.seeds)}

    def trial_runs(self) -> TrialRunStyle:
        # No scheduler stops a shared-encoder trial: it runs bandit.shared_encoder.epochs.
        return TrialRunStyle.of(self.config, planned_epochs=self.config.bandit.shared_encoder.epochs,
                                stopped_by="scheduler")

    def tune_config(self, run: RunContext) -> TuneConfig:
        return TuneConfig(max_concurrent_trials=self.config.bandit.shared_encoder.max_concurrent,
                          metric="regret/cumulative", mode="min", reuse_actors=True)

    def progress_columns(self) -> tuple[list[str], dict[str, str]]:
        return ["dataset", "policy", "seed"], {"epoch": "epoch", "regret/cumulative": "regret",
                                               "val/distortion": "best head val/distortion"}

    def finish(self, results: ResultGrid, run: RunContext) -> SharedEncoderSummary:
        arms = self.config.bandit.arm_names()
        summary = SharedEncoderSummary(**RunSummary.location(run), trials=[_trial_result(r, arms) for r in results])
        _log_summary(run.tracker, summary, arms)
        return summary


def _trial_result(result: Any, arms: list[str]) -> SharedTrialResult:
    config, metrics = result.config, result.metrics or {}
    error = str(result.error).strip().splitlines()[-1][:300] if result.error else None
    curve: list[tuple[int, float]] = []
    frame = result.metrics_dataframe
    if frame is not None and "regret/cumulative" in frame:
        curve = [(int(s), float(r)) for s, r in zip(frame["step"], frame["regret/cumulative"])]
    return SharedTrialResult(
        dataset=config["dataset"], policy=config["policy"], seed=int(config["seed"]),
        pull_share={a: float(metrics.get(f"head/{a}/pull_share", math.nan)) for a in arms},
        val_distortion={a: float(metrics.get(f"head/{a}/val_distortion", math.nan)) for a in arms},
        cumulative_regret=float(metrics.get("regret/cumulative", math.nan)),
        bandit_best=arms[int(metrics.get("bandit/best_head", 0))], val_best=arms[int(metrics.get("bandit/val_best_head", 0))],
        regret_curve=curve, error=error,
    )


def _log_summary(tracker: Tracker, summary: SharedEncoderSummary, arms: list[str]) -> None:
    ok = [t for t in summary.trials if t.error is None]
    label = {id(t): f"{t.dataset}/{t.policy}/s{t.seed}" for t in ok}
    if ok:
        tracker.log_figure(plots.stacked_shares({label[id(t)]: [t.pull_share[a] for a in arms] for t in ok}, arms,
                                                title="pull share per head"), "pull_shares.png")
        tracker.log_figure(plots.line_chart({label[id(t)]: t.regret_curve for t in ok}, title="cumulative regret",
                                            xlabel="step (minibatches)", ylabel="regret (nats)"), "regret.png")
    by_policy: dict[str, list[SharedTrialResult]] = {}
    for t in ok:
        by_policy.setdefault(f"{t.dataset}/{t.policy}", []).append(t)
    metrics = {}
    for key, group in by_policy.items():
        metrics[f"{key}/regret"] = sum(t.cumulative_regret for t in group) / len(group)
        metrics[f"{key}/agrees_with_val_best"] = sum(t.bandit_best == t.val_best for t in group) / len(group)
    if metrics:
        tracker.log_metrics(metrics)
    tracker.log_table([asdict(t) for t in summary.trials], name="shared_encoder_trials.json")
