"""The parent run's review figures (matplotlib, headless): how the search progressed, how every
trial learned, which decoder and which parameters mattered. Trial records in, figures out
(``search.review.TrialRecord``); what each answers is in docs/mlflow.md."""
from __future__ import annotations

from typing import Mapping, Sequence

from matplotlib.figure import Figure

from search.plots import plt
from search.review import STOPPED, best_per_decoder, best_so_far, ranked
from search.review import TrialRecord as Record

#: artifact file -> the question it answers (the parent run's description lists them).
REVIEW_PLOTS = {
    "review/optimisation_history.png": "best value so far against trials finished and against wall time",
    "review/learning_curves.png": "every trial's curve, coloured by decoder; dashed = stopped early",
    "review/decoder_best.png": "the best value each decoder reached (and its trial count)",
    "review/param_importance.png": "which sampled parameters mattered (fANOVA over trials run to the end)",
    "review/parallel_coordinates.png": "each trial's sampled values, coloured by its value",
}


def _colours(names: Sequence[str]) -> dict[str, object]:
    cmap = plt.get_cmap("tab10")
    return {name: cmap(i % 10) for i, name in enumerate(sorted(set(names)))}


def optimisation_history(records: Sequence[Record], metric: str) -> Figure:
    """Best value so far against the number of trials ended, and against wall time."""
    history = best_so_far(records)
    fig, (by_count, by_time) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    ended = sorted(records, key=lambda r: (r.end is None, r.end or 0.0))
    points = [(i, r.value) for i, r in enumerate(ended, start=1) if r.value is not None and r.status != "failed"]
    if points:
        by_count.scatter(*zip(*points), s=12, color="tab:gray", alpha=0.6, label="trial")
    if history:
        counts, best, elapsed = zip(*history)
        by_count.step(counts, best, where="post", color="tab:blue", label="best so far")
        timed = [(t, b) for t, b in zip(elapsed, best) if t is not None]
        if timed:
            by_time.step(*zip(*timed), where="post", color="tab:blue")
    by_count.set(xlabel="trials ended", ylabel=metric, title="best so far by trial")
    by_time.set(xlabel="wall time (s)", ylabel=metric, title="best so far by time")
    if points or history:
        by_count.legend(fontsize="small")
    for ax in (by_count, by_time):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def learning_curves(records: Sequence[Record], metric: str) -> Figure:
    """Every trial's curve, coloured by decoder; a trial stopped early is dashed and ends in an ×."""
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    colours = _colours([r.decoder for r in records])
    labelled: set[str] = set()
    for record in records:
        if not record.curve:
            continue
        xs, ys = zip(*record.curve)
        stopped = record.status == STOPPED
        label = record.decoder if record.decoder not in labelled else None
        labelled.add(record.decoder)
        ax.plot(xs, ys, color=colours[record.decoder], linestyle="--" if stopped else "-", alpha=0.8, label=label)
        if stopped:
            ax.plot(xs[-1], ys[-1], marker="x", color=colours[record.decoder])
    ax.set(xlabel="epoch", ylabel=metric, title="learning curves (dashed, ×: stopped early)")
    if labelled:
        ax.legend(fontsize="small", title="decoder")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def decoder_best(records: Sequence[Record], metric: str) -> Figure:
    """The best value each decoder reached, with its number of trials."""
    best = best_per_decoder(records)
    names = sorted(best, key=lambda n: best[n][0])
    fig, ax = plt.subplots(figsize=(max(4.0, 1.3 * len(names)), 3.6))
    colours = _colours(list(best))
    ax.bar(range(len(names)), [best[n][0] for n in names], color=[colours[n] for n in names])
    ax.set_xticks(range(len(names)), [f"{n}\n({best[n][1]} trials)" for n in names], fontsize="small")
    values = [best[n][0] for n in names]
    if values:  # a zoomed axis: the differences, not the distance from zero
        span = (max(values) - min(values)) or abs(max(values)) * 0.05 or 1.0
        ax.set_ylim(min(values) - 0.5 * span, max(values) + 0.5 * span)
    ax.set(ylabel=f"best {metric}", title="best per decoder")
    fig.tight_layout()
    return fig


def param_importance(importances: Mapping[str, float]) -> Figure:
    """A horizontal bar per parameter, most important on top."""
    names = sorted(importances, key=importances.get)  # type: ignore[arg-type]
    fig, ax = plt.subplots(figsize=(6.0, 0.5 * len(names) + 1.6))
    ax.barh(range(len(names)), [importances[n] for n in names], color="tab:blue")
    ax.set_yticks(range(len(names)), names)
    ax.set(xlabel="importance (fANOVA)", xlim=(0, 1), title="parameter importance")
    if not names:
        ax.text(0.5, 0.5, "too few trials ran to the end", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def parallel_coordinates(records: Sequence[Record], metric: str) -> Figure:
    """One axis per sampled key (numbers scaled to their range, strings spread over their
    choices) and the metric; one line per trial that ended well, darker = better."""
    done = ranked(records)
    keys = sorted({k for r in done for k in r.config if all(k in o.config for o in done)})
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * (len(keys) + 1)), 4.0))
    columns = []
    for key in keys:
        values = [r.config[key] for r in done]
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
            low, high = min(values), max(values)
            columns.append([(v - low) / (high - low) if high > low else 0.5 for v in values])
            ticks = [f"{low:.3g}", f"{high:.3g}"]
        else:
            choices = sorted({str(v) for v in values})
            step = 1 / max(1, len(choices) - 1)
            columns.append([choices.index(str(v)) * step if len(choices) > 1 else 0.5 for v in values])
            ticks = [choices[0], choices[-1]]
        ax.text(len(columns) - 1, -0.08, ticks[0], ha="center", va="top", fontsize="x-small")
        ax.text(len(columns) - 1, 1.04, ticks[-1], ha="center", va="bottom", fontsize="x-small")
    metric_values = [r.value for r in done]
    if metric_values:
        low, high = min(metric_values), max(metric_values)  # type: ignore[type-var]
        columns.append([(v - low) / (high - low) if high > low else 0.5 for v in metric_values])  # type: ignore[operator]
        cmap = plt.get_cmap("viridis")
        for i in range(len(done)):
            shade = columns[-1][i]
            ax.plot(range(len(columns)), [c[i] for c in columns], color=cmap(shade), alpha=0.8)
        ax.text(len(columns) - 1, -0.08, f"{low:.4g}", ha="center", va="top", fontsize="x-small")
        ax.text(len(columns) - 1, 1.04, f"{high:.4g}", ha="center", va="bottom", fontsize="x-small")
    for x in range(len(columns)):
        ax.axvline(x, color="black", linewidth=0.6)
    ax.set_xticks(range(len(keys) + 1), [*keys, metric], rotation=15)
    ax.set_yticks([])
    ax.set_ylim(-0.15, 1.12)
    ax.set_title("parallel coordinates (trials that ended well; darker = better)")
    fig.tight_layout()
    return fig


def review_figures(records: Sequence[Record], metric: str, importances: Mapping[str, float]) -> dict[str, Figure]:
    """Artifact file -> figure, every review plot."""
    return {
        "review/optimisation_history.png": optimisation_history(records, metric),
        "review/learning_curves.png": learning_curves(records, metric),
        "review/decoder_best.png": decoder_best(records, metric),
        "review/param_importance.png": param_importance(importances),
        "review/parallel_coordinates.png": parallel_coordinates(records, metric),
    }
