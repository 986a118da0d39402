"""Connections a run needs before anything starts: the MLflow tracking store (fail fast, with a
clear error) and Ray (join a cluster, refusing within seconds an address nothing answers at, or start
a Ray of this machine's own)."""
from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping, Sequence
from pathlib import Path
from urllib.parse import urlparse

import ray
from mlflow.exceptions import MlflowException

from search.tracking import Tracker

log = logging.getLogger(__name__)

#: MLflow's HTTP client retries a failing request for about four minutes by default, which would
#: stall Tune's loop; the callback queues and retries instead (tracking.retry_s). Overridable.
HTTP_RETRY_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                       "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


class UnavailableError(RuntimeError):
    """A service a run needs cannot be reached; raised before anything starts."""


class TrackingUnavailableError(UnavailableError):
    """The MLflow tracking server cannot be reached; raised before any trial runs."""


class RayUnavailableError(UnavailableError):
    """No Ray cluster answers at the address given (``--address``, ``resources.address`` or
    ``RAY_ADDRESS``); raised within seconds, where Ray's own client would retry for minutes."""


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


def join_runtime_env(py_modules: Sequence[str], environ: Mapping[str, str]) -> dict[str, list[str]] | None:
    """Ray's job-level ``runtime_env`` for a driver joining a cluster: the plug-in modules as
    ``py_modules`` (Ray uploads them and puts them on every worker's import path). None without
    modules, and inside a job that ``vaesearch submit`` sent: its working_dir already holds them."""
    if not py_modules or environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
        return None
    return {"py_modules": list(py_modules)}


def ensure_ray(address: str | None, verbose: int, py_modules: Sequence[str] = ()) -> None:
    """Join the cluster at ``address`` (or start Ray on this machine) unless already connected.
    ``py_modules``: local plug-in modules the cluster's workers must import (joining a cluster only:
    a Ray of this machine's own imports them from where they are)."""
    # A checkpoint every epoch forces an experiment snapshot each time; with short epochs Tune
    # warns about it on every report. The snapshots are what resume needs, so keep them, quietly.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # One line per failed trial (search/retries.py) instead of Tune's traceback dump.
    os.environ.setdefault("TUNE_PRINT_ALL_TRIAL_ERRORS", "0")
    if not ray.is_initialized():
        _start_or_join(address, verbose, py_modules)
    private_token_file()  # Ray creates it on a first start


def _start_or_join(address: str | None, verbose: int, py_modules: Sequence[str] = ()) -> None:
    source = "--address (or resources.address)"
    if address is None and os.environ.get("RAY_ADDRESS"):  # as Ray itself does: the cluster it names
        address, source = os.environ["RAY_ADDRESS"], "RAY_ADDRESS"
        log.info("joining the Ray cluster at %s (RAY_ADDRESS)", address)
    if address is None:
        # A Ray of its own on this machine ("local": never a cluster some earlier `ray start`
        # left recorded here). Its processes listen on all interfaces (Ray resolves 127.0.0.1 to
        # the node's address and binds gRPC to 0.0.0.0): token authentication is what protects
        # them (docs/cluster.md, "What listens where").
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "disabled":
            log.warning("RAY_AUTH_MODE=disabled: the local Ray's ports (on all interfaces) accept any client")
        ray.init(address="local", include_dashboard=False, log_to_driver=verbose > 1)
    else:
        check_ray_address(address, source)
        ray.init(address=address, include_dashboard=False, log_to_driver=verbose > 1,
                 runtime_env=join_runtime_env(py_modules, os.environ))


def check_ray_address(address: str, source: str = "--address (or resources.address)", timeout: float = 5.0) -> None:
    """Refuse, within ``timeout`` seconds, a cluster address nothing listens on: ``auto`` (the
    cluster a ``ray start`` recorded on this machine) or ``host:port``. ``source`` names where the
    address came from, for the message."""
    from ray._private.services import canonicalize_bootstrap_address

    fix = (f"Start the cluster's head (`ray start --head`) or correct {source}; without --address and "
           "RAY_ADDRESS a run starts a Ray of its own on this machine. Nothing was started.")
    if address.startswith("ray://"):  # Ray Client: host:port of the client server
        bootstrap: str | None = address.removeprefix("ray://")
    else:
        try:
            bootstrap = canonicalize_bootstrap_address(address)
        except (ConnectionError, ValueError) as exc:
            raise RayUnavailableError(f"no Ray cluster found for {source} {address!r}: {exc}. {fix}") from None
    if bootstrap is None:  # "local"
        return
    host, _, port = bootstrap.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except (OSError, ValueError) as exc:
        env = f"; RAY_ADDRESS={os.environ['RAY_ADDRESS']!r}" if address == "auto" and os.environ.get("RAY_ADDRESS") else ""
        raise RayUnavailableError(f"no Ray cluster answers at {source} {address!r} (connecting to {bootstrap}{env}): "
                                  f"{exc}. {fix}") from None


def private_token_file() -> Path | None:
    """Make the Ray token file this machine uses (``RAY_AUTH_TOKEN_PATH``, else
    ``~/.ray/auth_token``) readable by its owner only: Ray writes it with mode 0644. Returns the
    file when it was tightened; a file owned by someone else is left alone, with a warning."""
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH") or Path.home() / ".ray" / "auth_token")
    try:
        info = path.stat()
    except OSError:
        return None
    if not info.st_mode & 0o077:
        return None
    if info.st_uid != os.getuid():
        log.warning("the Ray token file %s is readable by other users (mode %o) and not ours to change",
                    path, info.st_mode & 0o777)
        return None
    path.chmod(0o600)
    log.info("the Ray token file %s is now readable by its owner only (it was mode %o)", path, info.st_mode & 0o777)
    return path
