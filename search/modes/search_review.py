"""The single-objective search's review in MLflow: the best child run tagged, the parent run's
description (``mlflow.note.content``) and its review plots, from Tune's results."""
from __future__ import annotations

import logging
from typing import Any, Mapping

from search.modes.base import RunContext
from search.review import TrialRecord, describe, finite, param_importance, trial_status
from search.review_plots import REVIEW_PLOTS, review_figures

log = logging.getLogger(__name__)


def trial_records(results: Any, metric: str, planned_epochs: int, run_ids: Mapping[str, str]) -> list[TrialRecord]:
    """One record per Tune result (trial), with its learning curve from Tune's ``progress.csv``."""
    records = []
    for result in results:
        metrics = result.metrics or {}
        trial_id = str(metrics.get("trial_id") or _trial_id_of(result))
        error = str(result.error) if result.error else None
        epochs = int(metrics.get("epoch", 0) or 0)
        end, total = finite(metrics.get("timestamp")), finite(metrics.get("time_total_s"))
        records.append(TrialRecord(
            trial_id=trial_id, config=dict(result.config or {}), epochs=epochs,
            status=trial_status(error=error, epochs=epochs, planned_epochs=planned_epochs),
            value=finite(metrics.get(metric)), curve=_curve(result, metric),
            metrics={k: v for k, v in metrics.items() if isinstance(v, float)},
            start=end - total if end is not None and total is not None else None, end=end,
            run_id=run_ids.get(trial_id), experiment_tag=_experiment_tag(result, trial_id),
        ))
    return records


def _trial_id_of(result: Any) -> str:
    """A trial that never reported: its id from its directory's name (``train_vae_<id>_...``)."""
    name = str(getattr(result, "path", "") or "").rstrip("/").split("/")[-1]
    parts = name.split("_")
    return "_".join(parts[2:4]) if len(parts) >= 4 else name


def _experiment_tag(result: Any, trial_id: str) -> str:
    """Tune names a trial's directory ``<trainable>_<trial id>_<experiment tag>_<date>``."""
    name = str(getattr(result, "path", "") or "").rstrip("/").split("/")[-1]
    return name.split(f"{trial_id}_", 1)[1] if f"{trial_id}_" in name else ""


def _curve(result: Any, metric: str) -> list[tuple[int, float]]:
    try:
        frame = result.metrics_dataframe
    except (OSError, ValueError) as exc:   # no progress file (a trial that never reported)
        log.debug("no learning curve for %s: %s", result, exc)
        return []
    if frame is None or metric not in frame or "epoch" not in frame:
        return []
    return [(int(e), float(v)) for e, v in zip(frame["epoch"], frame[metric]) if finite(v) is not None]


def log_review(run: RunContext, records: list[TrialRecord], *, best_run_id: str | None,
               best_metrics: Mapping[str, float], stopped_by: str) -> None:
    """Tag the best child, write the parent's description and its review plots."""
    tracker, metric = run.tracker, run.config.search.metric
    if best_run_id:
        tracker.mark_best(best_run_id)
    # The review is read, not used: a figure or an importance that cannot be computed is a
    # warning, never the end of a search whose results and model are recorded.
    try:
        importances = param_importance(records, seed=run.config.seed)
    except Exception as exc:  # noqa: BLE001 (optuna's evaluators raise assorted errors on odd data)
        log.warning("parameter importance not computed: %s", exc)
        importances = {}
    try:
        figures = review_figures(records, metric, importances)
    except Exception as exc:  # noqa: BLE001 (matplotlib on odd data)
        log.warning("review plots not drawn: %s", exc)
        figures = {}
    for path, figure in figures.items():
        tracker.log_figure(figure, path)
    if importances:
        tracker.log_table([{"param": k, "importance": v} for k, v in importances.items()], name="param_importance.json")
    tracker.set_description(describe(records, metric=metric, best_metrics=best_metrics,
                                     experiment_id=tracker.experiment_id, stopped_by=stopped_by, plots=REVIEW_PLOTS))
