"""The search as a whole, for its MLflow review: one record per trial, the parent run's markdown
description (best trial, top 5, how many stopped early, failed, diverged; the plots), and the
parameters' importance by Optuna's fANOVA (Hutter et al. 2014, "An Efficient Approach for
Assessing Hyperparameter Importance") over the trials that ran their planned epochs.

Pure: records in, text and numbers out (``search/review_plots.py`` draws them; the search mode
reads the records from Tune's results and writes everything to MLflow).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

import optuna

from search.trial_runs import run_name

FINISHED, STOPPED, FAILED, DIVERGED = "finished", "stopped", "failed", "diverged"


@dataclass
class TrialRecord:
    """One trial as the review sees it."""

    trial_id: str
    config: dict[str, Any]
    status: str                               # finished | stopped (early) | failed | diverged
    epochs: int                               # epochs completed
    value: float | None                       # the search metric at its last epoch
    curve: list[tuple[int, float]] = field(default_factory=list)   # (epoch, search metric)
    metrics: dict[str, float] = field(default_factory=dict)        # its last reported metrics
    start: float | None = None                # wall-clock seconds (Unix) the trial started
    end: float | None = None                  # ... and reported last
    run_id: str | None = None
    experiment_tag: str = ""                  # Tune's (``3_beta=0.5,...``): the trial's index

    @property
    def name(self) -> str:
        """The trial's child-run name (``search.trial_runs.run_name``)."""
        return run_name(self.trial_id, self.config, self.experiment_tag)

    @property
    def decoder(self) -> str:
        return str(self.config.get("decoder", "-"))


def trial_status(*, error: str | None, epochs: int, planned_epochs: int) -> str:
    """finished (ran its planned epochs), stopped (ended well, earlier: a scheduler's decision),
    failed, or diverged (failed with :class:`trainables.divergence.DivergenceError`)."""
    if error:
        return DIVERGED if "DivergenceError" in error else FAILED
    return FINISHED if epochs >= planned_epochs else STOPPED


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def ranked(records: Iterable[TrialRecord]) -> list[TrialRecord]:
    """The trials that ended well (finished or stopped) with a value, best (lowest) first. A
    trial stopped early is ranked too: its value is the one the search compared."""
    ok = [r for r in records if r.status in (FINISHED, STOPPED) and r.value is not None]
    return sorted(ok, key=lambda r: r.value)  # type: ignore[arg-type, return-value]


def best_so_far(records: Sequence[TrialRecord]) -> list[tuple[int, float, float | None]]:
    """(trial count, best value so far, seconds since the search's first trial started) as the
    trials ended, in the order they ended; trials without a value count but do not improve it."""
    ordered = sorted(records, key=lambda r: (r.end is None, r.end or 0.0))
    starts = [r.start for r in records if r.start is not None]
    t0 = min(starts) if starts else None
    out: list[tuple[int, float, float | None]] = []
    best = math.inf
    for count, record in enumerate(ordered, start=1):
        if record.status in (FINISHED, STOPPED) and record.value is not None:
            best = min(best, record.value)
        if math.isfinite(best):
            elapsed = record.end - t0 if record.end is not None and t0 is not None else None
            out.append((count, best, elapsed))
    return out


def best_per_decoder(records: Iterable[TrialRecord]) -> dict[str, tuple[float, int]]:
    """decoder -> (best value, trials), over the trials that ended well."""
    out: dict[str, tuple[float, int]] = {}
    for record in ranked(records):
        value, count = out.get(record.decoder, (record.value, 0))
        out[record.decoder] = (min(value, record.value), count + 1)  # type: ignore[type-var, arg-type]
    return out


def _distributions(records: Sequence[TrialRecord]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Each sampled key's distribution, from the values the trials took: a number over its range
    (log when it spans a factor of 10 or more and stays positive), a string over its choices. A
    key with a single value cannot matter and is left out."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    keys = sorted({k for r in records for k in r.config})
    for key in keys:
        values = [r.config[key] for r in records if key in r.config]
        if len(values) < len(records) or len({repr(v) for v in values}) < 2:
            continue   # conditional (not in every trial) or constant
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            low, high = min(values), max(values)
            log = low > 0 and high / low >= 10
            if all(isinstance(v, int) for v in values):
                out[key] = optuna.distributions.IntDistribution(int(low), int(high), log=log)
            else:
                out[key] = optuna.distributions.FloatDistribution(float(low), float(high), log=log)
        else:
            out[key] = optuna.distributions.CategoricalDistribution(sorted({str(v) for v in values}))
    return out


def study_of(records: Sequence[TrialRecord]) -> optuna.Study | None:
    """An in-memory Optuna study of the trials that ran their planned epochs (minimised value);
    None when fewer than two did or no parameter varied."""
    done = [r for r in records if r.status == FINISHED and r.value is not None]
    distributions = _distributions(done)
    if len(done) < 2 or not distributions:
        return None
    study = optuna.create_study(direction="minimize")
    for record in done:
        params = {k: (str(record.config[k]) if isinstance(d, optuna.distributions.CategoricalDistribution)
                      else record.config[k]) for k, d in distributions.items()}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, value=record.value))
    return study


def param_importance(records: Sequence[TrialRecord], seed: int = 0) -> dict[str, float]:
    """Parameter -> importance (fANOVA, summing to 1) over the trials that ran their planned
    epochs; empty when there are too few. fANOVA needs only scikit-learn (already a dependency)."""
    study = study_of(records)
    if study is None:
        return {}
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
    return dict(optuna.importance.get_param_importances(study, evaluator=evaluator))


# --- the parent run's description ----------------------------------------------------------------

def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def describe(records: Sequence[TrialRecord], *, metric: str, best_metrics: Mapping[str, float],
             experiment_id: str, stopped_by: str, plots: Mapping[str, str], top: int = 5) -> str:
    """The parent run's markdown description (``mlflow.note.content``)."""
    order = ranked(records)
    counts = {s: sum(1 for r in records if r.status == s) for s in (FINISHED, STOPPED, FAILED, DIVERGED)}
    tally = (f"**{len(records)} trials**: {counts[FINISHED]} ran to the end, {counts[STOPPED]} stopped early "
             f"(by {stopped_by}), {counts[FAILED] + counts[DIVERGED]} failed (of which {counts[DIVERGED]} diverged). "
             f"Search metric: `{metric}` (lower is better).")
    if not order:
        lines = [tally, "", "No trial ended well: see the failed child runs' `vaesearch.error` tags."]
    else:
        # The UI shows the first lines of a description: the winner first, then the tally.
        best = order[0]
        link = f"[{best.name}](#/experiments/{experiment_id}/runs/{best.run_id})" if best.run_id else f"`{best.name}`"
        shown = {k: v for k, v in sorted(best_metrics.items()) if k.startswith(("val/", "test/"))}
        headline = ", ".join(f"`{k}` {_fmt(shown[k])}" for k in (metric, "test/nll") if k in shown)
        lines = [f"**Best trial: {link}**" + (f": {headline}" if headline else ""), "", tally,
                 "", "### Best trial's config", "(its child run is tagged `vaesearch.best = true`)", "",
                 "| setting | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in sorted(best.config.items())]
        lines += ["", "| metric | value |", "|---|---|"]
        lines += [f"| `{k}` | {_fmt(v)} |" for k, v in shown.items()]
        lines += ["", f"### Top {min(top, len(order))} by `{metric}`", "",
                  f"| # | trial | `{metric}` | epochs | status |", "|---|---|---|---|---|"]
        for i, record in enumerate(order[:top], start=1):
            lines.append(f"| {i} | {record.name} | {_fmt(record.value)} | {record.epochs} | {record.status} |")
    if plots:
        lines += ["", "### Plots (Artifacts tab)", ""]
        lines += [f"- `{path}`: {what}" for path, what in plots.items()]
    lines += ["", "Runs table: the **Model training** view (`#/experiments/"
              f"{experiment_id}/runs?workflowType=machine_learning`); add the columns `{metric}`, "
              "`epochs_completed`, `decoder`, `beta`, `latent_dim` and the tag `vaesearch.stopped_by`."]
    return "\n".join(lines)
