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

A β-conditioned search (``model.beta_conditioned``) puts a whole curve per trial in the plane: each
trial contributes one point per grid β (``search/modes/rd_points.py``), labelled with its β and its
trial's run id; the searcher minimises each trial's curve score (``rd/mean_beta_loss``), and a front
trial is registered once, tagged with the β of its front points.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ray.tune import ResultGrid, TuneConfig
from ray.tune.schedulers import FIFOScheduler

from search import plots, roles
from search.callback import TRACKING_ERRORS
from search.modes.base import RunContext, RunSummary
from search.modes.rd_points import TrialPoint, trial_points, trials_front
from search.modes.search import SearchMode, _row, open_hint
from search.modes.search_arms import front_arm_stats
from search.rd_plots import RDPoint, rd_front_figure, rd_front_html
from search.searchers import make_searcher
from search.tracking import RegistryEntry, error_summary
from trainables.beta_conditioning import CURVE_LOSS
from trainables.checkpoint import load_model
from trainables.search_names import DECODER_KEY

ON_FRONT_TAG = "vaesearch.on_front"
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
    grid_beta: float | None = None   # a point of a β-conditioned trial's curve: the β it was evaluated at

    def line(self) -> str:
        settings = "  ".join(f"{k}={_short(self.config[k])}" for k in FRONT_COLUMNS if k in self.config)
        at = f"β={self.grid_beta:.4g} of trial {self.trial_id}  " if self.grid_beta is not None else ""
        return f"  rate {self.rate:8.3f}  distortion {self.distortion:9.3f}  nelbo {self.nelbo:9.3f}  {at}{settings}"


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
            conditioned = any(t.grid_beta is not None for t in self.front)
            what = "points of the finished trials' curves" if conditioned else "of the finished trials"
            lines.append(f"rate–distortion front: {len(self.front)} {what} (by rate):")
            lines += [t.line() for t in self.front]
            assert self.reference is not None
            lines.append(f"hypervolume {self.hypervolume:.4g} against the reference point (rate, distortion) = "
                         f"({self.reference[0]:.4g}, {self.reference[1]:.4g}): the worst finished point's rate and "
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

    def progress_columns(self) -> tuple[list[str], dict[str, str]]:
        params, metrics = super().progress_columns()
        if self.config.model.beta_conditioned is not None:
            metrics = {**metrics, CURVE_LOSS: "curve loss"}
        return params, metrics

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
        finished = [r for r in results if r.error is None and r.metrics]
        finished.sort(key=lambda r: float(r.metrics.get("timestamp", 0)))   # the order they finished
        per_trial = [trial_points(str(r.metrics.get("trial_id")), r.metrics, _beta(r.config)) for r in finished]
        fr = trials_front(per_trial)
        if fr is None:
            return
        by_id = {str(r.metrics.get("trial_id")): r for r in finished}
        summary.front = [self._front_point(p, by_id[p.trial_id], run_ids) for p in fr.front]
        summary.reference, summary.hypervolume = fr.reference, fr.hypervolume

        for n, value in enumerate(fr.history, start=1):   # the front's growth, in the order trials finished
            tracker.log_metrics({"front/hypervolume": value}, step=n)
        tracker.log_metrics({"front/size": float(len(summary.front))})
        on_front = fr.trials_on_front()
        for points in per_trial:
            if points and run_ids.get(trial_id := points[0].trial_id):
                tracker.set_run_tags(run_ids[trial_id], {ON_FRONT_TAG: str(trial_id in on_front).lower()})
        rd = [self._rd_point(p, by_id[p.trial_id].config, run_ids) for p in fr.points]
        reference = fr.reference
        tracker.log_figure(rd_front_figure(rd, reference, title=f"{self.config.name}: rate–distortion"),
                           "rd_front.png")
        tracker.log_text(rd_front_html(rd, reference, title=f"{self.config.name}: rate–distortion"), "rd_front.html")
        tracker.log_table([{"trial_id": t.trial_id, "mlflow_run_id": t.run_id, "beta": t.grid_beta,
                            "beta_conditioned": t.grid_beta is not None, "rate": t.rate,
                            "distortion": t.distortion, "nelbo": t.nelbo, "config": t.config} for t in summary.front],
                          name="front.json")
        tracker.log_metrics({"front/hypervolume_final": summary.hypervolume})
        if self.config.search.algorithm == "bandit_tpe":
            _log_front_arms(run, results, per_trial, reference)
        tracker.set_tags({"vaesearch.front_reference": f"{reference[0]:.6g},{reference[1]:.6g}"})

        registered = self.config.tracking.registered_model
        for t in _one_per_trial(summary.front):   # a β-conditioned trial: one model for all its front points
            result = by_id[t.trial_id]
            if result.checkpoint is None or t.run_id is None:
                continue
            points = [p for p in summary.front if p.trial_id == t.trial_id]
            entry = self._front_entry(t, run, points) if registered else None
            with result.checkpoint.as_directory() as directory:
                version = tracker.log_model(load_model(directory), t.run_id, entry, directory).version
            if version:
                summary.model_versions.append(version)
        summary.registered_model = registered if summary.model_versions else None
        tracker.set_description(_description(self.config.name, summary))

    @staticmethod
    def _front_point(p: TrialPoint, result: Any, run_ids: dict[str, str]) -> FrontTrial:
        nelbo = p.rate + p.distortion if p.conditioned else float(result.metrics.get("val/nelbo", p.rate + p.distortion))
        return FrontTrial(p.trial_id, run_ids.get(p.trial_id), p.rate, p.distortion, nelbo, dict(result.config),
                          grid_beta=p.beta if p.conditioned else None)

    @staticmethod
    def _rd_point(p: TrialPoint, config: dict[str, Any], run_ids: dict[str, str]) -> RDPoint:
        details = {k: _short(config[k]) for k in FRONT_COLUMNS if k in config and k != "beta"}
        if p.conditioned:
            details = {"mlflow run": run_ids.get(p.trial_id, "?"), **details}
        return RDPoint(p.label, p.rate, p.distortion, p.beta, details)

    def _front_entry(self, t: FrontTrial, run: RunContext, points: list[FrontTrial]) -> RegistryEntry:
        """One version per front trial (no alias: no single best), tagged with its rate and distortion; a
        β-conditioned trial's with the β, rate and distortion of each of its front points (comma lists)."""
        config = self.config
        assert config.tracking.registered_model is not None
        text = (f"Front point of the rate–distortion search `{config.name}` (parent run `{run.parent_run_id}`, "
                f"[open](#/experiments/{run.tracker.experiment_id}/runs/{run.parent_run_id})), dataset "
                f"`{config.data.name}`: rate {t.rate:.4g}, distortion {t.distortion:.4g} nats.\n\nConfig: "
                + ", ".join(f"{k}={v}" for k, v in sorted(t.config.items()))
                + "\n\nSafe to load without unpickling: the run's `best_checkpoint/` artifact with "
                "`trainables.checkpoint.load_model` (weights only).")
        tags = {"rate": ",".join(f"{p.rate:.6g}" for p in points),
                "distortion": ",".join(f"{p.distortion:.6g}" for p in points), "val/nelbo": f"{t.nelbo:.6g}",
                "trial_id": t.trial_id, "search": config.name, "dataset": config.data.name,
                "parent_run_id": run.parent_run_id}
        if t.grid_beta is not None:
            tags["front_betas"] = ",".join(f"{p.grid_beta:.4g}" for p in points)
            tags.pop("val/nelbo")   # a grid point's D + R, not the trial's val/nelbo
            text += (f"\n\nβ-conditioned: one model for β in [{config.model.beta_conditioned.low:g}, "  # type: ignore[union-attr]
                     f"{config.model.beta_conditioned.high:g}]; on the front at β = {tags['front_betas']}. "  # type: ignore[union-attr]
                     "Evaluate it at a β with `model.at_beta(β)`.")
        return RegistryEntry(config.tracking.registered_model, text, tags, alias=None)


def _log_front_arms(run: RunContext, results: Any, per_trial: list[list[TrialPoint]],
                    reference: tuple[float, float]) -> None:
    """The hypervolume bandit: trials per decoder and each decoder's share of the front's
    hypervolume, on the parent run (``arm/<decoder>/trials``, ``arm/<decoder>/front_share``,
    ``arms.json``, ``trials_per_arm.png``), as the single-objective search logs its arms."""
    points = {ps[0].trial_id: [(p.rate, p.distortion) for p in ps] for ps in per_trial if ps}
    trials = [((r.config or {}).get(DECODER_KEY), points.get(str((r.metrics or {}).get("trial_id")), []))
              for r in results]
    stats = front_arm_stats(trials, run.config.search.space.decoder_choices() or [], reference)
    tracker = run.tracker
    metrics = {f"arm/{s.arm}/trials": float(s.trials) for s in stats}
    metrics.update({f"arm/{s.arm}/front_share": float(s.reward or 0.0) for s in stats})
    tracker.log_metrics(metrics)
    tracker.log_figure(plots.bar_chart([s.arm for s in stats], [s.trials for s in stats],
                                       title="bandit_tpe: trials per decoder", ylabel="trials"), "trials_per_arm.png")
    tracker.log_table([asdict(s) for s in stats], name="arms.json")


def _one_per_trial(front: list[FrontTrial]) -> list[FrontTrial]:
    """The first front point of each trial, in front order."""
    seen: dict[str, FrontTrial] = {}
    for t in front:
        seen.setdefault(t.trial_id, t)
    return list(seen.values())


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
        if t.grid_beta is not None:
            settings = f"β={t.grid_beta:.4g} (of its curve), {settings}"
        link = f"[{t.trial_id}](#/experiments/{summary.experiment_id}/runs/{t.run_id})" if t.run_id else t.trial_id
        lines.append(f"| {link} | {t.rate:.3f} | {t.distortion:.3f} | {t.nelbo:.3f} | {settings} |")
    if summary.reference is not None:
        lines += ["", f"Hypervolume {summary.hypervolume:.4g} against the reference point (rate, distortion) = "
                      f"({summary.reference[0]:.4g}, {summary.reference[1]:.4g})."]
    lines += ["", "Plots: `rd_front.png`, `rd_front.html` (hover a point for its trial); the front trials in "
                  "`front.json`; child runs tagged `vaesearch.on_front`."]
    return "\n".join(lines)
