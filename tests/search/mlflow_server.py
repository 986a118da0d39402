"""A real ``mlflow server`` process on 127.0.0.1 for the tests: started, stopped and restarted by
its own process group (the server and its workers), never anything else; and a TCP gate in
front of a server, for outages that start and end exactly when a test says."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import requests

START_TIMEOUT_S = 120.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class MlflowServer:
    """``mlflow server`` with a SQLite backend and served artifacts under ``workdir``."""

    def __init__(self, workdir: Path, *, args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 command: Sequence[str] | None = None) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self.log = workdir / "server.log"
        self.env = {k: v for k, v in {**os.environ, **(env or {})}.items()
                    if k not in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI")}
        prefix = list(command) if command is not None else [str(Path(sys.executable).with_name("mlflow"))]
        self.command = [
            *prefix, "server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{workdir / 'mlflow.db'}",
            "--serve-artifacts", "--artifacts-destination", str(workdir / "artifacts"), *args,
        ]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MlflowServer:
        with self.log.open("ab") as out:
            # A new session: the server's pid is its process group, so stop() reaches its workers too.
            self.proc = subprocess.Popen(self.command, env=self.env, cwd=self.workdir, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlflow server exited with {self.proc.returncode}:\n{self.log.read_text()[-4000:]}")
            try:
                if requests.get(f"{self.uri}/health", timeout=5).status_code == 200:
                    return self
            except (requests.ConnectionError, requests.Timeout):  # not listening yet, or busy starting
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError(f"mlflow server not healthy after {START_TIMEOUT_S:.0f} s:\n{self.log.read_text()[-4000:]}")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Gate:
    """A TCP forwarder on 127.0.0.1 in front of a server. ``close()`` makes the server unreachable
    at once, as a network outage would (new connections refused, open ones cut); ``open()``
    listens again on the same port. Unlike stopping and restarting the server, both are instant,
    so a test controls when an outage starts and ends, whatever the machine's load."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = free_port()
        self.uri = f"http://127.0.0.1:{self.port}"
        self._listener: socket.socket | None = None
        self._open_sockets: set[socket.socket] = set()
        self._lock = threading.Lock()

    def open(self) -> Gate:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()
        return self

    def close(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            _close(listener)  # shutdown() wakes the accept() blocked in the gate's thread
        with self._lock:
            sockets, self._open_sockets = self._open_sockets, set()
        for sock in sockets:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:  # closed
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open_sockets |= {client, upstream}
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                _close(sock)
                with self._lock:
                    self._open_sockets.discard(sock)

    def __enter__(self) -> Gate:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
