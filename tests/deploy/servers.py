"""Real servers for the integration tests, started as this test process's own children.

``mlflow_server`` starts ``mlflow server --app-name basic-auth`` on 127.0.0.1 through the
compose stack's entrypoint (deploy/mlflow_entrypoint.py writes the auth ini, then execs the
server), on tests/search/mlflow_server.py's MlflowServer; ``postgres_server`` runs a throwaway
PostgreSQL from the installed binaries. Each runs in a session of its own, so stopping it signals
its process group: the server and the processes it forked, nothing else.
"""
from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.search.mlflow_server import MlflowServer, free_port

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "deploy" / "mlflow_entrypoint.py"
START_TIMEOUT_S = 90.0


class ServerError(RuntimeError):
    """A server did not come up; the message holds the end of its log."""


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str
    password: str

    def uri(self, database: str) -> str:
        # No password in the URI: libpq reads PGPASSWORD, as in docker-compose.yml.
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"


def stop_group(proc: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
    """Signal the process group led by ``proc`` (started with start_new_session); SIGKILL after ``timeout``."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=timeout)


def _tail(log: Path) -> str:
    return log.read_text(errors="replace")[-4000:] if log.exists() else "(no log)"


@contextmanager
def mlflow_server(workdir: Path, *, backend_uri: str, auth_db_uri: str, admin: str, password: str,
                  extra_env: Mapping[str, str] | None = None) -> Iterator[str]:
    """``mlflow server --app-name basic-auth`` on 127.0.0.1, started as the mlflow service of
    docker-compose.yml starts it (through the entrypoint); yields its URL. Raises ServerError."""
    env = {
        "MLFLOW_AUTH_CONFIG_PATH": str(workdir / "auth" / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_USERNAME": admin,
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
        "MLFLOW_AUTH_DATABASE_URI": auth_db_uri,
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "itest-not-a-secret",
        # as in docker-compose.yml: no GenAI job runner; one PBKDF2 check a minute, not per request
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_AUTH_CACHE_TTL_SECONDS": "60",
        **(extra_env or {}),
    }
    server = MlflowServer(workdir, env=env, command=[sys.executable, str(ENTRYPOINT), str(Path(sys.executable).with_name("mlflow"))])
    # click keeps the last value of an option: this --backend-store-uri replaces the helper's SQLite one
    server.command += ["--app-name", "basic-auth", "--backend-store-uri", backend_uri,
                       "--allowed-hosts", f"127.0.0.1:{server.port},localhost:{server.port}"]
    try:
        server.start()
    except RuntimeError as exc:
        raise ServerError(str(exc)) from None
    try:
        yield server.uri
    finally:
        server.stop()


def postgres_binaries() -> Path | None:
    """The bin directory of an installed PostgreSQL server (Debian layout), if any."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _as_postgres_user() -> list[str]:
    # initdb and postgres refuse to run as root: CI runs as root, so drop to the postgres user.
    if os.geteuid() != 0:
        return []
    if shutil.which("runuser") is None:
        raise ServerError("running as root without runuser: cannot start PostgreSQL as an unprivileged user")
    return ["runuser", "-u", "postgres", "--"]


@contextmanager
def postgres_server(databases: tuple[str, ...], user: str = "mlflow") -> Iterator[Postgres]:
    """A throwaway PostgreSQL on 127.0.0.1 with password (scram) auth and ``databases`` created."""
    bindir = postgres_binaries()
    if bindir is None:
        raise ServerError("no PostgreSQL server installed (/usr/lib/postgresql/*/bin/initdb)")
    prefix = _as_postgres_user()
    # Not under pytest's tmp_path: that is private to root, and the server runs as postgres.
    base = Path(tempfile.mkdtemp(prefix="vaesearch-pg-"))
    password = "itest-pg-" + os.urandom(8).hex()
    (base / "pw").write_text(password)
    if prefix:
        shutil.chown(base, "postgres")
        shutil.chown(base / "pw", "postgres")
    log = base / "postgres.log"
    try:
        subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(base / "data"), "-U", user,
                        "--auth=scram-sha-256", f"--pwfile={base / 'pw'}"], check=True, capture_output=True, timeout=120)
        port = free_port()
        with log.open("wb") as out:
            proc = subprocess.Popen([*prefix, str(bindir / "postgres"), "-D", str(base / "data"), "-h", "127.0.0.1",
                                     "-p", str(port), "-k", str(base)], stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        try:
            server = Postgres(port=port, user=user, password=password)
            env = {**os.environ, "PGPASSWORD": password}
            deadline = time.monotonic() + START_TIMEOUT_S
            while subprocess.run([str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True).returncode:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise ServerError(f"PostgreSQL did not start:\n{_tail(log)}")
                time.sleep(0.2)
            for database in databases:
                subprocess.run([str(bindir / "psql"), "-h", "127.0.0.1", "-p", str(port), "-U", user, "-d", "postgres",
                                "-v", "ON_ERROR_STOP=1", "-c", f"CREATE DATABASE {database}"],
                               check=True, capture_output=True, env=env, timeout=60)
            yield server
        finally:
            stop_group(proc, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
    finally:
        shutil.rmtree(base, ignore_errors=True)
