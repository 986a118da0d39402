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
