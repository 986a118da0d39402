"""A real ``mlflow server --app-name basic-auth`` on 127.0.0.1: auth is enforced, and a search
tracked over HTTP with credentials records the parent run, one child run per trial and the model.

The server is started through the compose stack's own entrypoint (deploy/mlflow_entrypoint.py),
which writes the basic-auth ini from the environment and execs ``mlflow server``.
"""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
import requests
import torch
from mlflow.tracking import MlflowClient

from search.config import parse_config
from search.connect import TrackingUnavailableError
from search.driver import run_search
from search.tracking import PARENT_TAG, TRIAL_ID_TAG
from tests.deploy.servers import ServerError, mlflow_server
from tests.search.helpers import EPOCHS, small_search

pytestmark = pytest.mark.integration

ADMIN = "admin"
PASSWORD = "itest-pw-%-0123456789"  # '%' checks the ini escaping (configparser interpolation)
N_TRIALS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if importlib.util.find_spec("flask_wtf") is None:
        pytest.fail("MLflow's basic-auth app needs Flask-WTF: depend on mlflow[auth] in pyproject.toml, then make setup")
    tmp = tmp_path_factory.mktemp("mlflow_server")
    try:
        with mlflow_server(tmp, backend_uri=f"sqlite:///{tmp / 'mlflow.db'}", auth_db_uri=f"sqlite:///{tmp / 'auth.db'}",
                           admin=ADMIN, password=PASSWORD) as uri:
            yield uri
    except ServerError as exc:
        pytest.fail(str(exc))


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)


def test_entrypoint_wrote_a_private_auth_config(server: str, tmp_path_factory: pytest.TempPathFactory) -> None:
    ini = next(tmp_path_factory.getbasetemp().glob("mlflow_server*/auth/basic_auth.ini"))
    assert ini.stat().st_mode & 0o777 == 0o600
    text = ini.read_text()
    assert "default_permission = NO_PERMISSIONS" in text and "auth_cache_ttl_seconds = 60" in text


def test_requests_without_or_with_wrong_credentials_are_refused(server: str) -> None:
    api = f"{server}/api/2.0/mlflow/experiments/search"
    params = {"max_results": 10}
    assert requests.get(api, params=params, timeout=10).status_code == 401
    assert requests.get(api, params=params, auth=(ADMIN, "wrong-password-123"), timeout=10).status_code == 401
    assert requests.get(api, params=params, auth=("nobody", PASSWORD), timeout=10).status_code == 401
    assert requests.get(api, params=params, auth=(ADMIN, PASSWORD), timeout=10).status_code == 200
    # a Host header outside --allowed-hosts is refused (DNS rebinding protection)
    assert requests.get(api, params=params, auth=(ADMIN, PASSWORD), headers={"Host": "evil.example:80"}, timeout=10).status_code in (400, 403)


def test_search_is_tracked_over_http_with_credentials(server: str, ray_local: None, credentials: None, tmp_path: Path) -> None:
    data = small_search(tmp_path, algorithm="random", num_samples=N_TRIALS,
                        space={"beta": {"low": 0.5, "high": 2.0, "log": True}, "decoder": ["mlp_small"]})
    data["final_eval"] = {"test_nll_k": 10, "chunk_size": 10, "max_examples": 20}
    data["tracking"] = {"uri": server, "experiment": "httptest", "registered_model": "httptest-vae"}
    summary = run_search(parse_config(data), verbose=0)
    assert summary.tracking_uri == server
    assert summary.n_trials == N_TRIALS and summary.n_errors == 0

    client = MlflowClient(tracking_uri=server)
    parent = client.get_run(summary.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.params["search.num_samples"] == str(N_TRIALS)
    children = client.search_runs([summary.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{summary.parent_run_id}'")
    assert len(children) == N_TRIALS
    assert len({c.data.tags[TRIAL_ID_TAG] for c in children}) == N_TRIALS
    for child in children:
        assert child.info.status == "FINISHED"
        steps = [m.step for m in client.get_metric_history(child.info.run_id, "val/nelbo")]
        assert sorted(steps) == list(range(1, EPOCHS + 1))
        # artifacts went through the server's artifact proxy (--serve-artifacts)
        images = {a.path for a in client.list_artifacts(child.info.run_id, "images")}
        assert {"images/reconstructions.png", "images/samples.png"} <= images
        stepped = sorted(p.split("+")[2] for p in images if p.startswith("images/reconstructions+step+") and p.endswith(".png"))
        assert stepped == [str(e) for e in range(1, EPOCHS + 1)], images   # the step images over HTTP too

    # the best model was logged and registered over HTTP and loads back as a working VAE
    versions = client.search_model_versions("name = 'httptest-vae'")
    assert len(versions) == 1 and versions[0].run_id == summary.best_run_id   # from the best trial's own run
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(server)
    try:
        model = mlflow.pytorch.load_model("models:/httptest-vae@champion")   # by the alias, over HTTP
    finally:
        mlflow.set_tracking_uri(previous)
    assert model.reconstruct(torch.rand(3, 1, 8, 8)).shape == (3, 1, 8, 8)


def test_client_without_credentials_is_refused(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    with pytest.raises(mlflow.exceptions.MlflowException, match="401|nauthorized|credentials"):
        MlflowClient(tracking_uri=server).search_experiments()


def test_search_with_wrong_credentials_fails_before_any_trial(server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "not-the-password")
    data = small_search(tmp_path)
    data["tracking"] = {"uri": server, "experiment": "httptest-denied", "registered_model": None}
    with pytest.raises(TrackingUnavailableError, match="no trial was started") as info:
        run_search(parse_config(data), verbose=0)
    assert "refused the credentials" in str(info.value) and "MLFLOW_TRACKING_PASSWORD" in str(info.value), str(info.value)
    assert not (tmp_path / "ray_results").exists()
