"""Connections a run needs before anything starts: the MLflow tracking store (fail fast, with a
clear error) and Ray (join a cluster, or start Ray on this machine bound to loopback)."""
from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

import ray
from mlflow.exceptions import MlflowException

from search.tracking import Tracker

#: MLflow's HTTP client retries a failing request for about four minutes by default, which would
#: stall Tune's loop; the callback queues and retries instead (tracking.retry_s). Overridable.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class TrackingUnavailableError(RuntimeError):
    """The MLflow tracking server cannot be reached; raised before any trial runs."""


def _check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail fast on an HTTP tracking URI nobody listens on (MLflow's client would retry for minutes)."""
    parsed = urlparse(uri)
    if parsed.scheme not in ("http", "https"):
        return
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    with socket.create_connection((parsed.hostname or "127.0.0.1", port), timeout=timeout):
        pass


def _limit_http_retries() -> None:
    for key, value in HTTP_RETRY_DEFAULTS.items():
        os.environ.setdefault(key, value)


def connect_tracking(uri: str, experiment: str) -> Tracker:
    """The tracker of ``experiment`` (created when new) at ``uri``; fails fast when unreachable."""
    _limit_http_retries()
    try:
        _check_reachable(uri)
        return Tracker(uri, experiment)
    except (MlflowException, OSError, ConnectionError) as exc:
        raise _unavailable(uri, exc, "the MLflow tracking store", "Start the server (mlflow server --host 127.0.0.1 "
                           "...) or pass another --tracking-uri; no trial was started.") from None


def attach_tracking(uri: str, experiment_id: str, parent_run_id: str) -> Tracker:
    """The tracker of an existing run's parent run (resume, sync); fails fast when the
    tracking store is unreachable or does not hold that run."""
    _limit_http_retries()
    try:
        _check_reachable(uri)
        tracker = Tracker.attach(uri, experiment_id, parent_run_id)
        tracker.client.get_run(parent_run_id)
        return tracker
    except (MlflowException, OSError, ConnectionError) as exc:
        raise _unavailable(uri, exc, f"the MLflow parent run {parent_run_id}", "Start the tracking server the search "
                           "used (the run lives there) and try again; nothing was started.") from None


def _unavailable(uri: str, exc: Exception, what: str, fix: str) -> TrackingUnavailableError:
    if any(code in str(exc) for code in (" 401", " 403", "Unauthorized", "UNAUTHENTICATED", "PERMISSION_DENIED")):
        return TrackingUnavailableError(
            f"the MLflow tracking server at {uri!r} refused the credentials ({exc}). Set MLFLOW_TRACKING_USERNAME "
            f"and MLFLOW_TRACKING_PASSWORD to an account of that server. {fix}")
    return TrackingUnavailableError(f"cannot reach {what} at {uri!r}: {exc}. {fix}")


def ensure_ray(address: str | None, verbose: int) -> None:
    """Join the cluster at ``address`` (or start Ray on this machine) unless already connected."""
    # A checkpoint every epoch forces an experiment snapshot each time; with short epochs Tune
    # warns about it on every report. The snapshots are what resume needs, so keep them, quietly.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    if ray.is_initialized():
        return
    if address is None:  # Ray on this machine only: advertise (and bind what Ray lets us bind to) loopback
        ray.init(_node_ip_address="127.0.0.1", include_dashboard=False, log_to_driver=verbose > 1)
    else:
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose > 1)
