"""A rate–distortion search end to end on ``digits``, with real Ray Tune, real Optuna (two
objectives) and a real MLflow SQLite store checked through ``MlflowClient``."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.cli import main
from search.config import parse_config
from search.driver import run_search
from search.modes.rate_distortion import ON_FRONT_TAG, FrontSummary
from search.pareto import hypervolume, non_dominated
from search.tracking import PARENT_TAG, TRIAL_ID_TAG
from tests.search.helpers import small_search

TRIALS = 5


@pytest.mark.integration
def test_front_in_mlflow_is_the_non_dominated_set_of_the_child_runs(
    tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]
) -> None:
    data = small_search(tmp_path, num_samples=TRIALS, objective="rate_distortion", algorithm="nsga2",
                        n_startup_trials=2)
    data["search"]["space"]["beta"] = {"low": 0.1, "high": 8.0, "log": True}   # a wide front
    summary = run_search(parse_config(data), verbose=0)
    assert isinstance(summary, FrontSummary) and summary.ok and summary.n_errors == 0

    uri = data["tracking"]["uri"]
    client = MlflowClient(tracking_uri=uri)
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.tags["vaesearch.role"] == "rate-distortion"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{summary.parent_run_id}'")
    assert len(children) == TRIALS
    points = [(c.data.metrics["val/rate"], c.data.metrics["val/distortion"]) for c in children]
    expected = {children[i].info.run_id for i in non_dominated(points)}

    # front.json: exactly the non-dominated children, with their configs
    front = json.loads(Path(client.download_artifacts(summary.parent_run_id, "front.json", str(tmp_path))).read_text())
    assert {f["mlflow_run_id"] for f in front} == expected == {t.run_id for t in summary.front}
    for f in front:
        child = client.get_run(f["mlflow_run_id"])
        assert f["rate"] == pytest.approx(child.data.metrics["val/rate"])
        assert f["config"]["beta"] == pytest.approx(float(child.data.params["beta"]))
    # the tag on every child, the plots, the hypervolume after each finished trial
    assert {c.info.run_id for c in children if c.data.tags[ON_FRONT_TAG] == "true"} == expected
    assert {c.data.tags[ON_FRONT_TAG] for c in children} <= {"true", "false"}
    artifacts = {a.path for a in client.list_artifacts(summary.parent_run_id)}
    assert {"rd_front.png", "rd_front.html", "front.json"} <= artifacts
    history = client.get_metric_history(summary.parent_run_id, "front/hypervolume")
    assert sorted(m.step for m in history) == list(range(1, TRIALS + 1))
    values = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert values == sorted(values) and values[-1] == pytest.approx(hypervolume(points, summary.reference))
    # one registered version per front point, from its child run, tagged with its rate and distortion
    versions = client.search_model_versions("name = 'itest-vae'")
    assert {v.run_id for v in versions} == expected
    for v in versions:
        child = client.get_run(v.run_id)
        assert float(v.tags["rate"]) == pytest.approx(child.data.metrics["val/rate"], rel=1e-5)
        assert float(v.tags["distortion"]) == pytest.approx(child.data.metrics["val/distortion"], rel=1e-5)
        assert v.tags["trial_id"] == child.data.tags[TRIAL_ID_TAG]
    # what `vaesearch run` prints: one line per front trial and the hypervolume with its reference
    text = summary.describe()
    assert text.count("  rate ") == len(expected) and "hypervolume" in text and "reference point" in text


def test_validate_refuses_early_stopping_on_two_objectives(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import yaml

    data = small_search(tmp_path, objective="rate_distortion", scheduler={"name": "asha"})
    path = tmp_path / "rd.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "scheduler 'asha'" in err and "use scheduler: {name: none}" in err


CONDITIONED_TRIALS, GRID = 2, 4


@pytest.mark.integration
def test_a_beta_conditioned_search_puts_each_trials_curve_in_the_front(tmp_path: Path, ray_local) -> None:
    """Two β-conditioned trials, each a curve of GRID points: the front in front.json, the tags and the
    registered versions are those of the non-dominated points among every child run's last curve."""
    from trainables.beta_conditioning import CURVE_LOSS, curve_points

    data = small_search(tmp_path, num_samples=CONDITIONED_TRIALS, objective="rate_distortion", algorithm="random")
    data["model"]["beta_conditioned"] = {"low": 0.1, "high": 10.0, "grid": GRID}
    del data["search"]["space"]["beta"]
    summary = run_search(parse_config(data), verbose=0)
    assert isinstance(summary, FrontSummary) and summary.ok and summary.n_errors == 0

    client = MlflowClient(tracking_uri=data["tracking"]["uri"])
    children = client.search_runs([client.get_run(summary.parent_run_id).info.experiment_id],
                                  filter_string=f"tags.`{PARENT_TAG}` = '{summary.parent_run_id}'")
    assert len(children) == CONDITIONED_TRIALS
    points = []   # (run id, β, rate, distortion) of every child's last curve
    for child in children:
        curve = curve_points(child.data.metrics)
        assert len(curve) == GRID and CURVE_LOSS in child.data.metrics
        points += [(child.info.run_id, b, r, d) for b, r, d in curve]
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "rd/beta_0.1/rate")]
        assert sorted(steps) == [1, 2]   # the curve, every epoch
    expected = {(points[i][0], points[i][1]) for i in non_dominated([(r, d) for _, _, r, d in points])}

    front = json.loads(Path(client.download_artifacts(summary.parent_run_id, "front.json", str(tmp_path))).read_text())
    assert {(f["mlflow_run_id"], f["beta"]) for f in front} == expected   # β as the metric names round it
    assert all(f["beta_conditioned"] for f in front) and len(front) == len(summary.front)
    on_front_runs = {run_id for run_id, _ in expected}
    assert {c.info.run_id for c in children if c.data.tags[ON_FRONT_TAG] == "true"} == on_front_runs
    assert summary.hypervolume == pytest.approx(hypervolume([(r, d) for _, _, r, d in points], summary.reference))
    html = Path(client.download_artifacts(summary.parent_run_id, "rd_front.html", str(tmp_path))).read_text()
    assert html.count("<circle") == CONDITIONED_TRIALS * GRID and "β=0.1" in html
    # one registered version per front trial, tagged with the β of its front points
    versions = client.search_model_versions("name = 'itest-vae'")
    assert {v.run_id for v in versions} == on_front_runs
    for v in versions:
        assert {float(b) for b in v.tags["front_betas"].split(",")} == {b for run_id, b in expected if run_id == v.run_id}
    assert "of trial" in summary.describe()
