"""The rate–distortion search (``vaesearch run`` with ``search.objective: rate_distortion``): two
objectives, ``val/rate`` and ``val/distortion``, both minimised, through Ray Tune's ``OptunaSearch``
with a metric list (Optuna's multi-objective TPE, NSGA-II, GP or random sampler). No early
stopping: a trial worse than others by one objective may be on the front by the other, and
Optuna's multi-objective studies do not prune. Every trial runs to its last epoch.

At the end the answer is the *front*: the finished trials no other finished trial beats in both
rate and distortion (``search/pareto.py``), each with its last epoch's metrics. The parent run
gets ``rd_front.png`` and ``rd_front.html`` (every trial in the RD plane, the front joined,
lines of constant ELBO, colour by β), ``front.json`` (the front trials, their configs and child
run ids), ``front/hypervolume`` after each finished trial (step = trials finished so far, against
the reference point of all finished trials), and each child run the tag
``vaesearch.on_front=true|false``. Each front trial's model is logged in its child run and
registered: one model, one version per front point, tagged with its rate and distortion.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ray.tune import ResultGrid, TuneConfig
from ray.tune.schedulers import FIFOScheduler

from search import roles
from search.callback import TRACKING_ERRORS
from search.modes.base import RunContext, RunSummary
from search.modes.search import SearchMode, _row, open_hint
from search.pareto import hypervolume, non_dominated, reference_point
from search.rd_plots import RDPoint, rd_front_figure, rd_front_html
from search.searchers import make_searcher
from search.tracking import RegistryEntry, error_summary
from trainables.checkpoint import load_model

ON_FRONT_TAG = "vaesearch.on_front"
RATE, DISTORTION = "val/rate", "val/distortion"
#: The settings a front line shows, when the trial has them.
FRONT_COLUMNS = ("beta", "latent_dim", "decoder", "schedule", "prior")


@dataclass(frozen=True)
class FrontTrial:
    trial_id: str
    run_id: str | None
    rate: float
    distortion: float
    nelbo: float
    config: dict[str, Any]

    def line(self) -> str:
        settings = "  ".join(f"{k}={_short(self.config[k])}" for k in FRONT_COLUMNS if k in self.config)
        return f"  rate {self.rate:8.3f}  distortion {self.distortion:9.3f}  nelbo {self.nelbo:9.3f}  {settings}"


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


@dataclass(kw_only=True)
class FrontSummary(RunSummary):
    n_trials: int
    n_errors: int
    front: list[FrontTrial] = field(default_factory=list)
    reference: tuple[float, float] | None = None
    hypervolume: float = 0.0
    model_versions: list[str] = field(default_factory=list)
    registered_model: str | None = None
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.front)

    def describe(self) -> str:
        lines = [f"trials: {self.n_trials} ({self.n_errors} failed)", f"Tune results: {self.experiment_path}"]
        lines += [f"  trial error: {e}" for e in self.errors]
        if not self.front:
            lines.append("no trial finished successfully; see the errors above and in the Tune results")
        else:
            lines.append(f"rate–distortion front: {len(self.front)} of the finished trials (by rate):")
            lines += [t.line() for t in self.front]
            assert self.reference is not None
            lines.append(f"hypervolume {self.hypervolume:.4g} against the reference point (rate, distortion) = "
                         f"({self.reference[0]:.4g}, {self.reference[1]:.4g}): the worst finished trial's rate and "
                         "distortion, plus 10 % of each one's range")
        lines.append(self.parent_run_line())
        if self.model_versions:
            lines.append(f"registered '{self.registered_model}': versions {', '.join(self.model_versions)} "
                         "(one per front point)")
        lines += self.gap_lines()
        lines.append(open_hint(self.tracking_uri, self.experiment_id, self.parent_run_id))
        return "\n".join(lines)


class RateDistortionMode(SearchMode):
    role = roles.RATE_DISTORTION

    def tune_config(self, run: RunContext) -> TuneConfig:
        search = self.config.search
        # The searcher holds both metrics; Tune's own metric/mode stay unset (they take one).
        return TuneConfig(search_alg=make_searcher(self.config), scheduler=FIFOScheduler(),
                          num_samples=search.num_samples, reuse_actors=True)

    def finish(self, results: ResultGrid, run: RunContext) -> FrontSummary:
        summary = FrontSummary(**RunSummary.location(run), n_trials=len(results), n_errors=len(results.errors),
                               errors=sorted({error_summary(str(e)) for e in results.errors}))
        try:
            self._finalize_front(results, run, summary)
        except TRACKING_ERRORS as exc:
            summary.errors.append(f"MLflow could not record the end of the search ({error_summary(str(exc))}); "
                                  f"`vaesearch sync {run.experiment_path}` writes it when the tracking server is back")
        return summary

    def _finalize_front(self, results: ResultGrid, run: RunContext, summary: FrontSummary) -> None:
        tracker = run.tracker
        run_ids = tracker.child_runs()
        tracker.log_table([_row(r, run_ids) for r in results])
        ok = [r for r in results if r.error is None and r.metrics and RATE in r.metrics and DISTORTION in r.metrics]
        if not ok:
            return
        ok.sort(key=lambda r: float(r.metrics.get("timestamp", 0)))   # the order they finished
        points = [(float(r.metrics[RATE]), float(r.metrics[DISTORTION])) for r in ok]
        reference = reference_point(points)
        on_front = set(non_dominated(points))
        trials = [FrontTrial(str(r.metrics.get("trial_id")), run_ids.get(str(r.metrics.get("trial_id"))),
                             p[0], p[1], float(r.metrics.get("val/nelbo", p[0] + p[1])), dict(r.config))
                  for r, p in zip(ok, points)]
        summary.front = sorted((trials[i] for i in on_front), key=lambda t: (t.rate, t.distortion))
        summary.reference, summary.hypervolume = reference, hypervolume(points, reference)

        for n in range(1, len(points) + 1):   # the front's growth, in the order trials finished
            tracker.log_metrics({"front/hypervolume": hypervolume(points[:n], reference)}, step=n)
        tracker.log_metrics({"front/size": float(len(summary.front))})
        for i, t in enumerate(trials):
            if t.run_id:
                tracker.set_run_tags(t.run_id, {ON_FRONT_TAG: str(i in on_front).lower()})
        rd = [RDPoint(f"trial {t.trial_id}", t.rate, t.distortion, _beta(t.config),
                      {k: _short(t.config[k]) for k in FRONT_COLUMNS if k in t.config and k != "beta"})
              for t in trials]
        tracker.log_figure(rd_front_figure(rd, reference, title=f"{self.config.name}: rate–distortion"),
                           "rd_front.png")
        tracker.log_text(rd_front_html(rd, reference, title=f"{self.config.name}: rate–distortion"), "rd_front.html")
        tracker.log_table([{"trial_id": t.trial_id, "mlflow_run_id": t.run_id, "rate": t.rate,
                            "distortion": t.distortion, "nelbo": t.nelbo, "config": t.config} for t in summary.front],
                          name="front.json")
        tracker.log_metrics({"front/hypervolume_final": summary.hypervolume})
        tracker.set_tags({"vaesearch.front_reference": f"{reference[0]:.6g},{reference[1]:.6g}"})

        registered = self.config.tracking.registered_model
        by_id = {str(r.metrics.get("trial_id")): r for r in ok}
        for t in summary.front:
            result = by_id[t.trial_id]
            if result.checkpoint is None or t.run_id is None:
                continue
            entry = self._front_entry(t, run) if registered else None
            with result.checkpoint.as_directory() as directory:
                version = tracker.log_model(load_model(directory), t.run_id, entry, directory).version
            if version:
                summary.model_versions.append(version)
        summary.registered_model = registered if summary.model_versions else None
        tracker.set_description(_description(self.config.name, summary))

    def _front_entry(self, t: FrontTrial, run: RunContext) -> RegistryEntry:
        """One version per front point, tagged with its rate and distortion (no alias: no single best)."""
        config = self.config
        assert config.tracking.registered_model is not None
        text = (f"Front point of the rate–distortion search `{config.name}` (parent run `{run.parent_run_id}`, "
                f"[open](#/experiments/{run.tracker.experiment_id}/runs/{run.parent_run_id})), dataset "
                f"`{config.data.name}`: rate {t.rate:.4g}, distortion {t.distortion:.4g} nats.\n\nConfig: "
                + ", ".join(f"{k}={v}" for k, v in sorted(t.config.items()))
                + "\n\nSafe to load without unpickling: the run's `best_checkpoint/` artifact with "
                "`trainables.checkpoint.load_model` (weights only).")
        tags = {"rate": f"{t.rate:.6g}", "distortion": f"{t.distortion:.6g}", "val/nelbo": f"{t.nelbo:.6g}",
                "trial_id": t.trial_id, "search": config.name, "dataset": config.data.name,
                "parent_run_id": run.parent_run_id}
        return RegistryEntry(config.tracking.registered_model, text, tags, alias=None)


def _beta(config: dict[str, Any]) -> float | None:
    beta = config.get("beta")
    return float(beta) if isinstance(beta, (int, float)) and beta > 0 else None


def _description(name: str, summary: FrontSummary) -> str:
    """The parent run's MLflow description: the front as a table, the hypervolume, the plots."""
    lines = [f"**Rate–distortion search `{name}`**: {summary.n_trials} trials ({summary.n_errors} failed); "
             f"**{len(summary.front)} on the front** (no other trial has both a lower rate and a lower distortion).",
             "", "| trial | rate | distortion | nelbo | settings |", "|---|---|---|---|---|"]
    for t in summary.front:
        settings = ", ".join(f"{k}={_short(t.config[k])}" for k in FRONT_COLUMNS if k in t.config)
        link = f"[{t.trial_id}](#/experiments/{summary.experiment_id}/runs/{t.run_id})" if t.run_id else t.trial_id
        lines.append(f"| {link} | {t.rate:.3f} | {t.distortion:.3f} | {t.nelbo:.3f} | {settings} |")
    if summary.reference is not None:
        lines += ["", f"Hypervolume {summary.hypervolume:.4g} against the reference point (rate, distortion) = "
                      f"({summary.reference[0]:.4g}, {summary.reference[1]:.4g})."]
    lines += ["", "Plots: `rd_front.png`, `rd_front.html` (hover a point for its trial); the front trials in "
                  "`front.json`; child runs tagged `vaesearch.on_front`."]
    return "\n".join(lines)
