"""search.jobs without a cluster: address and token handling, the job's entrypoint, error messages.

The Jobs API client is exercised against a stub HTTP server on 127.0.0.1 that answers the two
requests a client makes before a job exists (version check, job lookup) and records the headers;
the real cluster is in test_cluster_submit.py.
"""
from __future__ import annotations

import json
import os
import shlex
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
import requests
import yaml
from ray.exceptions import AuthenticationError

from search import jobs
from search.cli import build_parser, main
from search.config import load_config, parse_config
from tests.http_stub import serve

ROOT = Path(__file__).resolve().parents[2]


# --- address ----------------------------------------------------------------------------------------


def test_address_flag_wins_over_the_environment() -> None:
    env = {"RAY_API_SERVER_ADDRESS": "http://api:8265", "RAY_ADDRESS": "http://ray:8265"}
    assert jobs.resolve_address("http://cli:8265/", env) == "http://cli:8265"
    assert jobs.resolve_address(None, env) == "http://api:8265"
    assert jobs.resolve_address(None, {"RAY_ADDRESS": "https://ray:443"}) == "https://ray:443"
    assert jobs.resolve_address(None, {"RAY_ADDRESS": ""}) == jobs.DEFAULT_ADDRESS == "http://127.0.0.1:8265"


@pytest.mark.parametrize("address", ["127.0.0.1:6379", "auto", "ray://head:10001"])
def test_a_non_http_address_is_refused_with_an_example(address: str) -> None:
    with pytest.raises(jobs.JobsError, match=rf"dashboard's URL, e\.g\. http://127\.0\.0\.1:8265, got '{address}'"):
        jobs.resolve_address(None, {"RAY_ADDRESS": address})


# --- token ------------------------------------------------------------------------------------------


def test_token_file_becomes_a_bearer_header(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("  abc123\n")
    assert jobs.auth_headers(str(path)) == {"Authorization": "Bearer abc123"}
    assert jobs.auth_headers(None) == {}


def test_missing_or_empty_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(jobs.JobsError, match="cannot read the token file .*nope.*No such file"):
        jobs.read_token(tmp_path / "nope")
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(jobs.JobsError, match="is empty; it must hold the cluster's token"):
        jobs.read_token(tmp_path / "empty")


# --- entrypoint and config checks --------------------------------------------------------------------


def test_entrypoint_runs_the_uploaded_config_on_the_cluster() -> None:
    assert shlex.split(jobs.build_entrypoint("c.yaml")) == [
        "vaesearch", "run", "c.yaml", "--address", "auto", "--verbose", "1"]
    uri = "sqlite:////data/my runs/mlflow.db;rm -rf x"
    argv = shlex.split(jobs.build_entrypoint("my config.yaml", num_samples=3, tracking_uri=uri, verbose=0))
    assert argv == ["vaesearch", "run", "my config.yaml", "--address", "auto", "--verbose", "0",
                    "--num-samples", "3", "--tracking-uri", uri]


def _config(uri: str, storage: str):
    return parse_config({"tracking": {"uri": uri}, "resources": {"storage_path": storage}})


def test_relative_paths_are_flagged_because_they_land_in_the_jobs_temporary_directory() -> None:
    warnings = jobs.relative_path_warnings(_config("sqlite:///mlflow.db", "./ray_results"), None)
    assert len(warnings) == 2
    assert "tracking uri 'sqlite:///mlflow.db' is relative" in warnings[0]
    assert "resources.storage_path './ray_results' is relative" in warnings[1]
    assert jobs.relative_path_warnings(_config("sqlite:////abs/mlflow.db", "/shared/results"), None) == []
    assert jobs.relative_path_warnings(_config("http://mlflow:5000", "s3://bucket/results"), None) == []
    # --tracking-uri replaces the config's uri, so it is the one checked
    assert jobs.relative_path_warnings(_config("sqlite:///mlflow.db", "/r"), "http://127.0.0.1:5000") == []
    assert jobs.relative_path_warnings(_config("http://x:5000", "/r"), "mlruns")[0].startswith("tracking uri 'mlruns'")


def test_shipped_cluster_config_is_valid_and_cluster_ready() -> None:
    config = load_config(ROOT / "configs" / "cluster.yaml")
    assert jobs.relative_path_warnings(config, None) == []


# --- error translation ----------------------------------------------------------------------------------


def test_missing_token_names_the_flag_and_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in jobs.TOKEN_ENV_VARS:
        monkeypatch.delenv(var, raising=False)
    exc = AuthenticationError("Authentication required: Unauthorized: Missing authentication token")
    message = str(jobs.explain(exc, "http://h:8265"))
    assert message.startswith("the Ray cluster at http://h:8265 requires an authentication token and none was sent:")
    for name in ("--token-file", "RAY_AUTH_MODE=token", "RAY_AUTH_TOKEN=", "RAY_AUTH_TOKEN_PATH="):
        assert name in message
    assert "only when RAY_AUTH_MODE=token" not in message

    monkeypatch.setenv("RAY_AUTH_TOKEN", "abc")   # a token in the env is ignored by Ray without the mode
    assert "Ray sends it only when RAY_AUTH_MODE=token" in str(jobs.explain(exc, "http://h:8265"))


def test_wrong_token_is_told_apart_from_a_missing_one() -> None:
    exc = AuthenticationError("Authentication failed: Forbidden: Invalid authentication token")
    message = str(jobs.explain(exc, "http://h:8265"))
    assert "rejected the authentication token" in message and "--token-file" in message


@pytest.mark.parametrize("exc", [ConnectionError("Failed to connect"), requests.exceptions.ConnectionError("refused")])
def test_nothing_listening_says_how_to_start_or_point_at_the_head(exc: Exception) -> None:
    message = str(jobs.explain(exc, "http://h:8265"))
    assert message.startswith("nothing answers at http://h:8265")
    assert "ray start --head" in message and "--address" in message


def test_unknown_job_only_when_a_job_was_asked_for() -> None:
    exc = RuntimeError("Request failed with status code 404: Job raysubmit_x does not exist.")
    assert str(jobs.explain(exc, "http://h:8265", "raysubmit_x")).startswith(
        "no job 'raysubmit_x' on the Ray cluster at http://h:8265")
    assert "refused the request (HTTP 404): Job raysubmit_x does not exist" in str(jobs.explain(exc, "http://h:8265"))
    assert "failed to handle the request (HTTP 500): boom" in str(
        jobs.explain(RuntimeError("Request failed with status code 500: boom"), "http://h:8265", "j"))
    assert jobs.explain(RuntimeError("something else"), "http://h:8265") is None  # not a Jobs API answer: raised as is


# --- the CLI --------------------------------------------------------------------------------------------


def test_job_commands_are_registered_with_defaults() -> None:
    args = build_parser().parse_args(["submit", "c.yaml"])
    assert (args.config, args.address, args.token_file, args.num_samples, args.no_wait) == ("c.yaml", None, None, None, False)
    args = build_parser().parse_args(["stop", "raysubmit_1", "--address", "http://h:1", "--token-file", "t"])
    assert (args.job_id, args.address, args.token_file) == ("raysubmit_1", "http://h:1", "t")
    assert build_parser().parse_args(["status", "raysubmit_1"]).job_id == "raysubmit_1"


def test_bad_config_never_reaches_the_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    def no_cluster(*_: object) -> None:
        raise AssertionError("connected to the cluster with an invalid config")

    monkeypatch.setattr(jobs, "connect", no_cluster)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"model": {"decoder": "nope"}}))
    assert main(["submit", str(path)]) == 2
    err = capsys.readouterr().err
    assert "model.decoder" in err and "nope" in err
    assert main(["submit", str(tmp_path / "missing.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


class _StubDashboard(BaseHTTPRequestHandler):
    """Answers like a Ray 2.60 dashboard: the version, and 404 for every job."""

    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:  # http.server calls it by this name
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        if self.path == "/api/version":
            body, status = json.dumps({"version": "4", "ray_version": "2.60.0", "ray_commit": "x", "session_name": "s"}), 200
        else:
            body, status = f"Job {self.path.rsplit('/', 1)[-1]} does not exist.", 404
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def stub_dashboard() -> Iterator[str]:
    _StubDashboard.seen = []
    with serve(_StubDashboard) as url:
        yield url


def test_address_flag_and_token_file_reach_the_server(stub_dashboard: str, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    # Ray's client lets RAY_ADDRESS override its address argument; --address must win anyway.
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    assert main(["status", "raysubmit_gone", "--address", stub_dashboard, "--token-file", str(token)]) == 2
    assert "no job 'raysubmit_gone' on the Ray cluster at " + stub_dashboard in capsys.readouterr().err
    assert ("/api/jobs/raysubmit_gone", "Bearer s3cret") in _StubDashboard.seen
    assert {auth for _, auth in _StubDashboard.seen} == {"Bearer s3cret"}
    assert os.environ["RAY_ADDRESS"] == "http://127.0.0.1:1"   # restored after the client was built


def test_nothing_listening_is_exit_2_with_the_fix(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    monkeypatch.setenv("RAY_ADDRESS", "http://127.0.0.1:1")    # the default comes from the environment
    assert main(["stop", "raysubmit_1"]) == 2
    assert "error: nothing answers at http://127.0.0.1:1: start the head node" in capsys.readouterr().err


class _NotReadyDashboard(BaseHTTPRequestHandler):
    """A head right after ``ray start``: the job agent answers 500 "No available agent" twice
    (as Ray 2.60 does), then takes the job."""

    posts: ClassVar[int] = 0

    def do_GET(self) -> None:  # the client's version check
        body = json.dumps({"version": "4", "ray_version": "2.60.0", "ray_commit": "x", "session_name": "s"})
        self.send_response(200)
        self.end_headers()
        self.wfile.write(body.encode())

    def do_POST(self) -> None:
        type(self).posts += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.path.startswith("/api/jobs/") and type(self).posts <= 2:
            status, body = 500, "No available agent to submit job, please try again later."
        else:
            status, body = 200, json.dumps({"job_id": "raysubmit_ok", "submission_id": "raysubmit_ok"})
        self.send_response(status)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_: object) -> None:
        pass


def test_a_job_agent_not_ready_yet_is_retried_then_submitted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _NotReadyDashboard.posts = 0
    config = tmp_path / "demo.yaml"
    config.write_text(yaml.safe_dump({"data": {"name": "digits"}, "search": {"num_samples": 1}}))
    with serve(_NotReadyDashboard) as url:
        client = jobs.connect(url, None)
        job_id = jobs._call(lambda: jobs.submit(client, config, "vaesearch run demo.yaml"), url, pause_s=0.05)
    assert job_id == "raysubmit_ok" and _NotReadyDashboard.posts == 3
    assert "not ready to take jobs yet" in capsys.readouterr().err


@pytest.mark.parametrize("message, expected", [
    ("Request failed with status code 500: No available agent to submit job, please try again later.",
     "is not ready to take jobs (HTTP 500: No available agent"),
    ("Request failed with status code 400: runtime_env is invalid.", "refused the request (HTTP 400): runtime_env is invalid"),
    ("Request failed with status code 502: Bad Gateway.", "failed to handle the request (HTTP 502): Bad Gateway; see"),
])
def test_every_jobs_api_status_gets_a_message(message: str, expected: str) -> None:
    error = jobs.explain(RuntimeError(message), "http://head:8265")
    assert error is not None and expected in str(error), error


def test_a_lasting_not_ready_gives_up_after_the_stated_time() -> None:
    calls = []

    def never_ready() -> None:
        calls.append(1)
        raise RuntimeError("Request failed with status code 503: Service Unavailable.")

    with pytest.raises(jobs.JobsError, match="still after 0.2 s of retries|not ready to take jobs"):
        jobs._call(never_ready, "http://head:8265", retry_s=0.2, pause_s=0.05)
    assert len(calls) >= 2  # retried, then gave up


# --- what submit uploads beside the config ---------------------------------------------------------


def test_job_files_are_the_named_modules_and_relative_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from search.config import ConfigError, load_config
    from tests.plugin_files import write_module

    module = write_module(tmp_path)
    package = tmp_path / "mypkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "decs.py").write_text("")
    (tmp_path / "data").mkdir()
    np.save(tmp_path / "data" / "x.npy", np.zeros((20, 1, 8, 8), np.uint8))
    write_module(tmp_path, stem="unnamed")                                   # beside the config, not named
    config_path = tmp_path / "c.yaml"

    def files(**data: object) -> dict[str, Path]:
        config_path.write_text(yaml.safe_dump({
            "data": data or {"name": "arrays", "path": "data/x.npy"},
            "model": {"decoder": {"path": f"{module}:TinyDecoder"}, "encoder": {"path": "mypkg.sub.decs:Enc"}},
            "search": {"space": {"decoder": ["mlp_small", {"path": "yaml:Loader"}]}},   # installed: not uploaded
        }))
        return jobs.job_files(load_config(config_path))

    assert files() == {f"{module}.py": tmp_path / f"{module}.py", "mypkg": package,
                       "data/x.npy": tmp_path / "data" / "x.npy"}
    assert "data/x.npy" not in files(name="arrays", path=str(tmp_path / "data" / "x.npy"))     # absolute: shared FS
    with pytest.raises(ConfigError, match=r"data.path '../x.npy' is outside the config's directory"):
        files(name="arrays", path="../x.npy")
    with pytest.raises(ConfigError, match=r"data.path 'nope.npz' does not exist beside the config"):
        files(name="arrays", path="nope.npz")
    monkeypatch.setattr(jobs, "UPLOAD_LIMIT_BYTES", 3 * 2**20)
    (tmp_path / "big.npy").write_bytes(b"\0" * (3 * 2**20 + 1))
    with pytest.raises(ConfigError, match=r"the job would upload 3.0 MiB \(.*big.npy 3.0 MiB.*over the limit "
                                          r"of 3 MiB: put the data on a filesystem every node mounts"):
        files(name="arrays", path="big.npy")
