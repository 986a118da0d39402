"""ONE run lifecycle for every mode: validate -> tracking (fail fast) -> parent run -> experiment
record beside Tune's state -> MLflow callback -> Tuner -> fit -> summary -> finalisation.

The driver owns MLflow (the parent run, child runs through a Tune callback) and Ray Tune's
``Tuner`` (resources, failure and checkpoint policy, storage path, progress reporter); a mode
(``search/modes/``) supplies only what differs: its trainable, searcher or scheduler, summary and
plots. :func:`resume_experiment` continues any mode from the record it left
(``vaesearch.json``): ``Tuner.restore`` with the same trainable, in the same parent run.
"""
from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from pyarrow.fs import FileType
from ray import tune
from ray.tune import CheckpointConfig, CLIReporter, FailureConfig, ResultGrid, RunConfig, Tuner

from search import adoption, interrupts
from search.callback import TRACKING_ERRORS, MlflowTrialCallback
from search.config import Config, parse_config
from search.connect import attach_tracking, connect_tracking, ensure_ray
from search.experiment import ExperimentRecord, experiment_path, resolve_experiment
from search.modes import MODES, bandit_role, search_role
from search.modes.base import InterruptedSummary, Mode, RunContext, RunSummary
from search.modes.rate_distortion import FrontSummary
from search.modes.search import SearchSummary
from search.retries import RetryOnlyWhatCanSucceed
from search.runnable import check_runnable
from search.tracking import Tracker
from search.trial_runs import searched_paths

log = logging.getLogger(__name__)


def run_search(config: Config, *, yaml_text: str | None = None, num_samples: int | None = None,
               address: str | None = None, tracking_uri: str | None = None,
               verbose: int = 1) -> SearchSummary | FrontSummary | InterruptedSummary:
    """``vaesearch run``: the search described by ``config``; returns where everything was recorded
    (an :class:`InterruptedSummary` when Ctrl-C or SIGTERM stopped it)."""
    if num_samples is not None:
        config = config.model_copy(update={"search": config.search.model_copy(update={"num_samples": num_samples})})
    summary = run_experiment(config, search_role(config), yaml_text=yaml_text, address=address, tracking_uri=tracking_uri,
                             verbose=verbose)
    assert isinstance(summary, SearchSummary | FrontSummary | InterruptedSummary)
    return summary


def run_bandit(config: Config, *, yaml_text: str | None = None, address: str | None = None,
               tracking_uri: str | None = None, verbose: int = 1) -> RunSummary:
    """``vaesearch bandit``: the decoder bandit in ``bandit.mode`` (allocation | shared_encoder)."""
    return run_experiment(config, bandit_role(config), yaml_text=yaml_text, address=address,
                          tracking_uri=tracking_uri, verbose=verbose)


def run_experiment(config: Config, role: str, *, yaml_text: str | None = None, address: str | None = None,
                   tracking_uri: str | None = None, verbose: int = 1) -> RunSummary:
    """Start a new run of the mode ``role`` (a key of ``search.modes.MODES``)."""
    check_runnable(config, role)  # every trial it can draw would start (else ConfigError, exit 2)
    mode = MODES.get(role)(config)
    tracker = connect_tracking(tracking_uri or config.tracking.uri, config.tracking.experiment)
    ensure_ray(address or config.resources.address, verbose, _shipped(config))  # both reachable before the parent run
    name = f"{config.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    tracker.start_parent(config, yaml_text, run_name=name, role=role, searched=searched_paths(mode.searched_keys()))
    path = experiment_path(storage_path(config.resources.storage_path), name)
    ExperimentRecord(config=config.model_dump(mode="json"), yaml_text=yaml_text, tracking_uri=tracker.uri,
                     experiment_id=tracker.experiment_id, parent_run_id=tracker.parent_run_id or "", role=role,
                     config_dir=str(config.directory) if config.directory else None).write(path)
    run = RunContext(config, tracker, path, verbose)
    callback = _callback(config, mode, tracker)
    return _fit(mode, run, callback, lambda: _new_tuner(mode, run, callback, name))


def resume_experiment(experiment: str, *, address: str | None = None, verbose: int = 1) -> RunSummary:
    """Finish a run of any mode whose driver stopped (killed, crashed, Ctrl-C): ``Tuner.restore``
    brings back the trials and the searcher's (or the bandit scheduler's) state; finished trials
    are not rerun, unfinished ones continue from their last checkpoint; MLflow goes on in the same
    parent run, and each trial keeps its one child run."""
    path = resolve_experiment(experiment)
    record = ExperimentRecord.read(path)
    if record.role not in MODES:
        raise ValueError(f"{path!r} was recorded by a run mode this vaesearch does not know ({record.role!r}); "
                         f"known modes: {MODES.names()}")
    config = parse_config(record.config)
    config._directory = Path(record.config_dir) if record.config_dir else None   # plug-ins found as at the start
    mode = MODES.get(record.role)(config)
    tracker = attach_tracking(record.tracking_uri, record.experiment_id, record.parent_run_id)
    ensure_ray(address or config.resources.address, verbose, _shipped(config))
    tracker.reopen_parent()
    run = RunContext(config, tracker, path, verbose)
    callback = _callback(config, mode, tracker)
    callback.adopt_on_restore()  # the restored experiment calls this instance
    mode.on_restore(run)
    try:
        return _fit(mode, run, callback, lambda: Tuner.restore(
            path, trainable=mode.trainable(), resume_unfinished=True, resume_errored=False, restart_errored=False))
    finally:
        adoption.forget(run.parent_run_id)


def _shipped(config: Config) -> list[str]:
    """The plug-in modules a cluster's workers get from this driver (``py_modules``)."""
    from search.plugin_modules import local_sources

    return [str(p) for p in local_sources(config).values()]


def storage_path(path: str) -> str:
    return path if "://" in path else str(Path(path).expanduser().resolve())


def reporter(parameter_columns: list[str], metric_columns: dict[str, str]) -> CLIReporter:
    # The classic table reporter; the new output engine ignores custom columns.
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    return CLIReporter(metric_columns=metric_columns, parameter_columns=parameter_columns, sort_by_metric=True,
                       max_report_frequency=15)


def _callback(config: Config, mode: Mode, tracker: Tracker) -> MlflowTrialCallback:
    return MlflowTrialCallback(tracker, log_images=config.tracking.log_images, retry_after_s=config.tracking.retry_s,
                               style=mode.trial_runs(), background=config.tracking.write_in_background)


def _new_tuner(mode: Mode, run: RunContext, callback: MlflowTrialCallback, name: str) -> Tuner:
    """The one Tuner builder: the mode's trainable, space and TuneConfig; the driver's run policy."""
    resources = run.config.resources
    columns, metrics = mode.progress_columns()
    return Tuner(
        _with_resources(mode.trainable(), run.config),
        param_space=mode.param_space(),
        tune_config=mode.tune_config(run),
        run_config=RunConfig(
            name=name, storage_path=storage_path(resources.storage_path),
            callbacks=[callback, interrupts.InterruptWatch(), RetryOnlyWhatCanSucceed(), *mode.callbacks(run)],
            failure_config=FailureConfig(max_failures=resources.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=resources.checkpoints_to_keep),
            progress_reporter=reporter(columns, metrics) if run.verbose else None, verbose=run.verbose,
        ),
    )


def _with_resources(trainable: Callable[..., object], config: Config) -> Callable[..., object]:
    return tune.with_resources(trainable, {"cpu": config.resources.cpu, "gpu": config.resources.gpu})


def _fit(mode: Mode, run: RunContext, callback: MlflowTrialCallback, make_tuner: Callable[[], Tuner]) -> RunSummary:
    """Fit the tuner (a new or a restored one), then summarise. The parent run ends FINISHED only
    when that worked; KILLED when Ctrl-C or SIGTERM stopped it (Tune saves its state and the run is
    not finalised: no best trial, no model; the trials' open child runs are closed KILLED); a
    SIGKILLed driver leaves it RUNNING. Either way ``vaesearch resume`` finishes it."""
    with parent_run(run.tracker) as outcome, interrupts.watching():
        results = make_tuner().fit()
        if interrupts.interrupted():  # Tune stopped the run on the signal and returned what it had
            summary: RunSummary = InterruptedSummary(**RunSummary.location(run), trials=len(results),
                                                     ended=_ended(results))
            outcome["status"] = "KILLED"
        else:
            summary = mode.finish(results, run)
            prune_checkpoints(results)
        callback.flush(force=True)
        summary.tracking_gap = len(callback.backlog)
        if outcome["status"] == "KILLED" and not callback.backlog:
            _close_cut_trials(run.tracker)
    return summary


def _ended(results: ResultGrid) -> int:
    """Trials Tune holds as TERMINATED or ERROR (ResultGrid keeps the Trial objects privately)."""
    trials = getattr(getattr(results, "_experiment_analysis", None), "trials", None) or []
    return sum(1 for trial in trials if trial.status in ("TERMINATED", "ERROR"))


def _close_cut_trials(tracker: Tracker) -> None:
    try:
        tracker.close_running_children("KILLED")
    except TRACKING_ERRORS as exc:  # the store went away: resume reopens them either way
        log.warning("could not mark the interrupted trials' MLflow runs KILLED: %s", exc)


@contextmanager
def parent_run(tracker: Tracker) -> Iterator[dict[str, str]]:
    """The parent run ends FINISHED when the block does (or the status the block sets in the
    yielded mapping), KILLED on a second Ctrl-C, FAILED when it raises; a tracking server that is
    down by then is logged, not raised over what the block computed."""
    status = "FAILED"
    outcome = {"status": "FINISHED"}
    try:
        yield outcome
        status = outcome["status"]
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        try:
            tracker.finish_parent(status)
        except TRACKING_ERRORS as exc:
            log.warning("could not mark the MLflow parent run %s: %s", status, exc)


def prune_checkpoints(results: ResultGrid) -> None:
    """Once the run is over, keep only each trial's last checkpoint (what a restore needs)."""
    for result in results:
        if result.checkpoint is None:
            continue
        for checkpoint, _ in result.best_checkpoints or []:
            if checkpoint.path != result.checkpoint.path:
                try:
                    if checkpoint.filesystem.get_file_info(checkpoint.path).type == FileType.NotFound:
                        continue  # pruned by an earlier end of this run (a resumed run ends twice)
                    checkpoint.filesystem.delete_dir(checkpoint.path)
                except OSError as exc:  # FileNotFoundError included
                    log.warning("could not delete the old checkpoint %s: %s", checkpoint.path, exc)
