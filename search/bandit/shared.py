"""``vaesearch bandit`` in shared-encoder mode: the multi-armed-bandit VAE protocol (seed 003).

One Tune trial = one shared encoder with K decoder heads and a per-minibatch policy
(:mod:`trainables.shared_encoder`). The trials form a grid of datasets × policies × seeds from one
config. MLflow: a child run per trial (pull shares, regret and every head's validation distortion
per epoch, per-head reconstructions and samples) and, on the parent, the pull-share and regret
plots and a table comparing the policies.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune import CheckpointConfig, FailureConfig, RunConfig, TuneConfig, Tuner

from search import plots
from search.config import Config
from search.run import ensure_ray, parent_run, reporter, start_experiment, storage_path
from search.callback import MlflowTrialCallback
from search.tracking import Tracker
from trainables.shared_encoder_trainable import train_shared_encoder


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


@dataclass
class SharedEncoderSummary:
    trials: list[SharedTrialResult]
    experiment_path: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str

    def describe(self) -> str:
        lines = [f"{'dataset':<14} {'policy':<16} {'seed':>4} {'regret':>10} {'bandit best':<20} {'val best':<20} top pull share"]
        for t in self.trials:
            if t.error:
                lines.append(f"{t.dataset:<14} {t.policy:<16} {t.seed:>4} failed: {t.error}")
                continue
            top = max(t.pull_share, key=t.pull_share.__getitem__)
            lines.append(f"{t.dataset:<14} {t.policy:<16} {t.seed:>4} {t.cumulative_regret:>10.1f} {t.bandit_best:<20} "
                         f"{t.val_best:<20} {top} {t.pull_share[top]:.0%}")
        lines.append(f"Tune results: {self.experiment_path}")
        lines.append(f"MLflow parent run: {self.parent_run_id} (experiment {self.experiment_id}) at {self.tracking_uri}")
        return "\n".join(lines)


def shared_base(config: Config) -> dict[str, Any]:
    """The fixed part of every shared-encoder trial (parsed by SharedEncoderSpec.from_dicts)."""
    se = config.bandit.shared_encoder
    return {
        "seed": config.seed,
        "data": config.data.model_dump(),
        "shared_encoder": {
            "decoders": list(config.bandit.arms), "encoder": config.model.encoder,
            "latent_dim": config.model.latent_dim, "width": config.model.width, "likelihood": config.model.likelihood,
            "epochs": se.epochs, "batch_size": config.train.batch_size, "lr": config.train.lr, "beta": config.train.beta,
            "eval_every": se.eval_every, "eval_batch_size": se.eval_batch_size,
            "policy_params_by_name": se.policy_params,
        },
    }


def run_shared_encoder(config: Config, *, yaml_text: str | None = None, address: str | None = None,
                       tracking_uri: str | None = None, verbose: int = 1) -> SharedEncoderSummary:
    tracker, name = start_experiment(config, yaml_text, tracking_uri, role="bandit-shared-encoder")
    ensure_ray(address or config.resources.address, verbose)
    with parent_run(tracker):
        summary = _run(config, tracker, name, verbose)
        _log_summary(tracker, summary, config.bandit.arms)
    return summary


def _run(config: Config, tracker: Tracker, name: str, verbose: int) -> SharedEncoderSummary:
    se, arms = config.bandit.shared_encoder, config.bandit.arms
    storage = storage_path(config.resources.storage_path)
    resources = {"cpu": config.resources.cpu, "gpu": config.resources.gpu}
    tuner = Tuner(
        tune.with_resources(tune.with_parameters(train_shared_encoder, base=shared_base(config)), resources),
        param_space={"dataset": tune.grid_search(se.datasets), "policy": tune.grid_search(se.policies),
                     "seed": tune.grid_search(se.seeds)},
        tune_config=TuneConfig(max_concurrent_trials=se.max_concurrent, metric="regret/cumulative", mode="min",
                               reuse_actors=True),
        run_config=RunConfig(
            name=name, storage_path=storage, callbacks=[MlflowTrialCallback(tracker, log_images=config.tracking.log_images, retry_after_s=config.tracking.retry_s)],
            failure_config=FailureConfig(max_failures=config.resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            progress_reporter=reporter(["dataset", "policy", "seed"], {"epoch": "epoch", "regret/cumulative": "regret",
                                                                       "val/distortion": "best head val/distortion"})
            if verbose else None,
            verbose=verbose,
        ),
    )
    results = tuner.fit()
    trials = [_trial_result(r, arms) for r in results]
    return SharedEncoderSummary(trials=trials, experiment_path=str(Path(storage) / name), tracking_uri=tracker.uri,
                                experiment_id=tracker.experiment_id, parent_run_id=tracker.parent_run_id or "")


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
