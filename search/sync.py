"""``vaesearch sync``: fill MLflow from Tune's storage after the tracking server was unreachable.

Replays every trial's results (Tune's ``result.json``) through the same MLflow callback a live
run uses, writing only what MLflow lacks: each trial keeps its one child run (found again by its
trial-id tag), epochs already logged are not logged again. Works for every run mode: it reads the
experiment record (``vaesearch.json``) every mode leaves. (Resuming a run whose driver died is
the driver's: ``search.driver.resume_experiment``.)
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ray.tune import ExperimentAnalysis

from search.callback import MlflowTrialCallback
from search.config import parse_config
from search.connect import attach_tracking
from search.experiment import ExperimentRecord, resolve_experiment
from search.modes import MODES

#: Tune's trial statuses that end a trial.
_ENDED = {"TERMINATED": "FINISHED", "ERROR": "FAILED"}


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
    style = MODES.get(record.role)(config).trial_runs() if record.role in MODES else None
    callback = MlflowTrialCallback(tracker, log_images=config.tracking.log_images, retry_after_s=0.0, style=style)
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
        written += callback.replay(trial, results,
                                   status=status, images=images, error=error)
    return SyncReport(trials=len(analysis.trials), epochs_written=written, still_missing=len(callback.backlog))


def _stored_results(trial_dir: Path) -> list[dict]:
    """The trial's reported results, in order (Tune's ``result.json``: one JSON object a line)."""
    file = trial_dir / "result.json"
    if not file.is_file():
        return []
    return [json.loads(line) for line in file.read_text().splitlines() if line.strip()]

