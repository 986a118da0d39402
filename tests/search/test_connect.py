"""What a run connects to before anything starts: a Ray address nothing listens on is refused
within seconds (before the MLflow parent run exists), and Ray's token file is made private."""
from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from search.connect import RayUnavailableError, check_ray_address, private_token_file
from tests.search.helpers import small_search


def _dead_port() -> int:
    with socket.socket() as s:  # bound, then closed: nothing listens there
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_dead_cluster_address_is_refused_with_the_fix() -> None:
    port = _dead_port()
    with pytest.raises(RayUnavailableError, match=rf"no Ray cluster answers at --address \(or resources.address\) '127.0.0.1:{port}'.*ray start --head"):
        check_ray_address(f"127.0.0.1:{port}", timeout=2)
    with pytest.raises(RayUnavailableError, match="Invalid address format"):
        check_ray_address("not an address")
    check_ray_address("local")  # a Ray of its own: nothing to check


def test_auto_reads_ray_address_and_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _dead_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(RayUnavailableError, match=rf"--address 'auto' \(connecting to .*:{port}; RAY_ADDRESS='127"):
        check_ray_address("auto", "--address", timeout=2)


def test_a_run_pointed_at_a_dead_cluster_exits_2_before_the_parent_run(tmp_path: Path) -> None:
    """As the issue found it: a recorded cluster that died. The run ends within seconds with one
    clear line, exit 2, and MLflow holds no run of it."""
    data = small_search(tmp_path)
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump(data))
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{_dead_port()}"}
    done = subprocess.run([sys.executable, "-m", "search.cli", "run", str(config_file), "--verbose", "0"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert "error: no Ray cluster answers at" in done.stderr and "RAY_ADDRESS" in done.stderr
    assert "Traceback" not in done.stderr
    client = MlflowClient(tracking_uri=data["tracking"]["uri"])
    experiment = client.get_experiment_by_name("itest")
    assert experiment is None or not client.search_runs([experiment.experiment_id])


def test_the_token_file_is_made_private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token = tmp_path / "auth_token"
    token.write_text("0" * 64)
    token.chmod(0o644)  # as Ray writes it
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(token))
    assert private_token_file() == token
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    assert private_token_file() is None  # already private: nothing to do
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert private_token_file() is None


def test_a_driver_joining_a_cluster_ships_the_plugin_modules(tmp_path: Path) -> None:
    """``run --address``: the modules go in Ray's py_modules; not in a submitted job (its working_dir
    has them) and not without plug-ins."""
    from search.config import load_config
    from search.connect import join_runtime_env
    from search.driver import _shipped
    from tests.plugin_files import write_module

    module = write_module(tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"model": {"decoder": {"path": f"{module}:TinyDecoder"}},
                                                     "search": {"space": {"decoder": ["mlp_small", {"path": "yaml:Loader"}]}}}))
    shipped = _shipped(load_config(tmp_path / "c.yaml"))
    assert shipped == [str(tmp_path / f"{module}.py")]                       # yaml is installed: not shipped
    assert join_runtime_env(shipped, {}) == {"py_modules": shipped}
    assert join_runtime_env(shipped, {"RAY_JOB_CONFIG_JSON_ENV_VAR": "{}"}) is None
    assert join_runtime_env([], {}) is None
