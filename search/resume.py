"""Continue an experiment from Tune's storage: ``vaesearch resume`` and ``vaesearch sync``.

- **resume** (the driver died mid-search): ``Tuner.restore`` brings back the trials and the
  searcher's state (Optuna studies, bandit arms); finished trials are not rerun, unfinished ones
  continue from their last checkpoint; MLflow goes on in the same parent run, and each trial keeps
  its one child run (found again by its trial-id tag; epochs already logged are not logged again).
- **sync** (the tracking server was unreachable): replays every trial's results from Tune's
  storage through the same MLflow callback, writing only what MLflow lacks.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ray.tune import ExperimentAnalysis, Tuner

from search.callback import MlflowTrialCallback
from search.config import parse_config
from search.experiment import ExperimentRecord
from search.run import SearchSummary, attach_tracking, ensure_ray, fit_and_summarize, search_trainable

#: Tune's trial statuses that end a trial.
_ENDED = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}


def resolve_experiment(experiment: str, storage: str = "./ray_results") -> str:
    """An experiment directory, or a name under ``storage``; absolute (Tune needs that)."""
    if "://" in experiment:
        return experiment
    path = Path(experiment).expanduser()
    if not path.exists() and not path.is_absolute() and (Path(storage) / experiment).exists():
        path = Path(storage) / experiment
    return str(path.resolve())


def resume_search(experiment: str, *, address: str | None = None, verbose: int = 1) -> SearchSummary:
    """Finish a search whose driver stopped (killed, crashed, Ctrl-C)."""
    path = resolve_experiment(experiment)
    record = ExperimentRecord.read(path)
    if record.role != "search":
        raise ValueError(f"{path!r} is a {record.role!r} experiment; `vaesearch resume` continues searches "
                         "started with `vaesearch run` (rerun a bandit experiment with `vaesearch bandit`)")
    config = parse_config(record.config)
    tracker = attach_tracking(record.tracking_uri, record.experiment_id, record.parent_run_id)
    tracker.reopen_parent()
    ensure_ray(address or config.resources.address, verbose)
    callback = MlflowTrialCallback(tracker, log_images=config.tracking.log_images, retry_after_s=config.tracking.retry_s)
    callback.adopt_on_restore()  # the restored experiment calls this instance
    return fit_and_summarize(
        config, tracker, callback, path,
        lambda: Tuner.restore(path, trainable=search_trainable(config), resume_unfinished=True,
                              resume_errored=False, restart_errored=False),
    )


@dataclass
class SyncReport:
    trials: int
    epochs_written: int
    still_missing: int   # events the tracking store refused (still unreachable)

    def describe(self) -> str:
        text = f"{self.trials} trial(s) checked; {self.epochs_written} epoch record(s) written to MLflow"
        if self.still_missing:
            text += f"; {self.still_missing} event(s) could not be written (is the tracking server up?)"
        return text


def sync_experiment(experiment: str) -> SyncReport:
    """Write into MLflow whatever of Tune's stored results it lacks (idempotent)."""
    path = resolve_experiment(experiment)
    record = ExperimentRecord.read(path)
    config = parse_config(record.config)
    tracker = attach_tracking(record.tracking_uri, record.experiment_id, record.parent_run_id)
    callback = MlflowTrialCallback(tracker, log_images=config.tracking.log_images, retry_after_s=0.0)
    written = 0
    analysis = ExperimentAnalysis(path)
    for trial in analysis.trials:
        results = _stored_results(Path(trial.path))
        status = _ENDED.get(trial.status)
        images = None
        if status == "FINISHED" and trial.checkpoint is not None and config.tracking.log_images:
            with trial.checkpoint.as_directory() as directory:
                images = callback.copy_images(directory)
        error_file = Path(trial.path) / "error.txt"
        error = error_file.read_text(errors="replace") if error_file.is_file() else ""
        written += callback.replay(trial.trial_id, str(trial), dict(trial.config), results,
                                   status=status, images=images, error=error)
    return SyncReport(trials=len(analysis.trials), epochs_written=written, still_missing=len(callback.backlog))


def _stored_results(trial_dir: Path) -> list[dict]:
    """The trial's reported results, in order (Tune's ``result.json``: one JSON object a line)."""
    file = trial_dir / "result.json"
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

