"""deploy/mlflow_entrypoint.py (the auth ini MLflow's basic-auth app reads) and deploy/healthcheck.py."""
from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import ModuleType

import pytest

from tests.deploy.compose_file import ROOT
from tests.http_stub import serve


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "deploy" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = _load("mlflow_entrypoint")
healthcheck = _load("healthcheck")

ENV = {
    "MLFLOW_AUTH_CONFIG_PATH": "unused",
    "MLFLOW_AUTH_ADMIN_PASSWORD": "pa%ss=word;#12",
    "MLFLOW_AUTH_DATABASE_URI": "postgresql://mlflow@postgres:5432/mlflow_auth",
}


def test_written_config_is_what_mlflow_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlflow.server.auth.config import read_auth_config

    path = tmp_path / "auth" / "basic_auth.ini"
    entrypoint.write_auth_config(path, entrypoint.auth_settings(ENV))
    assert path.stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(path))
    for name in ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_AUTH_ADMIN_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    config = read_auth_config()
    assert config.admin_password == ENV["MLFLOW_AUTH_ADMIN_PASSWORD"]  # '%' survives configparser interpolation
    assert config.admin_username == "admin"
    assert config.database_uri == ENV["MLFLOW_AUTH_DATABASE_URI"]
    assert config.default_permission == "NO_PERMISSIONS"
    assert config.authorization_function == entrypoint.AUTHORIZATION_FUNCTION
    assert config.auth_cache_ttl_seconds == 0


def test_rewriting_an_existing_file_keeps_it_private(tmp_path: Path) -> None:
    path = tmp_path / "basic_auth.ini"
    path.write_text("old")
    path.chmod(0o644)
    entrypoint.write_auth_config(path, entrypoint.auth_settings(ENV))
    assert path.stat().st_mode & 0o777 == 0o600 and "old" not in path.read_text()


@pytest.mark.parametrize(("change", "message"), [
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": ""}, "MLFLOW_AUTH_ADMIN_PASSWORD is not set"),
    ({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}, "at least 12 characters, got 5"),
    ({"MLFLOW_AUTH_DATABASE_URI": ""}, "MLFLOW_AUTH_DATABASE_URI is not set"),
])
def test_bad_settings_name_the_variable(change: dict[str, str], message: str) -> None:
    with pytest.raises(entrypoint.AuthConfigError, match=message):
        entrypoint.auth_settings({**ENV, **change})


def test_line_breaks_cannot_inject_settings(tmp_path: Path) -> None:
    settings = entrypoint.auth_settings({**ENV, "MLFLOW_AUTH_ADMIN_PASSWORD": "long-password\ndefault_permission = MANAGE"})
    with pytest.raises(entrypoint.AuthConfigError, match="single line"):
        entrypoint.write_auth_config(tmp_path / "a.ini", settings)


def test_main_refuses_to_start_without_a_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_AUTH_CONFIG_PATH", str(tmp_path / "a.ini"))
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    assert entrypoint.main(["true"]) == 2
    assert "MLFLOW_AUTH_ADMIN_PASSWORD is not set" in capsys.readouterr().err
    assert not (tmp_path / "a.ini").exists()


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        self.send_response(200 if self.path == "/ok" else 503)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_url() -> Iterator[str]:
    with serve(_Handler) as url:
        yield url


def test_healthcheck_exit_codes(http_url: str) -> None:
    assert healthcheck.main([f"{http_url}/ok"]) == 0
    assert healthcheck.main([f"{http_url}/sick"]) == 1
    assert healthcheck.main(["http://127.0.0.1:9/unreachable"]) == 1
    assert healthcheck.main([]) == 2


def test_auth_cache_ttl_is_passed_on_and_checked(tmp_path: Path) -> None:
    assert entrypoint.auth_settings(ENV)["auth_cache_ttl_seconds"] == "0"  # MLflow's default: off
    settings = entrypoint.auth_settings({**ENV, "MLFLOW_AUTH_CACHE_TTL_SECONDS": "60"})
    entrypoint.write_auth_config(tmp_path / "a.ini", settings)
    assert "auth_cache_ttl_seconds = 60" in (tmp_path / "a.ini").read_text()
    with pytest.raises(entrypoint.AuthConfigError, match="whole number of seconds, got '1m'"):
        entrypoint.auth_settings({**ENV, "MLFLOW_AUTH_CACHE_TTL_SECONDS": "1m"})
