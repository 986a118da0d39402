"""MLflow tracking, written from the driver only.

Layout (docs/mlflow.md): one parent run per search (the config as params, less what the search
overrides; the YAML as an artifact; at the end the best trial's config and metrics, a markdown
description and the review plots), one nested child run per Tune trial (``mlflow.parentRunId``
tag; named and described by ``search.trial_runs``; every epoch's metrics with ``step=epoch``,
reconstructions and prior-samples PNGs); the best model logged in the best trial's run and
registered with a description, tags and the ``champion`` alias. Workers never talk to MLflow: only the
driver needs the tracking server's address and credentials.
"""
from __future__ import annotations

import json
import logging
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import mlflow
import numpy as np
import torch
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import Schema, TensorSpec

import trainables
from search import plots
from search.config import Config
from search.trial_runs import BEST_TAG, EPOCHS_METRIC, SETTING_KEYS, flatten
from trainables.metrics import REPORTED_PREFIXES

log = logging.getLogger(__name__)

PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
TRIAL_ID_TAG = "vaesearch.trial_id"
ROLE_TAG = "vaesearch.role"
NOTE_TAG = "mlflow.note.content"  # a run's markdown description in the UI
CHAMPION_ALIAS = "champion"       # the registered model's alias, moved to each new best version
STATE_TAG = "vaesearch.state"   # running | resumed | finished | interrupted | failed
_STATES = {"FINISHED": "finished", "KILLED": "interrupted", "FAILED": "failed"}
#: What a trial's checkpoint holds for its child run: images under ``images/``; a learnt prior's
#: pseudo-inputs (VampPrior) under ``images/`` and its summary JSON under ``prior/``.
IMAGE_FILES = ("reconstructions.png", "samples.png", "pseudo_inputs.png", "prior.json")
_MAX_PARAM = 6000  # MLflow's limit on a param value


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
        if key in SETTING_KEYS:  # a setting reported beside the metrics: a param, never a metric
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
    def start_parent(self, config: Config, yaml_text: str | None, run_name: str, role: str = "search",
                     searched: Iterable[str] = ()) -> str:
        """The parent run, with the validated config as params; the ``searched`` config paths
        (what the trials' sampled values override) are left out: their base values would read as
        the winner's (``search.space.*`` holds what was searched, ``best.*`` what won)."""
        run = self.client.create_run(self.experiment_id, run_name=run_name, tags={ROLE_TAG: role, STATE_TAG: "running"})
        self.parent_run_id = run.info.run_id
        searched = tuple(searched)
        params = {k: v for k, v in flatten(config.model_dump(mode="json")).items()
                  if not any(k == p or k.startswith(p + ".") for p in searched)}
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

    def set_description(self, markdown: str, run_id: str | None = None) -> None:
        """A run's description in the MLflow UI (``mlflow.note.content``, markdown)."""
        self.client.set_tag(run_id or self._parent(), NOTE_TAG, markdown)

    def mark_best(self, best_run_id: str) -> None:
        """Tag the best child run ``vaesearch.best=true`` and take the tag off any other (a
        resumed search whose best changed)."""
        for run_id in self._children_tagged(BEST_TAG):
            if run_id != best_run_id:
                self.client.delete_tag(run_id, BEST_TAG)
        self.client.set_tag(best_run_id, BEST_TAG, "true")

    def _children_tagged(self, tag: str) -> list[str]:
        runs = self.client.search_runs([self.experiment_id], max_results=10_000,
                                       filter_string=f"tags.`{PARENT_TAG}` = '{self._parent()}' AND tags.`{tag}` = 'true'")
        return [r.info.run_id for r in runs]

    def log_model(self, model: Any, run_id: str, registered: RegistryEntry | None = None,
                  checkpoint_dir: str | None = None) -> LoggedModel:
        """Log a VAE with ``mlflow.pytorch.log_model`` in its own trial's run ``run_id`` (so the
        model carries that trial's metrics, not the parent's), with a signature and an input
        example, and ``checkpoint_dir`` beside it; register it as ``registered`` describes."""
        mlflow.set_tracking_uri(self.uri)
        example = model.sample(2).detach().cpu().numpy().astype(np.float32)   # (2, C, H, W) in [0, 1]
        signature = ModelSignature(inputs=Schema([TensorSpec(np.dtype(np.float32), (-1, *example.shape[1:]), "x")]))
        with mlflow.start_run(run_id=run_id):
            # "pickle" so loading gives back the VAE itself (reconstruct/sample), not a traced graph
            # of forward (MLflow's "pt2"); the trainables package travels with the model so it loads
            # where vaesearch is not installed. The safe path is best_checkpoint/ (weights only).
            info = mlflow.pytorch.log_model(
                model, name="model", registered_model_name=registered.name if registered else None,
                serialization_format="pickle", signature=signature, input_example=example,
                code_paths=[str(Path(trainables.__file__).parent)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "numpy", "pillow"],
            )
            if checkpoint_dir is not None:  # weights + config, loadable with torch.load(weights_only=True)
                mlflow.log_artifacts(checkpoint_dir, artifact_path="best_checkpoint")
        version = getattr(info, "registered_model_version", None)
        if registered is not None and version is not None:
            self._describe_version(registered, str(version))
        return LoggedModel(info.model_uri, str(version) if registered is not None and version is not None else None)

    def _describe_version(self, entry: RegistryEntry, version: str) -> None:
        self.client.update_model_version(entry.name, version, description=entry.description)
        for key, value in entry.tags.items():
            self.client.set_model_version_tag(entry.name, version, key, value)
        if entry.alias:
            self.client.set_registered_model_alias(entry.name, entry.alias, version)

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

    def end_child(self, run_id: str, status: str, epochs_completed: int, tags: Mapping[str, str]) -> None:
        """End a child run: ``epochs_completed`` (a metric: a restarted trial goes on), the tags
        saying why it ended early, then its status."""
        metrics = [Metric(EPOCHS_METRIC, float(epochs_completed), _now_ms(), max(epochs_completed, 0))]
        self.client.log_batch(run_id, metrics=metrics if epochs_completed >= 0 else [],
                              tags=[RunTag(k, v) for k, v in tags.items()])
        self.client.set_terminated(run_id, status=status)

    def last_step(self, run_id: str) -> int:
        """The last epoch logged to a run (-1 when none): what a restarted trial must not log again."""
        keys = list(self.client.get_run(run_id).data.metrics)
        return max((m.step for key in keys for m in self.client.get_metric_history(run_id, key)), default=-1)

    def log_epoch(self, run_id: str, metrics: Mapping[str, float], step: int) -> None:
        now = _now_ms()
        self.client.log_batch(run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def log_step_image(self, run_id: str, path: str | Path, key: str, step: int) -> None:
        """An image with a step (``MlflowClient.log_image(key=, step=)``): the run's Artifacts
        tab / image grid shows a slider over the steps."""
        from PIL import Image

        with Image.open(path) as image:
            self.client.log_image(run_id, image.convert("RGB"), key=key, step=step)

    def log_images(self, run_id: str, directory: str | Path) -> list[str]:
        logged = []
        for name in IMAGE_FILES:
            path = Path(directory) / name
            if path.is_file():
                self.client.log_artifact(run_id, str(path), artifact_path="prior" if name.endswith(".json") else "images")
                logged.append(name)
        return logged


@dataclass(frozen=True)
class LoggedModel:
    uri: str                 # models:/… of the logged model
    version: str | None      # its registered version, None when not registered


@dataclass(frozen=True)
class RegistryEntry:
    """What a registered model version says about itself (description, tags)."""

    name: str
    description: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    alias: str | None = CHAMPION_ALIAS   # moved to this version (None: no alias)


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
