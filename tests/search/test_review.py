"""The search's review from synthetic trial records: statuses, best so far, per-decoder best,
parameter importance, the parent's description, and the review figures."""
from __future__ import annotations

import random

import pytest

from search import review_plots
from search.review import (
    DIVERGED,
    FAILED,
    FINISHED,
    STOPPED,
    TrialRecord,
    best_per_decoder,
    best_so_far,
    describe,
    param_importance,
    ranked,
    trial_status,
)


def _record(i: int, value: float | None, status: str = FINISHED, decoder: str = "mlp", beta: float = 1.0,
            epochs: int = 4) -> TrialRecord:
    curve = [(e, (value or 0.0) + 10.0 / e) for e in range(1, epochs + 1)]
    return TrialRecord(trial_id=f"abc_{i:05d}", config={"decoder": decoder, "beta": beta}, status=status,
                       epochs=epochs, value=value, curve=curve, start=100.0 + i, end=110.0 + 2 * i, run_id=f"run{i}")


def _search() -> list[TrialRecord]:
    return [_record(0, 90.0, decoder="mlp", beta=2.0), _record(1, 80.0, decoder="deconv", beta=0.5),
            _record(2, 70.0, STOPPED, decoder="deconv", beta=0.7, epochs=1), _record(3, None, DIVERGED),
            _record(4, 60.0, FAILED), _record(5, 85.0, decoder="mlp", beta=1.5)]


def test_status_says_how_a_trial_ended() -> None:
    assert trial_status(error=None, epochs=4, planned_epochs=4) == FINISHED
    assert trial_status(error=None, epochs=1, planned_epochs=4) == STOPPED
    assert trial_status(error="NonFiniteLossError: nan", epochs=1, planned_epochs=4) == FAILED
    assert trial_status(error="DivergenceError: diverged", epochs=2, planned_epochs=4) == DIVERGED


def test_failed_trials_are_never_ranked_and_best_so_far_only_improves() -> None:
    records = _search()
    assert [r.trial_id for r in ranked(records)] == ["abc_00002", "abc_00001", "abc_00005", "abc_00000"]
    history = best_so_far(records)
    assert [(n, b) for n, b, _ in history] == [(1, 90.0), (2, 80.0), (3, 70.0), (4, 70.0), (5, 70.0), (6, 70.0)]
    assert history[0][2] == pytest.approx(10.0)   # the first trial ended 10 s after the first started
    assert best_per_decoder(records) == {"deconv": (70.0, 2), "mlp": (85.0, 2)}


def test_importance_finds_the_parameter_that_decides_the_value() -> None:
    rng = random.Random(0)
    records = []
    for i in range(24):
        beta, decoder = rng.uniform(0.1, 10.0), rng.choice(["a", "b"])
        records.append(_record(i, 100.0 + 20.0 * beta + rng.gauss(0, 0.01), decoder=decoder, beta=beta))
    importances = param_importance(records)
    assert set(importances) == {"beta", "decoder"}
    assert importances["beta"] > 0.9 > importances["decoder"]
    assert param_importance(records[:1]) == {}   # too few


def test_the_description_names_the_best_trial_its_config_and_the_counts() -> None:
    text = describe(_search(), metric="val/nelbo", best_metrics={"val/nelbo": 70.0, "test/nll": 68.5, "train/loss": 1.0},
                    experiment_id="7", stopped_by="asha", plots={"review/a.png": "what a shows"})
    assert "**6 trials**: 3 ran to the end, 1 stopped early (by asha), 2 failed (of which 1 diverged)" in text
    assert text.startswith("**Best trial: [t02 deconv β=0.7](#/experiments/7/runs/run2)**: `val/nelbo` 70, `test/nll` 68.5")
    assert "| `beta` | 0.7 |" in text and "| `test/nll` | 68.5 |" in text and "train/loss" not in text
    top = text.split("### Top 4")[1]
    assert top.index("t02 deconv") < top.index("t01 deconv") < top.index("t05 mlp") < top.index("t00 mlp")
    assert "| 1 | t02 deconv β=0.7 | 70 | 1 | stopped |" in text
    assert "`review/a.png`: what a shows" in text and "workflowType=machine_learning" in text
    assert "No trial ended well" in describe([_record(0, None, FAILED)], metric="val/nelbo", best_metrics={},
                                              experiment_id="7", stopped_by="asha", plots={})


def test_every_review_figure_draws_from_synthetic_trials() -> None:
    records = _search()
    figures = review_plots.review_figures(records, "val/nelbo", {"beta": 0.8, "decoder": 0.2})
    assert set(figures) == set(review_plots.REVIEW_PLOTS)
    curves = figures["review/learning_curves.png"].axes[0]
    dashed = [line for line in curves.get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 1 and list(dashed[0].get_xdata()) == [1]   # the stopped trial: short, dashed
    bars = figures["review/decoder_best.png"].axes[0].patches
    assert [round(b.get_height(), 3) for b in bars] == [70.0, 85.0]
    importance = figures["review/param_importance.png"].axes[0]
    assert [t.get_text() for t in importance.get_yticklabels()] == ["decoder", "beta"]   # most important on top
    by_count = figures["review/optimisation_history.png"].axes[0]
    assert list(by_count.get_lines()[0].get_ydata()) == [90.0, 80.0, 70.0, 70.0, 70.0, 70.0]
    parallel = figures["review/parallel_coordinates.png"].axes[0]
    assert [t.get_text() for t in parallel.get_xticklabels()] == ["beta", "decoder", "val/nelbo"]
    assert len([line for line in parallel.get_lines() if len(line.get_xdata()) == 3]) == 4   # one per ranked trial
    for figure in figures.values():
        review_plots.plt.close(figure)


def test_figures_of_a_search_without_any_good_trial_still_draw() -> None:
    figures = review_plots.review_figures([_record(0, None, FAILED)], "val/nelbo", {})
    assert len(figures) == len(review_plots.REVIEW_PLOTS)
