"""MLflow tracking, written from the driver only.

Layout: one parent run per search (the config as params, the YAML as an artifact, the best
trial's config and metrics at the end, the best model logged and registered), one nested child
run per Tune trial (``mlflow.parentRunId`` tag; its sampled params, every epoch's metrics with
``step=epoch``, reconstructions and prior-samples PNGs). Workers never talk to MLflow: only the
driver needs the tracking server's address and credentials.
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from pathlib import Path
from typing import Any, Iterable, Mapping

import mlflow
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

import trainables
from search import plots
from search.config import Config
from trainables.metrics import REPORTED_PREFIXES

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
TRIAL_ID_TAG = "vaesearch.trial_id"
ROLE_TAG = "vaesearch.role"
STATE_TAG = "vaesearch.state"   # running | resumed | finished | interrupted | failed
_STATES = {"FINISHED": "finished", "KILLED": "interrupted", "FAILED": "failed"}
#: What a trial's checkpoint holds for its child run: images under ``images/``; a learnt prior's
#: pseudo-inputs (VampPrior) under ``images/`` and its summary JSON under ``prior/``.
IMAGE_FILES = ("reconstructions.png", "samples.png", "pseudo_inputs.png", "prior.json")
_MAX_PARAM = 6000  # MLflow's limit on a param value


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and None become strings for MLflow params."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _param_value(value: Any) -> str:
    text = json.dumps(value) if isinstance(value, list | dict) or value is None else str(value)
    return text[:_MAX_PARAM]


def numeric_metrics(result: Mapping[str, Any], keys: Iterable[str] | None = None) -> dict[str, float]:
    """The finite numeric entries of a Tune result that the trainables reported (``train/``,
    ``val/``, ``test/``, ...: ``trainables.metrics.REPORTED_PREFIXES``)."""
    prefixes = REPORTED_PREFIXES
    out = {}
    for key, value in result.items():
        if keys is not None and key not in keys:
            continue
        if not key.startswith(prefixes) or isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(value):
            out[key] = float(value)
    return out


class Tracker:
    """Owns the MLflow client, the experiment and the parent run of one search."""

    def __init__(self, uri: str, experiment: str) -> None:
        self.uri = uri
        self.client = MlflowClient(tracking_uri=uri)
        self.experiment_id = self._experiment(experiment)
        self.parent_run_id: str | None = None

    @classmethod
    def attach(cls, uri: str, experiment_id: str, parent_run_id: str | None) -> Tracker:
        """The tracker of an existing parent run (a resumed search); no MLflow call is made."""
        tracker = cls.__new__(cls)
        tracker.uri, tracker.client = uri, MlflowClient(tracking_uri=uri)
        tracker.experiment_id, tracker.parent_run_id = experiment_id, parent_run_id
        return tracker

    def _experiment(self, name: str) -> str:
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        return self.client.create_experiment(name, artifact_location=artifact_location(self.uri, name))

    # --- the parent run --------------------------------------------------------------------
    def start_parent(self, config: Config, yaml_text: str | None, run_name: str, role: str = "search") -> str:
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={ROLE_TAG: role, STATE_TAG: "running"})
        self.parent_run_id = run.info.run_id
        params = flatten(config.model_dump(mode="json"))
        self.client.log_batch(self.parent_run_id, params=[Param(k, _param_value(v)) for k, v in params.items()])
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / "config.yaml"
            path.write_text(yaml_text if yaml_text is not None else json.dumps(config.model_dump(mode="json"), indent=2))
            self.client.log_artifact(self.parent_run_id, str(path))
        return self.parent_run_id

    def reopen_parent(self) -> None:
        """Mark the parent run RUNNING again (a resumed search)."""
        self.client.update_run(self._parent(), status="RUNNING")
        self.client.set_tag(self._parent(), STATE_TAG, "resumed")

    def finish_parent(self, status: str = "FINISHED") -> None:
        """End the parent run; ``vaesearch.state`` says why (finished, interrupted, failed)."""
        if self.parent_run_id is not None:
            self.client.set_tag(self.parent_run_id, STATE_TAG, _STATES.get(status, status.lower()))
            self.client.set_terminated(self.parent_run_id, status=status)

    def log_best(self, best_config: Mapping[str, Any], best_metrics: Mapping[str, float], best_run_id: str | None) -> None:
        """The best trial's config (``best.<key>`` params) and metrics (``best/<metric>``). MLflow
        params are immutable: a ``best.<key>`` already logged with another value (a run finished
        again after ``vaesearch resume``) keeps it, and the current value goes to the tag
        ``vaesearch.best.<key>``, with a warning; the metrics and tags always hold the current best."""
        run_id = self._parent()
        logged = self.client.get_run(run_id).data.params
        params, tags = [], [RunTag("vaesearch.best_run_id", best_run_id or "")]
        for key, value in best_config.items():
            name, text = f"best.{key}", _param_value(value)
            if name not in logged:
                params.append(Param(name, text))
            elif logged[name] != text:
                log.warning("%s was logged as %s before; the current best (%s) is in the tag vaesearch.%s",
                            name, logged[name], text, name)
                tags.append(RunTag(f"vaesearch.{name}", text))
        metrics = [Metric(f"best/{k}", v, _now_ms(), 0) for k, v in numeric_metrics(best_metrics).items()]
        self.client.log_batch(run_id, metrics=metrics, params=params, tags=tags)

    def log_metrics(self, metrics: Mapping[str, float], step: int = 0) -> None:
        self.log_epoch(self._parent(), metrics, step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self._parent(), tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def set_run_tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        """Tags on another run of the search (a child)."""
        self.client.log_batch(run_id, tags=[RunTag(k, str(v)) for k, v in tags.items()])

    def log_text(self, text: str, artifact_file: str) -> None:
        """A text artifact (e.g. an HTML page) of the parent run."""
        self.client.log_text(self._parent(), text, artifact_file)

    def log_figure(self, figure: Any, artifact_file: str) -> None:
        """Log a matplotlib figure as a PNG of the parent run, then free it."""
        try:
            self.client.log_figure(self._parent(), figure, artifact_file)
        finally:
            plots.close(figure)

    def log_table(self, rows: list[dict[str, Any]], name: str = "trials.json") -> None:
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory) / name
            path.write_text(json.dumps(rows, indent=2, default=str))
            self.client.log_artifact(self._parent(), str(path))

    def log_model(self, model: Any, registered_model: str | None, checkpoint_dir: str | None = None) -> str:
        """Log the best VAE with ``mlflow.pytorch.log_model`` (and register it); returns the model URI."""
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=self._parent()):
            # "pickle" so loading gives back the VAE itself (reconstruct/sample), not a traced graph;
            # the trainables package travels with the model so it loads where vaesearch is not installed.
            info = mlflow.pytorch.log_model(
                model, name="model", registered_model_name=registered_model, serialization_format="pickle",
                code_paths=[str(Path(trainables.__file__).parent)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pillow"],
            )
            if checkpoint_dir is not None:  # weights + config, loadable with torch.load(weights_only=True)
                mlflow.log_artifacts(checkpoint_dir, artifact_path="best_checkpoint")
        return info.model_uri

    def log_child_model(self, run_id: str, model: Any, registered_model: str | None, checkpoint_dir: str | None,
                        tags: Mapping[str, str]) -> str | None:
        """Log a trial's VAE in its own (child) run and register it as a new version with ``tags``;
        returns the version (None when nothing is registered)."""
        mlflow.set_tracking_uri(self.uri)
        with mlflow.start_run(run_id=run_id, nested=True):
            info = mlflow.pytorch.log_model(
                model, name="model", registered_model_name=registered_model, serialization_format="pickle",
                code_paths=[str(Path(trainables.__file__).parent)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pillow"],
            )
            if checkpoint_dir is not None:
                mlflow.log_artifacts(checkpoint_dir, artifact_path="checkpoint")
        version = getattr(info, "registered_model_version", None)
        if registered_model is None or version is None:
            return None
        for key, value in tags.items():
            self.client.set_model_version_tag(registered_model, str(version), key, value)
        return str(version)

    def _parent(self) -> str:
        if self.parent_run_id is None:
            raise RuntimeError("start_parent() must be called before logging to the parent run")
        return self.parent_run_id

    # --- child runs --------------------------------------------------------------------------
    def child_run(self, trial_id: str, run_name: str, params: Mapping[str, Any]) -> tuple[str, bool]:
        """The child run of a trial and whether it was created now: created once, found again by
        its trial-id tag after a restart (a lost node, a resumed driver)."""
        parent = self._parent()
        existing = self.client.search_runs(
            [self.experiment_id],
            filter_string=f"tags.`{PARENT_TAG}` = '{parent}' AND tags.`{TRIAL_ID_TAG}` = '{trial_id}'",
            max_results=1,
        )
        if existing:
            return existing[0].info.run_id, False
        run = self.client.create_run(
            self.experiment_id,
            run_name=run_name,
            tags={PARENT_TAG: parent, TRIAL_ID_TAG: trial_id, ROLE_TAG: "trial"},
        )
        flat = flatten(params)
        self.client.log_batch(run.info.run_id, params=[Param(k, _param_value(v)) for k, v in flat.items()])
        return run.info.run_id, True

    def child_runs(self) -> dict[str, str]:
        """trial id -> child run id, for every child run of the parent."""
        runs = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self._parent()}'",
                                       max_results=10_000)
        return {r.data.tags[TRIAL_ID_TAG]: r.info.run_id for r in runs if TRIAL_ID_TAG in r.data.tags}

    def close_running_children(self, status: str = "KILLED") -> int:
        """End every child run of the parent still RUNNING (an interrupted run: the trials it cut,
        and any a killed driver left open before it); ``vaesearch resume`` reopens them. Returns
        how many were closed."""
        runs = self.client.search_runs(
            [self.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{self._parent()}' and attributes.status = 'RUNNING'",
            max_results=10_000)
        for run in runs:
            self.client.set_terminated(run.info.run_id, status=status)
        return len(runs)

    def last_step(self, run_id: str) -> int:
        """The last epoch logged to a run (-1 when none): what a restarted trial must not log again."""
        keys = list(self.client.get_run(run_id).data.metrics)
        return max((m.step for key in keys for m in self.client.get_metric_history(run_id, key)), default=-1)

    def log_epoch(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        now = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_images(self, run_id: str, directory: str | Path) -> list[str]:
        logged = []
        for name in IMAGE_FILES:
            path = Path(directory) / name
            if path.is_file():
                self.client.log_artifact(run_id, str(path), artifact_path="prior" if name.endswith(".json") else "images")
                logged.append(name)
        return logged


def artifact_location(uri: str, experiment: str) -> str | None:
    """Where a new experiment's artifacts go: beside the database file for a ``sqlite:///``
    store (MLflow's default would be ``./mlruns`` of whatever directory the process runs in);
    None (the server's or MLflow's choice) for any other store."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri[len("sqlite:///"):]).expanduser()
    if not database.name or database.name == ":memory:":
        return None
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in experiment)
    return (database.resolve().parent / "mlartifacts" / slug).as_uri()


def _now_ms() -> int:
    return int(time.time() * 1000)


def error_summary(text: str) -> str:
    """The exception line of a traceback (the last line naming an ...Error/Exception)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in reversed(lines):
        head = line.split(":", 1)[0]
        if head.endswith(("Error", "Exception")) and " " not in head:
            return line
    return lines[-1] if lines else "unknown error"
