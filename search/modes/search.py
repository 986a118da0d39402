"""The single-objective search (``vaesearch run``): Optuna (or random, or ``bandit_tpe``)
proposes, ASHA may stop early, every trial is the VAE trainable with the config's spec.

At the end the best trial (by its last ``search.metric``) gets the importance-sampled test NLL,
computed as a Ray task with the trial's resources (a GPU where trials had one), its model is
logged and registered, and the parent run gets the best config and metrics (plus, for
``bandit_tpe``, trials and best value per decoder arm).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable
from urllib.parse import quote

import ray
from ray import tune
from ray.tune import ResultGrid, TuneConfig

from search import plots, roles
from search.callback import TRACKING_ERRORS
from search.config import Config
from search.modes.base import Mode, RunContext, RunSummary
from search.modes.search_arms import arm_stats
from search.modes.search_review import log_review, trial_records
from search.searchers import make_scheduler, make_searcher
from search.tracking import RegistryEntry, error_summary, numeric_metrics
from search.trial_runs import TrialRunStyle
from search.trial_specs import nll_spec, trial_spec
from trainables.checkpoint import load_model
from trainables.final_eval import final_test_metrics
from trainables.ray_trainables import train_vae

#: The progress table's parameter columns, when searched.
SEARCH_COLUMNS = ["decoder", "latent_dim", "beta", "schedule", "prior", "objective", "lr"]


@dataclass(kw_only=True)
class SearchSummary(RunSummary):
    n_trials: int
    n_errors: int
    best_config: dict[str, Any] | None = None
    best_metrics: dict[str, float] = field(default_factory=dict)
    best_run_id: str | None = None
    model_uri: str | None = None
    registered_model: str | None = None
    errors: list[str] = field(default_factory=list)   # distinct error lines of the failed trials
    n_diverged: int = 0                                # failed trials that diverged (trainables/divergence.py)

    @property
    def ok(self) -> bool:
        return self.best_config is not None

    def describe(self) -> str:
        diverged = f", of which diverged: {self.n_diverged}, not candidates for best" if self.n_diverged else ""
        lines = [f"trials: {self.n_trials} ({self.n_errors} failed{diverged})", f"Tune results: {self.experiment_path}"]
        lines += [f"  trial error: {e}" for e in self.errors]
        if self.best_config is None:
            lines.append("no trial finished successfully; see the errors above and in the Tune results")
        else:
            lines.append("best config:")
            lines += [f"  {k}: {v}" for k, v in sorted(self.best_config.items())]
            lines.append("best metrics:")
            lines += [f"  {k}: {v:.4f}" for k, v in sorted(self.best_metrics.items())]
        lines.append(self.parent_run_line())
        if self.best_run_id:
            lines.append(f"MLflow best trial run: {self.best_run_id}")
        if self.model_uri:
            registered = f" registered as '{self.registered_model}'" if self.registered_model else ""
            lines.append(f"model: {self.model_uri}{registered}")
        lines += self.gap_lines()
        lines.append(open_hint(self.tracking_uri, self.experiment_id, self.parent_run_id))
        return "\n".join(lines)


def open_hint(uri: str, experiment_id: str, run_id: str) -> str:
    """Where to look: the parent run (its description names the best trial) and its trials, best
    first, in the runs table (MLflow 3 opens an experiment on its GenAI Traces view; the table is
    the Model training view)."""
    run = f"#/experiments/{experiment_id}/runs/{run_id}"
    trials = (f"#/experiments/{experiment_id}/runs?workflowType=machine_learning"
              f"&searchFilter={quote(f'tags.`mlflow.parentRunId` = {chr(39)}{run_id}{chr(39)}')}"
              f"&orderByKey={quote('metrics.`val/nelbo`')}&orderByAsc=true")
    if uri.startswith(("http://", "https://")):
        base = uri.rstrip("/")
        return f"open: {base}/{run}\ntrials, best first: {base}/{trials}"
    base = "http://127.0.0.1:5000"
    return f"open: mlflow ui --backend-store-uri {uri}  then {base}/{run}\ntrials, best first: {base}/{trials}"


def search_columns(config: Config) -> list[str]:
    """The progress table's parameter columns: the searched ones (a missing key fails Tune's table)."""
    return [c for c in SEARCH_COLUMNS if getattr(config.search.space, c)]


class SearchMode(Mode):
    role = roles.SEARCH

    def trainable(self) -> Callable[..., Any]:
        return tune.with_parameters(train_vae, spec=trial_spec(self.config))

    def trial_runs(self) -> TrialRunStyle:
        scheduler = self.config.search.scheduler.name
        return TrialRunStyle.of(self.config, planned_epochs=self.config.train.epochs,
                                stopped_by=scheduler if scheduler != "none" else "scheduler")

    def searched_keys(self) -> list[str]:
        return [k for k, v in self.config.search.space.model_dump().items() if v is not None]

    def tune_config(self, run: RunContext) -> TuneConfig:
        search = self.config.search
        return TuneConfig(
            metric=search.metric, mode=search.mode, search_alg=make_searcher(self.config),
            scheduler=make_scheduler(self.config), num_samples=search.num_samples,
            # A finished trial's process runs the next trial (no new worker, no torch import):
            reuse_actors=True,
        )

    def progress_columns(self) -> tuple[list[str], dict[str, str]]:
        return search_columns(self.config), {"epoch": "epoch", "val/nelbo": "nelbo", "val/rate": "rate",
                                             "val/distortion": "distortion"}

    def finish(self, results: ResultGrid, run: RunContext) -> SearchSummary:
        summary = SearchSummary(
            **RunSummary.location(run), n_trials=len(results), n_errors=len(results.errors),
            errors=sorted({error_summary(str(e)) for e in results.errors}),
            n_diverged=sum(1 for e in results.errors if "DivergenceError" in str(e)),
        )
        try:
            self._finalize(results, run, summary)
        except TRACKING_ERRORS as exc:  # the results are in Tune's storage; say so rather than lose the summary
            summary.errors.append(f"MLflow could not record the end of the search ({error_summary(str(exc))}); "
                                  f"`vaesearch sync {run.experiment_path}` writes it when the tracking server is back")
        return summary

    def _finalize(self, results: ResultGrid, run: RunContext, summary: SearchSummary) -> None:
        config, tracker = self.config, run.tracker
        run_ids = tracker.child_runs()
        tracker.log_table([_row(r, run_ids) for r in results])
        if config.search.algorithm == "bandit_tpe":
            _log_arms(run, results)
        records = trial_records(results, config.search.metric, config.train.epochs, run_ids)
        stopped_by = self.trial_runs().stopped_by
        ok = [r for r in results if r.error is None and r.metrics and config.search.metric in r.metrics]
        if not ok:
            log_review(run, records, best_run_id=None, best_metrics={}, stopped_by=stopped_by)
            return
        # Among the trials that ended well only: Tune's get_best_result would consider a failed
        # (or diverged) trial's last report too.
        sign = 1.0 if config.search.mode == "min" else -1.0
        best = min(ok, key=lambda r: sign * float(r.metrics[config.search.metric]))
        metrics = numeric_metrics(best.metrics)
        if config.final_eval.trials == "best" and best.checkpoint is not None:
            metrics = numeric_metrics({**metrics, **self._remote_test_metrics(best.checkpoint)})  # no settings
        best_run_id = run_ids.get(best.metrics.get("trial_id", ""))
        if best_run_id and config.final_eval.trials == "best":
            tracker.log_epoch(best_run_id, {k: v for k, v in metrics.items() if k.startswith("test/")},
                              int(best.metrics.get("epoch", 0)))
        tracker.log_best(best.config, metrics, best_run_id)
        summary.best_config, summary.best_metrics, summary.best_run_id = dict(best.config), metrics, best_run_id
        if best.checkpoint is not None:
            entry = registry_entry(config, best.config, metrics, run) if config.tracking.registered_model else None
            with best.checkpoint.as_directory() as directory:
                summary.model_uri = tracker.log_model(load_model(directory), best_run_id or run.parent_run_id, entry,
                                                      directory).uri
            summary.registered_model = config.tracking.registered_model
        log_review(run, records, best_run_id=best_run_id, best_metrics=metrics, stopped_by=stopped_by)

    def _remote_test_metrics(self, checkpoint: tune.Checkpoint) -> dict[str, float]:
        """Importance-sampled test NLL of one checkpoint, as a Ray task with a trial's resources."""
        resources = self.config.resources
        task = ray.remote(num_cpus=resources.cpu, num_gpus=resources.gpu)(final_test_metrics)
        return ray.get(task.remote(checkpoint, trial_spec(self.config), nll_spec(self.config)))


def registry_entry(config: Config, best_config: dict[str, Any], metrics: dict[str, float],
                   run: RunContext) -> RegistryEntry:
    """The registered version's description and tags: what it was trained on, how it was chosen."""
    assert config.tracking.registered_model is not None
    metric = config.search.metric
    lines = [f"Best trial of the search `{config.name}` (parent run `{run.parent_run_id}`, "
             f"[open](#/experiments/{run.tracker.experiment_id}/runs/{run.parent_run_id})), "
             f"dataset `{config.data.name}`, chosen by `{metric}` ({config.search.mode}).",
             "Config: " + ", ".join(f"{k}={v}" for k, v in sorted(best_config.items())),
             "Safe to load without unpickling: the run's `best_checkpoint/` artifact with "
             "`trainables.checkpoint.load_model` (weights only)."]
    tags = {"search": config.name, "dataset": config.data.name, "parent_run_id": run.parent_run_id,
            "decoder": str(best_config.get("decoder", config.model.decoder))}
    tags.update({k: f"{metrics[k]:.6g}" for k in (metric, "val/nelbo", "test/nll") if k in metrics})
    return RegistryEntry(config.tracking.registered_model, "\n\n".join(lines), tags)


def _log_arms(run: RunContext, results: ResultGrid) -> None:
    """bandit_tpe: trials per decoder arm and each arm's best metric, on the parent run. Taken
    from the results (what each arm's study was told), so a resumed search logs them too."""
    search, tracker = run.config.search, run.tracker
    stats = arm_stats(results, search.metric, search.mode, search.space.decoder_choices() or [])
    metrics = {f"arm/{s.arm}/trials": float(s.trials) for s in stats}
    metrics.update({f"arm/{s.arm}/best_{search.metric.replace('/', '_')}": s.best for s in stats if s.best is not None})
    tracker.log_metrics(metrics)
    tracker.log_figure(plots.bar_chart([s.arm for s in stats], [s.trials for s in stats],
                                       title="bandit_tpe: trials per decoder", ylabel="trials"), "trials_per_arm.png")
    tracker.log_table([asdict(s) for s in stats], name="arms.json")


def _row(result: Any, run_ids: dict[str, str]) -> dict[str, Any]:
    trial_id = (result.metrics or {}).get("trial_id")
    return {
        "trial_id": trial_id,
        "mlflow_run_id": run_ids.get(trial_id or ""),
        "config": result.config,
        "error": str(result.error)[:500] if result.error else None,
        "metrics": numeric_metrics(result.metrics or {}),
    }
