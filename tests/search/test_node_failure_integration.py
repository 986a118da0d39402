"""Worker node lost mid-search: a head and two worker nodes (``ray.cluster_utils.Cluster``), one
worker removed while trials run on it. Its trials restart from their last checkpoint on the other
node (``resources.max_failures``); every trial ends TERMINATED with one MLflow child run each."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

from search.config import parse_config
from search.driver import run_search
from tests.search.helpers import assert_one_child_per_trial, small_search, trial_runs, trial_states

pytestmark = pytest.mark.integration

TRIALS, EPOCHS = 3, 20


@pytest.fixture
def cluster():
    ray.shutdown()  # the local Ray the other tests share (tests/conftest.py starts it again)
    # The head takes no trial: trials run on the two 1-CPU workers, one each.
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster, workers
    ray.shutdown()
    cluster.shutdown()


def _trials_training(uri: str) -> int:
    """Trials running with an epoch in MLflow (the driver logs each at once; Tune's storage lags)."""
    return sum(1 for r in trial_runs(uri) if "val/nelbo" in r.data.metrics and r.info.status == "RUNNING")


def test_lost_node_trials_restart_elsewhere(tmp_path: Path, cluster) -> None:
    cluster_, workers = cluster
    data = small_search(tmp_path, num_samples=TRIALS, max_concurrent=2)
    data["train"]["epochs"] = EPOCHS
    data["resources"]["max_failures"] = 2
    removed = threading.Event()

    def remove_a_worker_mid_search() -> None:
        deadline = time.monotonic() + 180
        while _trials_training(data["tracking"]["uri"]) < 2 and time.monotonic() < deadline:  # both workers busy
            time.sleep(0.1)
        cluster_.remove_node(workers[1])
        removed.set()

    killer = threading.Thread(target=remove_a_worker_mid_search, daemon=True)
    killer.start()
    summary = run_search(parse_config(data), verbose=0)
    killer.join(timeout=60)

    assert removed.is_set(), "the worker was not removed during the search"
    assert summary.n_trials == TRIALS and summary.n_errors == 0, summary.errors
    states = trial_states(Path(summary.experiment_path))
    assert len(states) == TRIALS and {status for status, _ in states.values()} == {"TERMINATED"}
    assert sum(failures for _, failures in states.values()) >= 1, "no trial ran on the removed node"
    assert_one_child_per_trial(summary.tracking_uri, summary.parent_run_id, set(states), EPOCHS)
    assert len([n for n in ray.nodes() if n["Alive"]]) == 2  # the head and the remaining worker
