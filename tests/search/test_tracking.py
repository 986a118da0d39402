"""MLflow tracking store details that need no server: where a new experiment's artifacts go."""
from __future__ import annotations

from pathlib import Path

from mlflow.tracking import MlflowClient

from search.tracking import Tracker, artifact_location


def test_artifacts_of_a_sqlite_store_go_beside_the_database(tmp_path: Path) -> None:
    assert artifact_location(f"sqlite:///{tmp_path}/x/m.db", "my exp") == (tmp_path / "x" / "mlartifacts" / "my_exp").as_uri()
    assert artifact_location("http://127.0.0.1:5000", "e") is None  # the server decides
    assert artifact_location("sqlite://", "e") is None  # in memory: MLflow's default


def test_a_tracker_creates_its_experiment_with_artifacts_under_the_store(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path / "..")  # not tmp_path: MLflow's default would be ./mlruns here
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracker = Tracker(uri, "artifacts-here")
    run = tracker.client.create_run(tracker.experiment_id)
    tracker.client.log_text(run.info.run_id, "hello", "note.txt")
    experiment = MlflowClient(tracking_uri=uri).get_experiment(tracker.experiment_id)
    assert experiment.artifact_location == (tmp_path / "mlartifacts" / "artifacts-here").as_uri()
    assert (tmp_path / "mlartifacts" / "artifacts-here" / run.info.run_id / "artifacts" / "note.txt").read_text() == "hello"
    assert Tracker(uri, "artifacts-here").experiment_id == tracker.experiment_id  # found again, not re-created


def test_a_later_best_does_not_collide_with_the_params_logged_before(tmp_path: Path, caplog) -> None:
    """MLflow params are immutable: a run finished again (``vaesearch resume``) with another best
    keeps the first ``best.<key>`` params and records the current values in tags; the metrics,
    the best run id and the state tag follow the current best."""
    from search.tracking import STATE_TAG

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "best-twice")
    tracker.parent_run_id = tracker.client.create_run(tracker.experiment_id).info.run_id
    tracker.log_best({"decoder": "mlp_small", "beta": 0.5}, {"val/nelbo": 25.67}, "run-a")
    tracker.log_best({"decoder": "mlp_large", "beta": 0.5, "latent_dim": 8}, {"val/nelbo": 25.43}, "run-b")
    tracker.finish_parent("FINISHED")

    run = MlflowClient(tracking_uri=tracker.client.tracking_uri).get_run(tracker.parent_run_id)
    assert run.data.params["best.decoder"] == "mlp_small"           # the first value stays (immutable)
    assert run.data.tags["vaesearch.best.decoder"] == "mlp_large"   # the current best, readable
    assert "vaesearch.best.beta" not in run.data.tags               # unchanged values: no tag
    assert run.data.params["best.latent_dim"] == "8"                # a new key is a param
    assert run.data.metrics["best/val/nelbo"] == 25.43
    assert run.data.tags["vaesearch.best_run_id"] == "run-b"
    assert run.info.status == "FINISHED" and run.data.tags[STATE_TAG] == "finished"
    assert "best.decoder was logged as mlp_small" in caplog.text


def test_the_best_tag_is_on_one_child_and_moves_with_the_best(tmp_path: Path) -> None:
    """A resumed search whose best changed moves ``vaesearch.best`` to the new best child."""
    from search.config import parse_config
    from search.trial_runs import BEST_TAG

    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "best-tag")
    tracker.start_parent(parse_config({}), None, run_name="s", searched=["model.decoder"])
    a, _ = tracker.child_run("t1", "t01 mlp", {"decoder": "mlp"})
    b, _ = tracker.child_run("t2", "t02 deconv", {"decoder": "deconv"})
    tracker.mark_best(a)
    tracker.mark_best(b)
    client = tracker.client
    assert [r for r in (a, b) if client.get_run(r).data.tags.get(BEST_TAG) == "true"] == [b]
    params = client.get_run(tracker.parent_run_id).data.params
    assert "model.decoder" not in params and "model.encoder" in params   # a searched setting's base is left out
    tracker.set_description("**best**: t02")
    assert client.get_run(tracker.parent_run_id).data.tags["mlflow.note.content"] == "**best**: t02"
