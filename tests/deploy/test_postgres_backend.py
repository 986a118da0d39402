"""The MLflow server as docker-compose.yml runs it, on a real PostgreSQL: backend store and auth
store given as ``postgresql://mlflow@host/db`` URIs without a password (libpq reads PGPASSWORD),
basic auth enforced, runs, metrics, served artifacts and a registered model version written.

Runs where a PostgreSQL server is installed (/usr/lib/postgresql/*/bin/initdb) and the psycopg
driver is importable (SQLAlchemy 2's default for ``postgresql://``; the Docker image installs it).
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from mlflow.tracking import MlflowClient

from tests.deploy.servers import ServerError, mlflow_server, postgres_binaries, postgres_server

pytestmark = pytest.mark.integration

ADMIN, PASSWORD = "admin", "itest-admin-%-password"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if postgres_binaries() is None:
        pytest.skip("no PostgreSQL server installed (/usr/lib/postgresql/*/bin/initdb)")
    if importlib.util.find_spec("psycopg") is None:
        pytest.skip("the psycopg driver is not installed (pip install 'psycopg[binary]'; the Docker image has it)")
    tmp = tmp_path_factory.mktemp("mlflow_pg")
    try:
        with postgres_server(("mlflow", "mlflow_auth")) as pg, mlflow_server(
            tmp, backend_uri=pg.uri("mlflow"), auth_db_uri=pg.uri("mlflow_auth"), admin=ADMIN, password=PASSWORD,
            extra_env={"PGPASSWORD": pg.password},
        ) as uri:
            yield uri
    except ServerError as exc:
        pytest.fail(str(exc))


def test_auth_is_enforced(server: str) -> None:
    api = f"{server}/api/2.0/mlflow/experiments/search"
    assert requests.get(api, params={"max_results": 5}, timeout=10).status_code == 401
    assert requests.get(api, params={"max_results": 5}, auth=(ADMIN, "not-the-password"), timeout=10).status_code == 401
    assert requests.get(api, params={"max_results": 5}, auth=(ADMIN, PASSWORD), timeout=10).status_code == 200


def test_runs_artifacts_and_models_are_stored(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    client = MlflowClient(tracking_uri=server)
    experiment_id = client.create_experiment("pg-itest")
    parent = client.create_run(experiment_id)
    child = client.create_run(experiment_id, tags={"mlflow.parentRunId": parent.info.run_id})
    for step in (1, 2):
        client.log_metric(child.info.run_id, "val/nelbo", 100.0 / step, step=step)
    (tmp_path / "note.txt").write_text("served artifact")
    client.log_artifact(child.info.run_id, str(tmp_path / "note.txt"), "images")
    client.set_terminated(child.info.run_id)
    client.create_registered_model("pg-itest-model")
    version = client.create_model_version("pg-itest-model", f"runs:/{parent.info.run_id}/model", run_id=parent.info.run_id)

    children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    assert [c.info.run_id for c in children] == [child.info.run_id]
    assert [m.value for m in client.get_metric_history(child.info.run_id, "val/nelbo")] == [100.0, 50.0]
    assert [a.path for a in client.list_artifacts(child.info.run_id, "images")] == ["images/note.txt"]
    path = client.download_artifacts(child.info.run_id, "images/note.txt", str(tmp_path / "down"))
    assert Path(path).read_text() == "served artifact"
    assert client.get_model_version("pg-itest-model", version.version).run_id == parent.info.run_id
