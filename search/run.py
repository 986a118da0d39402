"""``run_search(config)``: validated config -> Ray Tune ``Tuner(...).fit()`` -> MLflow -> summary.

The driver owns MLflow (parent run, child runs through a Tune callback, the best model); the
trials only train and report. At the end the best trial (by its last ``search.metric``) gets
the importance-sampled test NLL, computed as a Ray task with the trial's resources (a GPU
where trials had one), and its model is logged and registered.
"""
from __future__ import annotations

import logging
import math
from contextlib import contextmanager
import os
import socket
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator
from urllib.parse import urlparse

import ray
from mlflow.exceptions import MlflowException
from ray import tune
from ray.tune import CheckpointConfig, CLIReporter, FailureConfig, ResultGrid, RunConfig, TuneConfig, Tuner
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from search import plots
from search.bandit.searcher import ArmStats
from search.callback import TRACKING_ERRORS, MlflowTrialCallback
from search.config import Config
from search.experiment import ExperimentRecord, experiment_path
from search.space import make_searcher
from search.tracking import Tracker, error_summary, numeric_metrics
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
    tracking_gap: int = 0   # MLflow events still unwritten at the end (tracking server unreachable)

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
        if self.tracking_gap:
            lines.append(f"MLflow is missing {self.tracking_gap} trial event(s) (the tracking server was unreachable); "
                         f"every result is in Tune's storage: `vaesearch sync {self.experiment_path}` writes them")
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


def search_columns(config: Config) -> list[str]:
    """The progress table's parameter columns: the searched ones (a missing key fails Tune's table)."""
    return [c for c in SEARCH_COLUMNS if getattr(config.search.space, c)]


def storage_path(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def reporter(parameter_columns: list[str], metric_columns: dict[str, str] | None = None) -> CLIReporter:
    # The classic table reporter; the new output engine ignores custom columns.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
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


#: MLflow's HTTP client retries a failing request for about four minutes by default, which would
#: stall Tune's loop; the callback queues and retries instead (tracking.retry_s). Overridable.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def _limit_http_retries() -> None:
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def connect_tracking(uri: str, experiment: str) -> Tracker:
    _limit_http_retries()
    try:
        _check_reachable(uri)
        return Tracker(uri, experiment)
    except (MlflowException, OSError, ConnectionError) as exc:
        raise _unavailable(uri, exc, "the MLflow tracking store", "Start the server (mlflow server --host 127.0.0.1 "
                           "...) or pass another --tracking-uri; no trial was started.") from None


def attach_tracking(uri: str, experiment_id: str, parent_run_id: str) -> Tracker:
    """The tracker of an existing search's parent run (resume, sync); fails fast when the
    tracking store is unreachable or does not hold that run."""
    _limit_http_retries()
    try:
        _check_reachable(uri)
        tracker = Tracker.attach(uri, experiment_id, parent_run_id)
        tracker.client.get_run(parent_run_id)
        return tracker
    except (MlflowException, OSError, ConnectionError) as exc:
        raise _unavailable(uri, exc, f"the MLflow parent run {parent_run_id}", "Start the tracking server the search "
                           "used (the run lives there) and try again; nothing was started.") from None


def _unavailable(uri: str, exc: Exception, what: str, fix: str) -> TrackingUnavailableError:
    if any(code in str(exc) for code in (" 401", " 403", "Unauthorized", "UNAUTHENTICATED", "PERMISSION_DENIED")):
        return TrackingUnavailableError(
            f"the MLflow tracking server at {uri!r} refused the credentials ({exc}). Set MLFLOW_TRACKING_USERNAME "
            f"and MLFLOW_TRACKING_PASSWORD to an account of that server. {fix}")
    return TrackingUnavailableError(f"cannot reach {what} at {uri!r}: {exc}. {fix}")


def ensure_ray(address: str | None, verbose: int) -> None:
    """Join the cluster at ``address`` (or start Ray on this machine) unless already connected."""
    # A checkpoint every epoch forces an experiment snapshot each time; with short epochs Tune
    # warns about it on every report. The snapshots are what resume needs, so keep them, quietly.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    if address is None:  # Ray on this machine only: advertise (and bind what Ray lets us bind to) loopback
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=verbose > 1)
    else:
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
    path = experiment_path(storage_path(config.resources.storage_path), experiment_name)
    ExperimentRecord(config=config.model_dump(mode="json"), yaml_text=yaml_text, tracking_uri=tracker.uri,
                     experiment_id=tracker.experiment_id, parent_run_id=tracker.parent_run_id or "",
                     role="search").write(path)
    ensure_ray(address or config.resources.address, verbose)
    callback = MlflowTrialCallback(tracker, log_images=config.tracking.log_images, retry_after_s=config.tracking.retry_s)
    return fit_and_summarize(config, tracker, callback, path, lambda: _new_tuner(config, callback, experiment_name, verbose))


def search_trainable(config: Config) -> Any:
    """The trainable of a search: the VAE trainable with the config's fixed part and resources."""
    resources = {"cpu": config.resources.cpu, "gpu": config.resources.gpu}
    return tune.with_resources(tune.with_parameters(train_vae, base=trial_base(config)), resources)


def _new_tuner(config: Config, callback: MlflowTrialCallback, experiment_name: str, verbose: int) -> Tuner:
    return Tuner(
        search_trainable(config),
        tune_config=TuneConfig(
            metric=config.search.metric, mode=config.search.mode, search_alg=make_searcher(config),
            scheduler=make_scheduler(config), num_samples=config.search.num_samples,
            # A finished trial's process runs the next trial (no new worker, no torch import):
            reuse_actors=True,
        ),
        run_config=RunConfig(
            name=experiment_name, storage_path=storage_path(config.resources.storage_path), callbacks=[callback],
            failure_config=FailureConfig(max_failures=config.resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=config.resources.checkpoints_to_keep),
            progress_reporter=reporter(search_columns(config)) if verbose else None, verbose=verbose,
        ),
    )


def fit_and_summarize(config: Config, tracker: Tracker, callback: MlflowTrialCallback, path: str,
                      make_tuner: Callable[[], Tuner]) -> SearchSummary:
    """Fit the tuner (a new or a restored one), then summarise; the parent run ends FINISHED
    only when that worked (a killed driver leaves it RUNNING, for ``vaesearch resume``)."""
    with parent_run(tracker):
        results = make_tuner().fit()
        summary = _summarize(config, tracker, results, path)
        prune_checkpoints(results)
        callback.flush(force=True)
        summary.tracking_gap = len(callback.backlog)
    return summary


def prune_checkpoints(results: ResultGrid) -> None:
    """Once the search is over, keep only each trial's last checkpoint (what a restore needs)."""
    for result in results:
        if result.checkpoint is None:
            continue
        for checkpoint, _ in result.best_checkpoints or []:
            if checkpoint.path != result.checkpoint.path:
                try:
                    checkpoint.filesystem.delete_dir(checkpoint.path)
                except OSError as exc:  # FileNotFoundError included
                    log.warning("could not delete the old checkpoint %s: %s", checkpoint.path, exc)


@contextmanager
def parent_run(tracker: Tracker) -> Iterator[None]:
    """The parent run ends FINISHED when the block does, FAILED when it raises; a tracking
    server that is down by then is logged, not raised over what the block computed."""
    status = "FAILED"
    try:
        yield
        status = "FINISHED"
    finally:
        try:
            tracker.finish_parent(status)
        except TRACKING_ERRORS as exc:
            log.warning("could not mark the MLflow parent run %s: %s", status, exc)


def _summarize(config: Config, tracker: Tracker, results: ResultGrid, path: str) -> SearchSummary:
    summary = SearchSummary(
        experiment_path=path, tracking_uri=tracker.uri, experiment_id=tracker.experiment_id,
        parent_run_id=tracker.parent_run_id or "", n_trials=len(results), n_errors=len(results.errors),
        errors=sorted({error_summary(str(e)) for e in results.errors}),
    )
    try:
        _finalize(config, tracker, results, summary)
    except TRACKING_ERRORS as exc:  # the results are in Tune's storage; say so rather than lose the summary
        summary.errors.append(f"MLflow could not record the end of the search ({error_summary(str(exc))}); "
                              f"`vaesearch sync {path}` writes it when the tracking server is back")
    return summary


def _finalize(config: Config, tracker: Tracker, results: ResultGrid, summary: SearchSummary) -> None:
    run_ids = tracker.child_runs()
    tracker.log_table([_row(r, run_ids) for r in results])
    _log_arms(tracker, results, config)
    ok = [r for r in results if r.error is None and r.metrics and config.search.metric in r.metrics]
    if not ok:
        return
    best = results.get_best_result(metric=config.search.metric, mode=config.search.mode, scope="last")
    metrics = numeric_metrics(best.metrics)
    if config.final_eval.trials == "best" and best.checkpoint is not None:
        metrics.update(_remote_test_metrics(config, best.checkpoint))
    best_run_id = run_ids.get(best.metrics.get("trial_id", ""))
    if best_run_id and config.final_eval.trials == "best":
        tracker.log_epoch(best_run_id, {k: v for k, v in metrics.items() if k.startswith("test/")}, int(best.metrics.get("epoch", 0)))
    tracker.log_best(best.config, metrics, best_run_id)
    summary.best_config, summary.best_metrics, summary.best_run_id = dict(best.config), metrics, best_run_id
    if best.checkpoint is not None:
        with best.checkpoint.as_directory() as directory:
            summary.model_uri = tracker.log_model(load_model(directory), config.tracking.registered_model, directory)
        summary.registered_model = config.tracking.registered_model


def _log_arms(tracker: Tracker, results: ResultGrid, config: Config) -> None:
    """bandit_tpe: trials per decoder arm and each arm's best metric, on the parent run. Taken
    from the results (what each arm's study was told), so a resumed search logs them too."""
    if config.search.algorithm != "bandit_tpe":
        return
    stats = arm_stats(results, config.search.metric, config.search.mode, config.search.space.decoder or [])
    metric = config.search.metric
    metrics = {f"arm/{s.arm}/trials": float(s.trials) for s in stats}
    metrics.update({f"arm/{s.arm}/best_{metric.replace('/', '_')}": s.best for s in stats if s.best is not None})
    tracker.log_metrics(metrics)
    tracker.log_figure(plots.bar_chart([s.arm for s in stats], [s.trials for s in stats],
                                       title="bandit_tpe: trials per decoder", ylabel="trials"), "trials_per_arm.png")
    tracker.log_table([asdict(s) for s in stats], name="arms.json")


def arm_stats(results: Iterable[Any], metric: str, mode: str, arms: list[str] | str) -> list[ArmStats]:
    """Per decoder: trials, trials with a value, and the best last value of ``metric``."""
    names = [arms] if isinstance(arms, str) else list(arms)
    trials = {a: 0 for a in names}
    values: dict[str, list[float]] = {a: [] for a in names}
    for result in results:
        arm = (result.config or {}).get("decoder")
        if arm is None:
            continue
        trials[arm] = trials.get(arm, 0) + 1
        value = (result.metrics or {}).get(metric)
        if isinstance(value, int | float) and math.isfinite(value):
            values.setdefault(arm, []).append(float(value))
    pick = min if mode == "min" else max
    return [ArmStats(arm=a, trials=trials[a], completed=len(values.get(a, [])),
                     best=pick(values[a]) if values.get(a) else None) for a in trials]


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
