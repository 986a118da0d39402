"""The tracking server goes away mid-search: training goes on, the results wait in the
callback's queue and in Tune's storage, and MLflow ends up complete — in-search when the server
answers again before the end (a real ``mlflow server`` behind a TCP gate that is closed and
opened again), through ``vaesearch sync`` when it is back only after the search (the real server
process stopped, then started again)."""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from search.cli import main
from search.config import parse_config
from search.driver import run_search
from tests.search.helpers import assert_one_child_per_trial, small_search, trial_runs, trial_states
from tests.search.mlflow_server import Gate, MlflowServer

pytestmark = pytest.mark.integration

TRIALS, EPOCHS = 2, 15   # training still going when the server is back after the outage
SYNC_EPOCHS = 6          # an outage until the end: any length will do


def _config(tmp_path: Path, uri: str, epochs: int = EPOCHS) -> dict:
    data = small_search(tmp_path, num_samples=TRIALS, max_concurrent=2)
    data["train"]["epochs"] = epochs
    data["tracking"].update(uri=uri, retry_s=1.0, registered_model=None)
    data["final_eval"]["trials"] = "none"
    return data


def _epochs_logged(uri: str) -> int:
    """Epoch records in MLflow so far (asked of the server directly, not through the gate)."""
    client = MlflowClient(tracking_uri=uri)
    return sum(len(client.get_metric_history(r.info.run_id, "val/nelbo")) for r in trial_runs(uri))


class _OnMessage(logging.Handler):
    """Sets an event when a log message contains ``text``."""

    def __init__(self, text: str, event: threading.Event) -> None:
        super().__init__()
        self.text, self.event = text, event

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


def _when_training(uri: str, action: Callable[[], None]) -> threading.Thread:
    """Run ``action`` in a thread once MLflow holds the search's first epoch."""
    def wait_then_act() -> None:
        deadline = time.monotonic() + 120
        while _epochs_logged(uri) < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        action()

    thread = threading.Thread(target=wait_then_act, daemon=True)
    thread.start()
    return thread


def test_results_queued_during_an_outage_are_written_when_the_server_is_back(
    tmp_path: Path, ray_local, caplog: pytest.LogCaptureFixture
) -> None:
    with MlflowServer(tmp_path) as server, Gate(server.port) as gate:
        data = _config(tmp_path, gate.uri)

        failed = threading.Event()
        watcher = _OnMessage("failed", failed)
        logging.getLogger("search.callback").addHandler(watcher)

        def outage() -> None:
            gate.close()
            failed.wait(timeout=60)   # the callback met the outage and queues (retrying every retry_s = 1)
            time.sleep(1.0)
            gate.open()

        thread = _when_training(server.uri, outage)
        try:
            summary = run_search(parse_config(data), verbose=0)
        finally:
            logging.getLogger("search.callback").removeHandler(watcher)
        thread.join(timeout=60)
        assert "failed" in caplog.text and "answers again" in caplog.text, "the outage did not happen mid-search"
        assert summary.n_errors == 0 and summary.tracking_gap == 0
        states = trial_states(Path(summary.experiment_path))
        assert_one_child_per_trial(server.uri, summary.parent_run_id, set(states), EPOCHS)


def test_sync_fills_what_an_outage_until_the_end_left_out(
    tmp_path: Path, ray_local, capsys: pytest.CaptureFixture[str]
) -> None:
    # The outage is the gate closing for good (as a server gone until after the search): instant,
    # and the server needs no second start to come back.
    with MlflowServer(tmp_path) as server, Gate(server.port) as gate:
        data = _config(tmp_path, gate.uri, SYNC_EPOCHS)
        thread = _when_training(server.uri, gate.close)
        summary = run_search(parse_config(data), verbose=0)
        thread.join(timeout=60)
        # training went on: every trial finished in Tune although MLflow was gone
        states = trial_states(Path(summary.experiment_path))
        assert summary.n_errors == 0 and {s for s, _ in states.values()} == {"TERMINATED"}
        assert summary.tracking_gap > 0 and f"vaesearch sync {summary.experiment_path}" in summary.describe()

        assert main(["sync", summary.experiment_path]) == 2  # still down: a clear error, nothing lost
        assert "cannot reach the MLflow parent run" in capsys.readouterr().err
        gate.open()
        assert main(["sync", summary.experiment_path]) == 0
        assert "epoch record(s) written" in capsys.readouterr().out
        assert_one_child_per_trial(server.uri, summary.parent_run_id, set(states), SYNC_EPOCHS)
        assert main(["sync", summary.experiment_path]) == 0  # idempotent: nothing more to write
        assert "0 epoch record(s) written" in capsys.readouterr().out
