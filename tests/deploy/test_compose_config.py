"""The compose file as docker-compose itself reads it: ``docker-compose config`` with a .env made
from .env.example accepts it and resolves every published port to 127.0.0.1, and refuses it
while a required secret is missing.

Needs the ``docker-compose`` binary (Debian's package; no Docker engine is used): CI installs it
(.ci/run); elsewhere the tests are skipped with a message saying how to get it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.compose_file import COMPOSE_FILE, ENV_EXAMPLE, ROOT, host_ip

FILLED = "0123456789abcdef0123456789abcdef"  # a stand-in secret for the temporary .env


@pytest.fixture(scope="module")
def docker_compose() -> str:
    binary = shutil.which("docker-compose")
    if binary is None:
        message = ("the docker-compose binary is not installed: apt-get install -y docker-compose "
                   "(.ci/run installs it in CI)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return binary


def _config(binary: str, env_file: Path) -> subprocess.CompletedProcess[str]:
    command = [binary, "--project-directory", str(ROOT), "--env-file", str(env_file), "-f", str(COMPOSE_FILE), "config"]
    # No variable of this shell may leak into the interpolation: only the temporary .env counts.
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL")}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env, cwd=env_file.parent)


def _env_file(tmp_path: Path, drop: str | None = None) -> Path:
    lines = []
    for line in ENV_EXAMPLE.read_text().splitlines():
        if drop and line.startswith(f"{drop}="):
            continue
        key, sep, value = line.partition("=")
        lines.append(f"{key}={FILLED}" if sep and not key.startswith("#") and not value else line)
    path = tmp_path / ".env"
    path.write_text("\n".join(lines) + "\n")
    return path


def _published(resolved: dict[str, Any]) -> dict[str, list[Any]]:
    return {name: service.get("ports", []) for name, service in resolved["services"].items()}


def test_docker_compose_accepts_the_file_and_binds_loopback_only(docker_compose: str, tmp_path: Path) -> None:
    result = _config(docker_compose, _env_file(tmp_path))
    assert result.returncode == 0, f"docker-compose config rejected the file:\n{result.stderr}"
    resolved = yaml.safe_load(result.stdout)
    published = _published(resolved)
    assert sorted(name for name, ports in published.items() if ports) == ["mlflow", "ray-head"]
    for name, ports in published.items():
        for port in ports:
            assert host_ip(port) == "127.0.0.1", f"{name} publishes {port!r} beyond 127.0.0.1"
    assert resolved["services"]["ray-worker"]["environment"]["RAY_AUTH_TOKEN"] == FILLED
    assert resolved["services"]["ray-head"]["environment"]["RAY_AUTH_MODE"] == "token"


def test_the_env_example_as_shipped_is_refused(docker_compose: str, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(ENV_EXAMPLE.read_text())
    result = _config(docker_compose, env_file)
    assert result.returncode != 0 and "in .env" in result.stderr, "compose must not start with the example's empty secrets"


@pytest.mark.parametrize("secret", ["RAY_AUTH_TOKEN", "POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SECRET_KEY"])
def test_docker_compose_refuses_to_start_without_a_secret(docker_compose: str, tmp_path: Path, secret: str) -> None:
    result = _config(docker_compose, _env_file(tmp_path, drop=secret))
    assert result.returncode != 0, f"docker-compose accepted the file without {secret}"
    assert f"set {secret} in .env" in result.stderr
