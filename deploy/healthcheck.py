"""Container healthcheck: exit 0 when ``URL`` answers HTTP 200 within the timeout, else 1.

The images have no curl; Python's standard library is enough. The URLs used by
docker-compose.yml are the services' unauthenticated health endpoints:
MLflow ``/health``, the Ray dashboard's ``/api/gcs_healthz`` (head) and the dashboard agent's
``/api/local_raylet_healthz`` (every node).
"""
from __future__ import annotations

import sys
import urllib.error
import urllib.request


def healthy(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 (fixed local URLs)
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: healthcheck.py URL", file=sys.stderr)
        return 2
    return 0 if healthy(argv[0]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
