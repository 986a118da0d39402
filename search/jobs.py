"""``vaesearch submit | status | stop``: launch a search onto a Ray cluster through the Ray Jobs API.

The config is validated here (a bad config never reaches the cluster), copied into a temporary
directory with what it needs from this machine (:func:`job_files`: the plug-in modules it names,
and a data file or folder given by a path relative to the config, up to ``UPLOAD_LIMIT_BYTES``)
and uploaded as the job's ``working_dir``, which Ray unpacks on every node that runs the job's
trials and puts on their import path; the job's entrypoint is ``vaesearch run <config name>
--address auto ...`` on the head node, whose nodes have vaesearch installed. ``submit`` then
follows the job's logs until it ends and exits 0 if it SUCCEEDED.

Token authentication (Ray >= 2.52, on by default for ``ray start --head``): Ray's client sends
the token only when ``RAY_AUTH_MODE=token``, reading it from ``RAY_AUTH_TOKEN``, the file named
by ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``. ``--token-file`` sends the token in that file
as the ``Authorization: Bearer`` header instead, whatever the environment says. Without a token
the Jobs API is remote code execution for anyone who reaches the port (CVE-2023-48022).

Ray imports are deferred to the commands: ``vaesearch validate`` stays fast.
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, TypeVar

from search.config import Config, ConfigError, load_config
from search.runnable import check_runnable

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

T = TypeVar("T")

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ADDRESS_ENV_VARS = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")   # Ray's own order of precedence
TOKEN_ENV_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")
TERMINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
EXIT_SUCCEEDED, EXIT_JOB_FAILED, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 130

_TOKEN_HELP = (
    "pass --token-file PATH (a file holding the cluster's token, e.g. the head node's ~/.ray/auth_token), "
    "or set RAY_AUTH_MODE=token together with RAY_AUTH_TOKEN=<token> or RAY_AUTH_TOKEN_PATH=<file>"
)


class JobsError(RuntimeError):
    """A cluster request failed for a reason the user can fix; the message says how."""


# --- pure helpers ---------------------------------------------------------------------------------


def resolve_address(cli_value: str | None, environ: Mapping[str, str]) -> str:
    """The Jobs API URL: ``--address``, else $RAY_API_SERVER_ADDRESS, else $RAY_ADDRESS, else the default."""
    address = cli_value or next((environ[v] for v in ADDRESS_ENV_VARS if environ.get(v)), DEFAULT_ADDRESS)
    if not address.startswith(("http://", "https://")):
        raise JobsError(
            f"the Ray Jobs API address must be the dashboard's URL, e.g. {DEFAULT_ADDRESS}, got {address!r}"
            " (from --address, RAY_API_SERVER_ADDRESS or RAY_ADDRESS)"
        )
    return address.rstrip("/")


def read_token(path: str | Path) -> str:
    """The token in ``path`` (whitespace stripped); a missing or empty file is a JobsError."""
    path = Path(path).expanduser()
    try:
        token = path.read_text().strip()
    except OSError as exc:
        raise JobsError(f"cannot read the token file {str(path)!r}: {exc.strerror or exc}") from None
    if not token:
        raise JobsError(f"the token file {str(path)!r} is empty; it must hold the cluster's token")
    return token


def auth_headers(token_file: str | None) -> dict[str, str]:
    """``Authorization`` header for ``--token-file``; none otherwise (Ray then applies RAY_AUTH_*)."""
    return {"Authorization": f"Bearer {read_token(token_file)}"} if token_file else {}


def build_entrypoint(
    config_name: str, *, num_samples: int | None = None, tracking_uri: str | None = None, verbose: int = 1,
) -> str:
    """The job's shell command; it runs in the unpacked working_dir, which holds the config alone."""
    argv = ["vaesearch", "run", config_name, "--address", "auto", "--verbose", str(verbose)]
    if num_samples is not None:
        argv += ["--num-samples", str(num_samples)]
    if tracking_uri is not None:
        argv += ["--tracking-uri", tracking_uri]
    return shlex.join(argv)


def relative_path_warnings(config: Config, tracking_uri: str | None) -> list[str]:
    """Paths that would resolve inside the job's temporary working_dir on the cluster (and vanish with it)."""
    warnings = []
    uri = tracking_uri or config.tracking.uri
    relative_sqlite = uri.startswith("sqlite:///") and not uri.startswith("sqlite:////")
    if relative_sqlite or ("://" not in uri and not Path(uri).expanduser().is_absolute()):
        warnings.append(
            f"tracking uri {uri!r} is relative: on the cluster it lands in the job's temporary working directory "
            "and is lost with it; use an http:// MLflow server or an absolute path (sqlite:////abs/path/mlflow.db)"
        )
    storage = config.resources.storage_path
    if "://" not in storage and not Path(storage).expanduser().is_absolute():
        warnings.append(
            f"resources.storage_path {storage!r} is relative: on the cluster it lands in the job's temporary working "
            "directory; use an absolute path that every node sees (or s3://...)"
        )
    return warnings


def explain(exc: BaseException, address: str, job_id: str | None = None) -> JobsError | None:
    """Translate a Jobs API failure into a JobsError saying what to do; None if it is not one we know."""
    from ray.exceptions import AuthenticationError

    if isinstance(exc, AuthenticationError):
        text = getattr(exc, "message", "")
        if text.startswith("Authentication failed") or "403" in text:
            return JobsError(
                f"the Ray cluster at {address} rejected the authentication token (it is not the cluster's token): "
                f"{_TOKEN_HELP}, with the token the head node was started with"
            )
        note = ""
        if any(os.environ.get(v) for v in TOKEN_ENV_VARS[1:]) and os.environ.get("RAY_AUTH_MODE", "").lower() != "token":
            note = " (RAY_AUTH_TOKEN/RAY_AUTH_TOKEN_PATH is set, but Ray sends it only when RAY_AUTH_MODE=token)"
        return JobsError(f"the Ray cluster at {address} requires an authentication token and none was sent{note}: {_TOKEN_HELP}")
    if isinstance(exc, OSError):   # builtin ConnectionError and requests' exceptions alike
        return JobsError(
            f"nothing answers at {address}: start the head node with its dashboard (ray start --head "
            "--dashboard-host 127.0.0.1 --dashboard-port 8265), or point --address (or RAY_API_SERVER_ADDRESS / "
            "RAY_ADDRESS) at its dashboard URL; for a remote head, forward the port: ssh -L 8265:127.0.0.1:8265 HEAD"
        )
    if job_id is not None and isinstance(exc, RuntimeError) and "status code 404" in str(exc):
        return JobsError(f"no job {job_id!r} on the Ray cluster at {address}; list the jobs with: ray job list --address {address}")
    status = http_status(exc)
    if status is not None:
        text = str(exc).split(": ", 1)[-1].strip().rstrip(".") or "(no message)"
        if is_transient(exc):
            return JobsError(f"the Ray cluster at {address} is not ready to take jobs (HTTP {status}: {text}), still "
                             f"after {TRANSIENT_RETRY_S:g} s of retries: the head's dashboard agent may have failed to "
                             "start (see /tmp/ray/session_latest/logs/dashboard_agent.log on the head); restart the "
                             "head (ray stop; ray start --head ...) and submit again")
        if 400 <= status < 500:
            return JobsError(f"the Ray cluster at {address} refused the request (HTTP {status}): {text}")
        return JobsError(f"the Ray cluster at {address} failed to handle the request (HTTP {status}): {text}; see "
                         "/tmp/ray/session_latest/logs/dashboard*.log on the head")
    return None


#: How long a request the Jobs API answers with "not ready" (right after ``ray start``) is retried.
TRANSIENT_RETRY_S = 30.0
_TRANSIENT_TEXTS = ("No available agent", "please try again later")


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a failed Jobs API request (Ray raises ``RuntimeError("Request failed
    with status code N: ...")``), or None."""
    match = re.search(r"status code (\d{3})", str(exc)) if isinstance(exc, RuntimeError) else None
    return int(match.group(1)) if match else None


def is_transient(exc: BaseException) -> bool:
    """A Jobs API answer that a later try can change: the job agent not ready yet, or 503."""
    status = http_status(exc)
    return status is not None and (status == 503 or any(t in str(exc) for t in _TRANSIENT_TEXTS))


#: What ``submit`` uploads beside the config (plug-in modules, relative data paths), in bytes. Ray
#: keeps a working_dir in its object store; larger data belongs on a filesystem the nodes mount.
UPLOAD_LIMIT_BYTES = 100 * 2**20
_USER_DATA_FILES = ("arrays", "image_folder")


def _size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def job_files(config: Config) -> dict[str, Path]:
    """Name in the job's working_dir -> local file or folder, for what the config names on this
    machine: its plug-in modules (and a callable dataset's module), found on the import path or
    beside the config (a module found nowhere is a :class:`ConfigError`), and ``data.path`` when it
    is relative to the config. An absolute ``data.path`` is read on the cluster as it stands (a
    filesystem every node mounts). More than ``UPLOAD_LIMIT_BYTES`` in all is a ConfigError."""
    from search.plugin_modules import local_sources

    base = config.directory or Path.cwd()
    files = local_sources(config)
    data = config.data
    if data.name in _USER_DATA_FILES and data.path and not Path(data.path).expanduser().is_absolute():
        source = (base / data.path).resolve()
        if not source.is_relative_to(base.resolve()):
            raise ConfigError(f"data.path {data.path!r} is outside the config's directory: put it beside the config "
                              "(it is uploaded with the job) or give an absolute path on a filesystem every node mounts")
        if not source.exists():
            raise ConfigError(f"data.path {data.path!r} does not exist beside the config ({base})")
        files[str(source.relative_to(base.resolve()))] = source
    total = sum(_size(p) for p in files.values())
    if total > UPLOAD_LIMIT_BYTES:
        sizes = ", ".join(f"{name} {_size(p) / 2**20:.1f} MiB" for name, p in files.items())
        raise ConfigError(f"the job would upload {total / 2**20:.1f} MiB ({sizes}), over the limit of "
                          f"{UPLOAD_LIMIT_BYTES / 2**20:.0f} MiB: put the data on a filesystem every node mounts and "
                          "give data.path as an absolute path")
    return files


# --- talking to the cluster -----------------------------------------------------------------------


def connect(address: str, token_file: str | None) -> JobSubmissionClient:
    """A Jobs API client for ``address``: ``--address`` wins over RAY_ADDRESS (Ray's client lets the env win)."""
    from ray.job_submission import JobSubmissionClient

    headers = auth_headers(token_file)
    saved = {v: os.environ.pop(v) for v in ADDRESS_ENV_VARS if v in os.environ}
    try:
        return JobSubmissionClient(address, headers=headers or None)
    except Exception as exc:  # noqa: BLE001 - re-raised, translated when we can explain it
        raise explain(exc, address) or exc from None
    finally:
        os.environ.update(saved)


def submit(client: JobSubmissionClient, config_path: Path, entrypoint: str,
           files: Mapping[str, Path] | None = None) -> str:
    """Upload a directory holding the config and ``files`` (:func:`job_files`) and submit the
    entrypoint; returns the job id."""
    with tempfile.TemporaryDirectory(prefix="vaesearch-job-") as tmp:
        shutil.copy2(config_path, Path(tmp) / config_path.name)
        for name, source in (files or {}).items():
            target = Path(tmp) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, target)
        return client.submit_job(
            entrypoint=entrypoint, runtime_env={"working_dir": tmp},
            metadata={"vaesearch_config": config_path.name},
        )


async def _follow(client: JobSubmissionClient, job_id: str, out: TextIO) -> None:
    async for chunk in client.tail_job_logs(job_id):
        out.write(chunk)
        out.flush()


def wait_terminal(client: JobSubmissionClient, job_id: str, timeout_s: float, poll_s: float = 0.5) -> str:
    """Poll until the job reaches a terminal status or ``timeout_s`` passes; returns the last status."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = str(client.get_job_status(job_id).value)
        if status in TERMINAL_STATUSES or time.monotonic() >= deadline:
            return status
        time.sleep(poll_s)


def _describe(client: JobSubmissionClient, job_id: str) -> tuple[str, str]:
    info = client.get_job_info(job_id)
    return str(info.status.value), info.message or ""


# --- commands -------------------------------------------------------------------------------------


def _cmd_submit(args: argparse.Namespace) -> int:
    config_path = Path(args.config)
    config = load_config(config_path)    # ConfigError -> exit 2 in cli.main, before any request
    check_runnable(config)               # the job runs `vaesearch run`: every trial it draws must start
    files = job_files(config)            # plug-in modules and relative data travel with the job
    for warning in relative_path_warnings(config, args.tracking_uri):
        print(f"warning: {warning}", file=sys.stderr)
    entrypoint = build_entrypoint(config_path.name, num_samples=args.num_samples,
                                  tracking_uri=args.tracking_uri, verbose=args.verbose)
    client = connect(args.address, args.token_file)
    job_id = _call(lambda: submit(client, config_path, entrypoint, files), args.address)
    print(f"submitted job {job_id} to {args.address}: {entrypoint}", flush=True)
    if files:
        print(f"uploaded with the config: {', '.join(sorted(files))}", flush=True)
    if args.no_wait:
        print(f"follow it: vaesearch status {job_id} --address {args.address}   stop it: vaesearch stop {job_id} --address {args.address}")
        return EXIT_SUCCEEDED
    try:
        asyncio.run(_follow(client, job_id, sys.stdout))
    except KeyboardInterrupt:
        print(f"\nno longer following the logs; job {job_id} keeps running. "
              f"Stop it with: vaesearch stop {job_id} --address {args.address}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except RuntimeError as exc:   # the log stream broke; the job's status still decides the exit code
        print(f"warning: lost the log stream of job {job_id}: {exc}", file=sys.stderr)
    _call(lambda: wait_terminal(client, job_id, timeout_s=args.timeout), args.address, job_id)
    status, message = _call(lambda: _describe(client, job_id), args.address, job_id)
    first_line = message.splitlines()[0] if message else ""   # the rest repeats the logs just streamed
    print(f"job {job_id}: {status}{' - ' + first_line if first_line else ''}", flush=True)
    return EXIT_SUCCEEDED if status == "SUCCEEDED" else EXIT_JOB_FAILED


def _cmd_status(args: argparse.Namespace) -> int:
    client = connect(args.address, args.token_file)
    status, message = _call(lambda: _describe(client, args.job_id), args.address, args.job_id)
    print(f"{args.job_id}: {status}")
    if message:
        print(message)
    return EXIT_SUCCEEDED


def _cmd_stop(args: argparse.Namespace) -> int:
    client = connect(args.address, args.token_file)
    was_running = _call(lambda: client.stop_job(args.job_id), args.address, args.job_id)
    if not was_running:
        status, _ = _call(lambda: _describe(client, args.job_id), args.address, args.job_id)
        print(f"{args.job_id} was not running: {status}")
        return EXIT_SUCCEEDED
    status = _call(lambda: wait_terminal(client, args.job_id, timeout_s=args.timeout), args.address, args.job_id)
    print(f"{args.job_id}: {status}")
    return EXIT_SUCCEEDED if status in TERMINAL_STATUSES else EXIT_JOB_FAILED


def _call(fn: Callable[[], T], address: str, job_id: str | None = None, *, retry_s: float = TRANSIENT_RETRY_S,
          pause_s: float = 1.0) -> T:
    """Run one cluster request, retrying a transient failure (:func:`is_transient`) for up to
    ``retry_s`` seconds, and translating the failures we can explain into JobsError."""
    deadline, told = time.monotonic() + retry_s, False
    while True:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - re-raised, translated when we can explain it
            if is_transient(exc) and time.monotonic() < deadline:
                if not told:
                    print(f"the Ray cluster at {address} is not ready to take jobs yet ({str(exc)[:200]}); "
                          f"retrying for up to {retry_s:g} s", file=sys.stderr, flush=True)
                    told = True
                time.sleep(pause_s)
                continue
            raise explain(exc, address, job_id) or exc from None


def _run_command(handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Resolve the address, run ``handler``, and turn JobsError into a message and exit code 2."""
    def run(args: argparse.Namespace) -> int:
        try:
            args.address = resolve_address(args.address, os.environ)
            return handler(args)
        except JobsError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
    return run


def _add_cluster_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--address", default=None,
                        help=f"Ray Jobs API (dashboard) URL; default: $RAY_API_SERVER_ADDRESS, $RAY_ADDRESS or {DEFAULT_ADDRESS}")
    parser.add_argument("--token-file", default=None, metavar="PATH",
                        help="file holding the cluster's auth token (default: Ray's RAY_AUTH_MODE=token + "
                             "RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH / ~/.ray/auth_token)")


def add_job_commands(sub: argparse._SubParsersAction) -> None:
    """Register ``submit``, ``status`` and ``stop`` on the ``vaesearch`` sub-command parser."""
    p = sub.add_parser("submit", help="submit a search to a Ray cluster (Ray Jobs API) and follow its logs")
    p.add_argument("config", help="path to the YAML config (validated here, uploaded with the job)")
    _add_cluster_options(p)
    p.add_argument("--num-samples", type=int, default=None, help="override search.num_samples")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI as seen from the head node")
    p.add_argument("--verbose", type=int, default=1, choices=[0, 1, 2], help="verbosity of the search in the job's logs")
    p.add_argument("--no-wait", action="store_true", help="print the job id and return without following the job")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the final status after the logs end")
    p.set_defaults(func=_run_command(_cmd_submit))

    p = sub.add_parser("status", help="print the status of a submitted job")
    p.add_argument("job_id", help="the job id printed by submit (raysubmit_...)")
    _add_cluster_options(p)
    p.set_defaults(func=_run_command(_cmd_status))

    p = sub.add_parser("stop", help="stop a submitted job and wait until it has stopped")
    p.add_argument("job_id", help="the job id printed by submit (raysubmit_...)")
    _add_cluster_options(p)
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the job to stop")
    p.set_defaults(func=_run_command(_cmd_stop))
