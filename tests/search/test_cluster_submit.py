"""``vaesearch submit | status | stop`` against a real two-node Ray cluster with token authentication.

A head node and a worker node, each a ``ray start --block`` process of its own (its own
``--temp-dir``: two nodes on one machine sharing one would share the runtime_env cache, and a node
releasing the uploaded working_dir deletes it from under the job's driver), on 127.0.0.1 with a
test token, never the user's ~/.ray/auth_token (HOME points at an empty directory). The nodes
are ended by their own pid: other Ray instances may run on this machine, so no ``ray stop``.
The CLI runs as a subprocess, as a user would run it. The search submitted trains a plug-in
decoder that exists only in a temp directory on the submitting side, on an .npz beside its config.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from tests.search.helpers import EPOCHS, assert_one_child_per_trial, small_search

pytestmark = pytest.mark.integration

BIN = Path(sys.executable).parent          # the venv's bin: ray, vaesearch
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _clean_env(home: Path) -> dict[str, str]:
    """This process's environment without any Ray address or token, HOME elsewhere, the venv first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    env.update(HOME=str(home), PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PYTHONUNBUFFERED="1")
    return env


@dataclass
class Node:
    name: str
    proc: subprocess.Popen[bytes]
    temp_dir: Path
    log: Path

    def log_tail(self, n: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])

    def stop(self) -> None:
        """SIGTERM to the ``ray start --block`` process (it ends its raylet, GCS, ...), SIGKILL if it hangs."""
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=STOP_TIMEOUT_S)


def _start_node(name: str, args: list[str], temp_dir: Path, env: dict[str, str]) -> Node:
    log = temp_dir.parent / f"{name}.log"
    ports = dict(zip(["--node-manager-port", "--object-manager-port", "--dashboard-agent-grpc-port",
                      "--dashboard-agent-listen-port", "--metrics-export-port", "--runtime-env-agent-port"],
                     _free_ports(6)))
    argv = [str(BIN / "ray"), "start", "--block", *args, "--temp-dir", str(temp_dir), "--disable-usage-stats",
            *[str(x) for kv in ports.items() for x in kv]]
    with log.open("wb") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    return Node(name, proc, temp_dir, log)


@dataclass
class Cluster:
    address: str            # the Jobs API (dashboard) URL
    token_file: Path
    token: str
    head: Node
    worker: Node
    home: Path

    def get(self, path: str, token: str | None = None) -> tuple[int, str]:
        request = urllib.request.Request(self.address + path, headers={"Authorization": f"Bearer {token or self.token}"})
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def vaesearch(self, *args: str, token: bool = True, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        auth = ["--token-file", str(self.token_file)] if token else []
        return subprocess.run([str(BIN / "vaesearch"), *args, "--address", self.address, *auth],
                              env=_clean_env(self.home), capture_output=True, text=True, timeout=timeout, check=False)

    def job_status(self, job_id: str) -> str:
        status, body = self.get(f"/api/jobs/{job_id}")
        assert status == 200, body
        return json.loads(body)["status"]


def _wait_for(what: str, ready: Callable[[], bool], nodes: list[Node], timeout: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        for node in nodes:
            if node.proc.poll() is not None:
                pytest.fail(f"the {node.name} node exited ({node.proc.returncode}) before {what}:\n{node.log_tail()}")
        if time.monotonic() > deadline:
            logs = "\n".join(f"--- {n.name} ---\n{n.log_tail()}" for n in nodes)
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}\n{logs}")
        time.sleep(0.5)


def _alive_nodes(cluster: Cluster) -> int:
    try:
        status, body = cluster.get("/api/v0/nodes")
    except OSError:
        return 0
    return sum(n["state"] == "ALIVE" for n in json.loads(body)["data"]["result"]["result"]) if status == 200 else 0


def _dashboard_up(cluster: Cluster) -> bool:
    try:
        return cluster.get("/api/version")[0] == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="vsc-", dir="/tmp"))   # short: Ray's socket paths have a length limit
    home = root / "home"
    home.mkdir()
    token = secrets.token_hex(32)
    token_file = root / "token"
    token_file.write_text(token)
    token_file.chmod(0o600)
    env = {**_clean_env(home), "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_file)}
    gcs, dashboard, client_server = _free_ports(3)
    nodes: list[Node] = []
    try:
        # One CPU per node: two concurrent trials have to use both nodes.
        nodes.append(_start_node("head", [
            "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--dashboard-host", "127.0.0.1",
            "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client_server), "--num-cpus", "1",
        ], root / "h", env))
        c = Cluster(f"http://127.0.0.1:{dashboard}", token_file, token, nodes[0], nodes[0], home)
        _wait_for("the head's dashboard to answer", lambda: _dashboard_up(c), nodes)
        nodes.append(_start_node("worker", ["--address", f"127.0.0.1:{gcs}", "--num-cpus", "1"], root / "w", env))
        c.worker = nodes[1]
        _wait_for("both nodes to be ALIVE", lambda: _alive_nodes(c) == 2, nodes)
        yield c
    finally:
        for node in reversed(nodes):
            node.stop()
        shutil.rmtree(root, ignore_errors=True)


def _write_config(tmp_path: Path, **search: object) -> Path:
    data = small_search(tmp_path, **search)
    # Every SEARCH_COLUMNS name in the space: the progress table (verbose 1) looks each one up.
    data["search"]["space"]["lr"] = [1e-3, 3e-3]
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _job_id(stdout: str) -> str:
    match = re.search(r"submitted job (raysubmit_\w+) to ", stdout)
    assert match, stdout
    return match.group(1)


def _trial_results(storage: Path) -> list[dict]:
    return [json.loads(p.read_text().splitlines()[-1]) for p in storage.glob("*/*/result.json")]


def _write_plugin_config(tmp_path: Path) -> tuple[Path, str]:
    """A 2-trial search whose decoder is a plug-in that exists only in ``tmp_path/job`` on the
    submitting side, on an .npz beside the config: both travel with the job."""
    import numpy as np
    from sklearn.datasets import load_digits

    from tests.plugin_files import write_module

    job_dir = tmp_path / "job"
    module = write_module(job_dir)                       # only here: the cluster's nodes have no such module
    images = (load_digits().images * (255 / 16)).astype(np.uint8)
    np.savez(job_dir / "digits.npz", train=images[:1500], test=images[1500:])
    data = small_search(tmp_path, num_samples=2, max_concurrent=2)
    data["data"] = {"name": "arrays", "path": "digits.npz"}
    # Each trial sleeps ~10 s in its training steps: the first cannot end (and take the second
    # trial into its worker) before the other node's worker is up.
    tiny = {"path": f"{module}:TinyDecoder", "kwargs": {"hidden": 12, "delay": 0.4}, "name": "tiny"}
    # Every SEARCH_COLUMNS name in the space: the progress table (verbose 1) looks each one up.
    data["search"]["space"].update(decoder=[tiny], lr=[1e-3, 3e-3])
    config = job_dir / "tiny.yaml"
    config.write_text(yaml.safe_dump(data))
    return config, module


def test_submit_runs_the_search_across_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    """One job: a search across both nodes whose decoder is a plug-in that exists only in a temp
    directory on the submitting side, on an .npz beside the config (both travel with the job); the
    plug-in trains on both nodes and MLflow records it by name."""
    config, module = _write_plugin_config(tmp_path)
    run = cluster.vaesearch("submit", str(config), timeout=240)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    job_id = _job_id(run.stdout)
    assert run.stdout.startswith(f"submitted job {job_id}")          # the id comes first, before the logs
    assert f"uploaded with the config: digits.npz, {module}.py" in run.stdout
    # the job's logs were streamed: the entrypoint on the cluster, Tune's table, the run's summary
    assert "vaesearch run tiny.yaml --address auto" in run.stdout
    assert "Connected to Ray cluster" in run.stdout
    assert "=== vaesearch summary ===" in run.stdout and "trials: 2 (0 failed)" in run.stdout
    assert run.stdout.rstrip().endswith(f"job {job_id}: SUCCEEDED - Job finished successfully.")
    assert "warning:" not in run.stderr                                # absolute paths: nothing to warn about

    # MLflow: the parent run and one child per trial, every epoch logged, the plug-in by its name
    results = _trial_results(tmp_path / "ray_results")
    assert len(results) == 2 and {r["config"]["decoder"] for r in results} == {"tiny"}
    parent_run_id = re.search(r"MLflow parent run: (\w+)", run.stdout).group(1)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    assert client.get_run(parent_run_id).info.status == "FINISHED"
    assert_one_child_per_trial(uri, parent_run_id, {r["trial_id"] for r in results}, EPOCHS)
    children = client.search_runs([client.get_run(parent_run_id).info.experiment_id],
                                  filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'")
    assert {c.data.params["decoder"] for c in children} == {"tiny"}
    assert client.get_run(parent_run_id).data.params["best.decoder"] == "tiny"

    # the trials (the plug-in) ran on both nodes: each node's temp dir holds the logs of the workers it ran
    def node_of(pid: int) -> str:
        found = [n.name for n in (cluster.head, cluster.worker) if any(n.temp_dir.rglob(f"worker-*-{pid}.out"))]
        assert len(found) == 1, (pid, found)
        return found[0]

    assert {node_of(r["pid"]) for r in results} == {"head", "worker"}

    status = cluster.vaesearch("status", job_id)
    assert status.returncode == 0, status.stderr
    assert status.stdout.splitlines()[0] == f"{job_id}: SUCCEEDED"


def test_clients_without_the_token_are_refused(cluster: Cluster, tmp_path: Path) -> None:
    config = _write_config(tmp_path)
    jobs_before = cluster.get("/api/jobs/")[1]

    refused = cluster.vaesearch("submit", str(config), token=False)
    assert refused.returncode == 2
    assert f"error: the Ray cluster at {cluster.address} requires an authentication token and none was sent" in refused.stderr
    assert "--token-file" in refused.stderr and "RAY_AUTH_TOKEN_PATH" in refused.stderr

    wrong = tmp_path / "wrong_token"
    wrong.write_text(secrets.token_hex(32))
    rejected = subprocess.run(
        [str(BIN / "vaesearch"), "status", "raysubmit_x", "--address", cluster.address, "--token-file", str(wrong)],
        env=_clean_env(cluster.home), capture_output=True, text=True, timeout=60, check=False)
    assert rejected.returncode == 2 and "rejected the authentication token" in rejected.stderr

    assert cluster.get("/api/jobs/")[1] == jobs_before                 # nothing was submitted
    assert cluster.get("/api/jobs/", token="not-the-token")[0] == 403    # the cluster really checks

    unknown = cluster.vaesearch("status", "raysubmit_doesnotexist")
    assert unknown.returncode == 2
    assert f"no job 'raysubmit_doesnotexist' on the Ray cluster at {cluster.address}" in unknown.stderr


def test_stop_a_running_job(cluster: Cluster, tmp_path: Path) -> None:
    config = _write_config(tmp_path, num_samples=50, max_concurrent=1)
    submitted = cluster.vaesearch("submit", str(config), "--no-wait")
    assert submitted.returncode == 0, submitted.stderr
    job_id = _job_id(submitted.stdout)
    assert f"vaesearch stop {job_id}" in submitted.stdout

    _wait_for("the job to be RUNNING", lambda: cluster.job_status(job_id) == "RUNNING", [cluster.head], timeout=60)
    stopped = cluster.vaesearch("stop", job_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() == f"{job_id}: STOPPED"

    status = cluster.vaesearch("status", job_id)
    assert status.returncode == 0 and status.stdout.splitlines()[0] == f"{job_id}: STOPPED"
    again = cluster.vaesearch("stop", job_id)
    assert again.returncode == 0 and again.stdout.strip() == f"{job_id} was not running: STOPPED"


def test_submit_refuses_a_plugin_module_it_cannot_find(cluster: Cluster, tmp_path: Path) -> None:
    data = small_search(tmp_path)
    data["search"]["space"]["decoder"] = ["mlp_small", {"path": "nowhere_module_zz:Decoder"}]
    config = tmp_path / "missing.yaml"
    config.write_text(yaml.safe_dump(data))
    jobs_before = cluster.get("/api/jobs/")[1]
    refused = cluster.vaesearch("submit", str(config))
    assert refused.returncode == 2
    assert "decoder plug-in 'Decoder' (nowhere_module_zz:Decoder): cannot import module 'nowhere_module_zz'" in refused.stderr
    assert "Traceback" not in refused.stderr and cluster.get("/api/jobs/")[1] == jobs_before
