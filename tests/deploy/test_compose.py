"""docker-compose.yml, checked structurally (no Docker engine needed): safe by default.

Ray token auth on every Ray node, MLflow basic auth on a PostgreSQL backend, nothing published
beyond 127.0.0.1 and only the dashboard / Jobs API and MLflow published at all, the shared
volume for Tune's storage_path at one path on every node, healthchecks and start order, and an
.env.example that names every required variable and holds no real secret.
"""
from __future__ import annotations

import re
from typing import Any

import yaml

from tests.deploy.compose_file import (
    COMPOSE_FILE,
    ENV_EXAMPLE,
    ROOT,
    container_port,
    env_example,
    env_of,
    host_ip,
    looks_like_secret,
    strings,
)

RAY_SERVICES = ("ray-head", "ray-worker")
PUBLISHED = {"ray-head": 8265, "mlflow": 5000}   # the only container ports published, on 127.0.0.1
RAY_INTERNAL_PORTS = {6379, 8076, 10001, 52365}  # GCS, object manager, client server, dashboard agent
REQUIRED_VAR = re.compile(r"\$\{(\w+):\?[^}]*\}")
PLACEHOLDER = ""   # required secrets stay empty in .env.example: compose refuses to start until filled


def test_the_stack_has_its_services(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) == {"ray-head", "ray-worker", "mlflow", "postgres"}


def test_published_ports_are_loopback_only(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            assert host_ip(port) == "127.0.0.1", f"{name} publishes {port!r} beyond 127.0.0.1"
        assert "expose" not in service or name not in ("postgres",)
    published = {name: sorted(container_port(p) for p in s.get("ports", [])) for name, s in services.items()}
    assert published == {"ray-head": [8265], "mlflow": [5000], "ray-worker": [], "postgres": []}


def test_internal_ports_and_postgres_are_not_published(services: dict[str, dict[str, Any]]) -> None:
    assert "ports" not in services["postgres"]
    for name, service in services.items():
        assert not RAY_INTERNAL_PORTS & {container_port(p) for p in service.get("ports", [])}, name
        assert service.get("network_mode") != "host", f"{name} on the host network publishes every port"


def test_workers_scale(services: dict[str, dict[str, Any]]) -> None:
    worker = services["ray-worker"]
    assert "container_name" not in worker and "ports" not in worker and "hostname" not in worker


def test_token_auth_on_every_ray_node(services: dict[str, dict[str, Any]]) -> None:
    for name in RAY_SERVICES:
        env = env_of(services[name])
        assert env.get("RAY_AUTH_MODE") == "token", name
        assert REQUIRED_VAR.fullmatch(env.get("RAY_AUTH_TOKEN", "")), f"{name}: RAY_AUTH_TOKEN must be ${{RAY_AUTH_TOKEN:?...}}"
        assert REQUIRED_VAR.fullmatch(env["RAY_AUTH_TOKEN"]).group(1) == "RAY_AUTH_TOKEN"


def test_workers_join_the_head_and_nothing_binds_wide_outside_the_container(services: dict[str, dict[str, Any]]) -> None:
    head = " ".join(services["ray-head"]["command"])
    worker = " ".join(services["ray-worker"]["command"])
    assert "--head" in head and "--port=6379" in head and "--block" in head
    assert "--address=ray-head:6379" in worker and "--block" in worker


def test_shared_volume_on_every_ray_node_at_the_storage_path(services: dict[str, dict[str, Any]], volumes: dict[str, Any]) -> None:
    mounts = {name: [str(v) for v in services[name]["volumes"]] for name in RAY_SERVICES}
    assert mounts["ray-head"] == mounts["ray-worker"]
    named = [m.split(":") for m in mounts["ray-head"] if m.split(":")[0] in volumes]
    assert named, "no named volume on the Ray nodes"
    source, target = named[0][0], named[0][1]
    storage = yaml.safe_load((ROOT / "configs" / "mnist.yaml").read_text())["resources"]["storage_path"]
    assert storage.startswith(target + "/"), f"configs/mnist.yaml storage_path {storage} is not under the shared mount {target}"
    assert source in volumes


def test_gpu_reservation_on_the_worker(services: dict[str, dict[str, Any]]) -> None:
    devices = services["ray-worker"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert "deploy" not in services["ray-head"]


def test_healthchecks_and_start_order(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name} has no healthcheck"
    order = {"mlflow": "postgres", "ray-head": "mlflow", "ray-worker": "ray-head"}
    for name, dependency in order.items():
        assert services[name]["depends_on"] == {dependency: {"condition": "service_healthy"}}, name
    assert "depends_on" not in services["postgres"]


def test_mlflow_server_uses_basic_auth_postgres_and_served_artifacts(services: dict[str, dict[str, Any]], volumes: dict[str, Any]) -> None:
    mlflow = services["mlflow"]
    command = [str(c) for c in mlflow["command"]]
    assert command[:2] == ["mlflow", "server"]

    def option(name: str) -> str:
        assert name in command, f"mlflow server without {name}"
        return command[command.index(name) + 1]

    assert option("--app-name") == "basic-auth"
    backend = option("--backend-store-uri")
    assert backend.startswith("postgresql://") and "@postgres:" in backend
    assert ":" not in backend.removeprefix("postgresql://").split("@")[0], "no password in the backend URI (PGPASSWORD)"
    assert "--serve-artifacts" in command
    destination = option("--artifacts-destination")
    assert any(str(v).split(":")[:2] == [str(v).split(":")[0], destination] and str(v).split(":")[0] in volumes for v in mlflow["volumes"])
    assert option("--allowed-hosts").strip() not in ("*", "")
    env = env_of(mlflow)
    assert env["MLFLOW_AUTH_CONFIG_PATH"].endswith(".ini")
    assert env["MLFLOW_AUTH_DATABASE_URI"].startswith("postgresql://")
    assert REQUIRED_VAR.fullmatch(env["MLFLOW_AUTH_ADMIN_PASSWORD"])
    assert REQUIRED_VAR.fullmatch(env["MLFLOW_FLASK_SERVER_SECRET_KEY"])
    assert REQUIRED_VAR.fullmatch(env["PGPASSWORD"])
    assert "mlflow_entrypoint.py" in " ".join(mlflow["entrypoint"])


def test_auth_database_is_created_by_the_postgres_init_script(services: dict[str, dict[str, Any]]) -> None:
    auth_db = env_of(services["mlflow"])["MLFLOW_AUTH_DATABASE_URI"].rsplit("/", 1)[1]
    init = next(v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in str(v))
    directory = ROOT / str(init).split(":")[0]
    sql = " ".join(p.read_text() for p in directory.glob("*.sql"))
    assert f"CREATE DATABASE {auth_db}" in sql


def test_postgres_password_comes_from_the_environment(services: dict[str, dict[str, Any]]) -> None:
    env = env_of(services["postgres"])
    assert REQUIRED_VAR.fullmatch(env["POSTGRES_PASSWORD"])
    assert "POSTGRES_HOST_AUTH_METHOD" not in env


def test_env_example_names_every_required_variable_and_no_secret() -> None:
    required = {m for text in strings(yaml.safe_load(COMPOSE_FILE.read_text())) for m in REQUIRED_VAR.findall(text)}
    assert required >= {"RAY_AUTH_TOKEN", "POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_FLASK_SECRET_KEY"}
    example = env_example()
    assert required <= set(example), f".env.example lacks {sorted(required - set(example))}"
    for key, value in example.items():
        assert not looks_like_secret(value), f".env.example: {key} looks like a real secret"
        if key in required:
            assert value == PLACEHOLDER, f".env.example: {key} should be the placeholder {PLACEHOLDER!r}"
    assert "secrets.token_hex(32)" in ENV_EXAMPLE.read_text()


def test_port_parsing() -> None:
    assert host_ip("127.0.0.1:${MLFLOW_PORT:-5000}:5000") == "127.0.0.1" and container_port("127.0.0.1:${P:-1}:5000/tcp") == 5000
    assert host_ip("5000:5000") == "" and host_ip("5000") == "" and host_ip("${BIND:-0.0.0.0}:80:80") == "0.0.0.0"
    assert host_ip({"target": 80, "host_ip": "127.0.0.1"}) == "127.0.0.1" and host_ip({"target": 80}) == ""


def test_secret_detector() -> None:
    assert looks_like_secret("9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08")
    assert not looks_like_secret("change-me") and not looks_like_secret("") and not looks_like_secret("NO_PERMISSIONS")


def test_env_file_stays_out_of_git_and_the_image() -> None:
    assert ".env" in (ROOT / ".gitignore").read_text().split()
    assert ".env" in (ROOT / ".dockerignore").read_text().split()


def test_dockerfile_installs_the_project_as_a_non_root_user() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11", text, re.M)
    assert re.search(r"^ARG TORCH_VARIANT=", text, re.M)
    assert re.search(r"pip install \.", text)
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0"), "the image must run as a non-root user"
    assert "COPY deploy ./deploy" in text and re.search(r"^WORKDIR /app", text, re.M)  # /app/deploy/*.py in the compose file
