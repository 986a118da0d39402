"""``run_search(config)``: validated config -> Ray Tune ``Tuner(...).fit()`` -> MLflow -> summary.

The driver owns MLflow (parent run, child runs through a Tune callback, the best model); the
trials only train and report. At the end the best trial (by its last ``search.metric``) gets
the importance-sampled test NLL, computed as a Ray task with the trial's resources (a GPU
where trials had one), and its model is logged and registered.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import ray
from mlflow.exceptions import MlflowException
from ray import tune
from ray.tune import CheckpointConfig, CLIReporter, FailureConfig, RunConfig, TuneConfig, Tuner
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from search import plots
from search.config import Config
from search.space import make_searcher
from search.tracking import MlflowTrialCallback, Tracker, error_summary, numeric_metrics
from trainables.trainable import train_vae
from trainables.trial import final_test_metrics, load_model

log = logging.getLogger(__name__)

SEARCH_COLUMNS = ["decoder", "latent_dim", "beta", "schedule", "lr"]


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server cannot be reached; raised before any trial runs."""


@dataclass
class SearchSummary:
    experiment_path: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    n_trials: int
    n_errors: int
    best_config: dict[str, Any] | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_run_id: str | None = None
    model_uri: str | None = None
    registered_model: str | None = None
    errors: list[str] = field(default_factory=list)   # distinct error lines of the failed trials

    def describe(self) -> str:
        lines = [f"trials: {self.n_trials} ({self.n_errors} failed)", f"Tune results: {self.experiment_path}"]
        lines += [f"  trial error: {e}" for e in self.errors]
        if self.best_config is None:
            lines.append("no trial finished successfully; see the errors above and in the Tune results")
        else:
            lines.append("best config:")
            lines += [f"  {k}: {v}" for k, v in sorted(self.best_config.items())]
            lines.append("best metrics:")
            lines += [f"  {k}: {v:.4f}" for k, v in sorted(self.best_metrics.items())]
        lines.append(f"MLflow parent run: {self.parent_run_id} (experiment {self.experiment_id}) at {self.tracking_uri}")
        if self.best_run_id:
            lines.append(f"MLflow best trial run: {self.best_run_id}")
        if self.model_uri:
            registered = f" registered as '{self.registered_model}'" if self.registered_model else ""
            lines.append(f"model: {self.model_uri}{registered}")
        lines.append(open_hint(self.tracking_uri, self.experiment_id, self.parent_run_id))
        return "\n".join(lines)


def open_hint(uri: str, experiment_id: str, run_id: str) -> str:
    path = f"#/experiments/{experiment_id}/runs/{run_id}"
    if uri.startswith(("http://", "https://")):
        return f"open: {uri.rstrip('/')}/{path}"
    return f"open: mlflow ui --backend-store-uri {uri}  then http://127.0.0.1:5000/{path}"


def trial_base(config: Config) -> dict[str, Any]:
    """The fixed part of every trial, as the plain mapping the trainable parses (trainables.trial.TrialSpec)."""
    train = config.train.model_dump()
    train.pop("schedule")
    return {
        "seed": config.seed,
        "data": config.data.model_dump(),
        "model": config.model.model_dump(),
        "train": {**train, "schedule": config.train.schedule.model_dump()},
        "test_nll": _test_nll(config) if config.final_eval.trials == "all" else None,
    }


def _test_nll(config: Config) -> dict[str, Any]:
    fe = config.final_eval
    return {"k": fe.test_nll_k, "chunk_size": fe.chunk_size, "max_examples": fe.max_examples}


def make_scheduler(config: Config) -> TrialScheduler:
    sched = config.search.scheduler
    if sched.name == "asha":
        return ASHAScheduler(
            time_attr="training_iteration", max_t=config.train.epochs,
            grace_period=min(sched.grace_period, config.train.epochs), reduction_factor=sched.reduction_factor,
        )
    return FIFOScheduler()


def storage_path(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def reporter(parameter_columns: list[str], metric_columns: dict[str, str] | None = None) -> CLIReporter:
    # The classic table reporter; the new output engine ignores custom columns.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    # A checkpoint every epoch forces an experiment snapshot each time; with short epochs Tune
    # warns about it on every report. The snapshots are what resume needs, so keep them, quietly.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    return CLIReporter(
        metric_columns=metric_columns or {"epoch": "epoch", "val/nelbo": "nelbo", "val/rate": "rate", "val/distortion": "distortion"},
        parameter_columns=parameter_columns, sort_by_metric=True, max_report_frequency=15,
    )


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on an HTTP tracking URI nobody listens on (MLflow's client would retry for minutes)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=timeout):
        pass


def connect_tracking(uri: str, experiment: str) -> Tracker:
    try:
        _check_reachable(uri)
        return Tracker(uri, experiment)
    except (MlflowException, OSError, ConnectionError) as exc:
        raise TrackingUnavailableError(
            f"cannot reach the MLflow tracking store at {uri!r}: {exc}. Start the server (mlflow server "
            "--host 127.0.0.1 ...) or pass another --tracking-uri; no trial was started."
        ) from None


def ensure_ray(address: str | None, verbose: int) -> None:
    """Join the cluster at ``address`` (or start Ray on this machine) unless already connected."""
    if not ray.is_initialized():
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose > 1)


def start_experiment(config: Config, yaml_text: str | None, tracking_uri: str | None, role: str) -> tuple[Tracker, str]:
    """Connect to MLflow (fail fast) and open the parent run; returns it and the experiment name."""
    tracker = connect_tracking(tracking_uri or config.tracking.uri, config.tracking.experiment)
    name = f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tracker.start_parent(config, yaml_text, run_name=name, role=role)
    return tracker, name


def run_search(
    config: Config,
    *,
    yaml_text: str | None = None,
    num_samples: int | None = None,
    address: str | None = None,
    tracking_uri: str | None = None,
    verbose: int = 1,
) -> SearchSummary:
    """Run the search described by ``config``; returns where everything was recorded."""
    if num_samples is not None:
        config = config.model_copy(update={"search": config.search.model_copy(update={"num_samples": num_samples})})
    tracker, experiment_name = start_experiment(config, yaml_text, tracking_uri, role="search")

    ensure_ray(address or config.resources.address, verbose)
    status = "FAILED"
    try:
        summary = _fit_and_finalize(config, tracker, experiment_name, verbose)
        status = "FINISHED"
        return summary
    finally:
        tracker.finish_parent(status)


def _fit_and_finalize(config: Config, tracker: Tracker, experiment_name: str, verbose: int) -> SearchSummary:
    resources = {"cpu": config.resources.cpu, "gpu": config.resources.gpu}
    trainable = tune.with_resources(tune.with_parameters(train_vae, base=trial_base(config)), resources)
    callback = MlflowTrialCallback(tracker, log_images=config.tracking.log_images)
    storage = storage_path(config.resources.storage_path)
    search_alg = make_searcher(config)
    tuner = Tuner(
        trainable,
        tune_config=TuneConfig(
            metric=config.search.metric, mode=config.search.mode, search_alg=search_alg,
            scheduler=make_scheduler(config), num_samples=config.search.num_samples,
        ),
        run_config=RunConfig(
            name=experiment_name, storage_path=storage, callbacks=[callback],
            failure_config=FailureConfig(max_failures=config.resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=1),
            progress_reporter=reporter(SEARCH_COLUMNS) if verbose else None, verbose=verbose,
        ),
    )
    results = tuner.fit()
    n_errors = len(results.errors)
    summary = SearchSummary(
        experiment_path=str(Path(storage) / experiment_name) if "://" not in storage else f"{storage}/{experiment_name}",
        tracking_uri=tracker.uri, experiment_id=tracker.experiment_id, parent_run_id=tracker.parent_run_id or "",
        n_trials=len(results), n_errors=n_errors,
        errors=sorted({error_summary(str(e)) for e in results.errors}),
    )
    tracker.log_table([_row(r, callback.run_ids) for r in results])
    _log_arms(tracker, search_alg.searcher, config.search.metric)
    ok = [r for r in results if r.error is None and r.metrics and config.search.metric in r.metrics]
    if not ok:
        return summary
    best = results.get_best_result(metric=config.search.metric, mode=config.search.mode, scope="last")
    metrics = numeric_metrics(best.metrics)
    if config.final_eval.trials == "best" and best.checkpoint is not None:
        metrics.update(_remote_test_metrics(config, best.checkpoint))
    best_trial_id = best.metrics.get("trial_id", "")
    best_run_id = callback.run_ids.get(best_trial_id)
    if best_run_id and config.final_eval.trials == "best":
        tracker.log_epoch(best_run_id, {k: v for k, v in metrics.items() if k.startswith("test/")}, int(best.metrics.get("epoch", 0)))
    tracker.log_best(best.config, metrics, best_run_id)
    summary.best_config, summary.best_metrics, summary.best_run_id = dict(best.config), metrics, best_run_id
    if best.checkpoint is not None:
        with best.checkpoint.as_directory() as directory:
            summary.model_uri = tracker.log_model(load_model(directory), config.tracking.registered_model, directory)
        summary.registered_model = config.tracking.registered_model
    return summary


def _log_arms(tracker: Tracker, searcher: Any, metric: str) -> None:
    """bandit_tpe: trials per decoder arm and each arm's best metric, on the parent run."""
    if not hasattr(searcher, "arm_stats"):
        return
    stats = searcher.arm_stats()
    metrics = {f"arm/{s.arm}/trials": float(s.trials) for s in stats}
    metrics.update({f"arm/{s.arm}/best_{metric.replace('/', '_')}": s.best for s in stats if s.best is not None})
    tracker.log_metrics(metrics)
    tracker.log_figure(plots.bar_chart([s.arm for s in stats], [s.trials for s in stats],
                                       title="bandit_tpe: trials per decoder", ylabel="trials"), "trials_per_arm.png")
    tracker.log_table([asdict(s) for s in stats], name="arms.json")


def _remote_test_metrics(config: Config, checkpoint: tune.Checkpoint) -> dict[str, float]:
    """Importance-sampled test NLL of one checkpoint, as a Ray task with a trial's resources."""
    task = ray.remote(num_cpus=config.resources.cpu, num_gpus=config.resources.gpu)(final_test_metrics)
    return ray.get(task.remote(checkpoint, trial_base(config), _test_nll(config)))


def _row(result: Any, run_ids: dict[str, str]) -> dict[str, Any]:
    trial_id = (result.metrics or {}).get("trial_id")
    return {
        "trial_id": trial_id,
        "mlflow_run_id": run_ids.get(trial_id or ""),
        "config": result.config,
        "error": str(result.error)[:500] if result.error else None,
        "metrics": numeric_metrics(result.metrics or {}),
    }
