"""Screenshots of a search's MLflow review, from a real browser (not part of ``make test``).

Starts ``mlflow ui`` on a store a search left (``make run`` leaves ``sqlite:///mlflow.db``), on
127.0.0.1 only, and drives headless Chromium (Debian's ``chromium`` package:
``apt-get install chromium``) to the pages a reviewer opens: the runs table (the "Model training"
view), the parent run (its description), the best trial's run, and the registered model. Saves
one PNG per page and stops the UI.

    python tools/review_screenshots.py --store sqlite:///mlflow.db --out /tmp/review
    python tools/review_screenshots.py --store sqlite:///mlflow.db --experiment vaesearch-quickstart

Look at them: the parent's description names the best trial, the runs table lists the named
child runs, the model page shows the ``champion`` alias.
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

from mlflow.tracking import MlflowClient

ROLE_TAG, BEST_TAG, PARENT_TAG = "vaesearch.role", "vaesearch.best", "mlflow.parentRunId"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pages(store: str, experiment: str | None) -> dict[str, str]:
    """Screenshot name -> the UI route (after ``#``) of the newest search in the store."""
    client = MlflowClient(tracking_uri=store)
    experiments = [client.get_experiment_by_name(experiment)] if experiment else client.search_experiments()
    parents = [run for exp in experiments if exp is not None
               for run in client.search_runs([exp.experiment_id], filter_string=f"tags.`{ROLE_TAG}` = 'search'",
                                             order_by=["attributes.start_time DESC"], max_results=1)]
    if not parents:
        raise SystemExit(f"no search's parent run (tag {ROLE_TAG}=search) in {store}")
    parent = max(parents, key=lambda r: r.info.start_time)
    eid, pid = parent.info.experiment_id, parent.info.run_id
    ml = "workflowType=machine_learning"
    trials = quote(f"tags.`{PARENT_TAG}` = '{pid}'")
    routes = {"runs_table": f"/experiments/{eid}/runs?{ml}",
              "trials_by_nelbo": f"/experiments/{eid}/runs?{ml}&searchFilter={trials}"
                                 f"&orderByKey={quote('metrics.`val/nelbo`')}&orderByAsc=true",
              "parent_run": f"/experiments/{eid}/runs/{pid}?{ml}",
              "parent_artifacts": f"/experiments/{eid}/runs/{pid}/artifacts?{ml}"}
    best = client.search_runs([eid], filter_string=f"tags.`{PARENT_TAG}` = '{pid}' AND tags.`{BEST_TAG}` = 'true'")
    if best:
        routes["best_child"] = f"/experiments/{eid}/runs/{best[0].info.run_id}?{ml}"
        versions = client.search_model_versions(f"run_id = '{best[0].info.run_id}'")
        if versions:
            routes["registered_model"] = f"/models/{versions[0].name}/versions/{versions[0].version}"
    return routes


def wait_for(url: str, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit(f"mlflow ui did not answer at {url} within {timeout:.0f} s")


def screenshot(browser: str, url: str, path: Path, size: str, wait_ms: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                        f"--user-data-dir={profile}", f"--window-size={size}", f"--virtual-time-budget={wait_ms}",
                        f"--screenshot={path}", url], check=True, timeout=600,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="sqlite:///mlflow.db", help="the MLflow tracking URI a search wrote to")
    parser.add_argument("--experiment", default=None, help="experiment name (default: the newest search anywhere)")
    parser.add_argument("--out", default="review_screenshots", help="directory for the PNGs")
    parser.add_argument("--size", default="1800,1500", help="browser window WIDTH,HEIGHT")
    parser.add_argument("--wait-ms", type=int, default=20000, help="virtual time the page gets to render")
    args = parser.parse_args(argv)
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("headless Chromium is needed: apt-get install chromium")
    routes = pages(args.store, args.experiment)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    port = free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    ui = subprocess.Popen([str(mlflow_bin), "ui", "--backend-store-uri", args.store, "--host", "127.0.0.1",
                           "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                          env={**os.environ, "MLFLOW_SERVER_ALLOWED_HOSTS": f"127.0.0.1:{port}"},
                          start_new_session=True)   # its own process group: the server's workers stop with it
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/health")
        for name, route in routes.items():
            path = out / f"{name}.png"
            screenshot(browser, f"{base}/#{route}", path, args.size, args.wait_ms)
            print(f"{path}  <- {base}/#{route}")
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        try:
            ui.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(ui.pid, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
