"""Container entrypoint of the MLflow tracking server: write the basic-auth config, then exec.

MLflow's basic-auth app (``mlflow server --app-name basic-auth``) reads an ini file named by
``MLFLOW_AUTH_CONFIG_PATH`` (section ``[mlflow]``: ``default_permission``, ``database_uri``,
``admin_username``, ``admin_password``, ``authorization_function``). The admin password must
not live in the image or in the compose file, so this script writes the file at container start
from environment variables, readable by the server's user only, and then replaces itself with
the command it was given (``mlflow server ...``): the server keeps this process's pid.

Environment:
  MLFLOW_AUTH_CONFIG_PATH         where to write the ini (required)
  MLFLOW_AUTH_ADMIN_PASSWORD      the admin password, >= 12 characters (required); removed
                                  from the server's environment once written to the file
  MLFLOW_AUTH_ADMIN_USERNAME      the admin user (default ``admin``)
  MLFLOW_AUTH_DATABASE_URI        the users/permissions store (required), e.g.
                                  ``postgresql://mlflow@postgres:5432/mlflow_auth`` (libpq
                                  takes the password from ``PGPASSWORD``)
  MLFLOW_AUTH_DEFAULT_PERMISSION  what a user may do on resources nobody granted them
                                  (default ``NO_PERMISSIONS``: safe by default)
  MLFLOW_AUTH_CACHE_TTL_SECONDS   cache a verified login this long (default 0: off). Every
                                  request otherwise pays one PBKDF2 hash check (~0.1-0.5 s of CPU),
                                  which makes per-epoch logging of many trials crawl; the price is
                                  that a changed password may keep working this long per worker.

The password is only used the first time the server starts against an empty user store;
later starts keep the stored one (rotate it in the UI or through MLflow's update-password API).
"""
from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path

MIN_PASSWORD_LENGTH = 12  # MLflow's own password policy (mlflow.utils.validation._validate_password)
AUTHORIZATION_FUNCTION = "mlflow.server.auth:authenticate_request_basic_auth"


class AuthConfigError(ValueError):
    """A missing or unusable setting; the message names the variable to fix."""


def _required(env: dict[str, str], name: str) -> str:
    value = env.get(name, "")
    if not value:
        raise AuthConfigError(f"{name} is not set (or empty); set it in .env (see .env.example)")
    return value


def _ini_value(name: str, value: str) -> str:
    if "\n" in value or "\r" in value:
        raise AuthConfigError(f"{name} must be a single line, got a value with a line break")
    # MLflow reads the file with configparser's default (percent) interpolation.
    return value.replace("%", "%%")


def auth_settings(env: dict[str, str]) -> dict[str, str]:
    """The ``[mlflow]`` section of the auth ini, from the environment; raises AuthConfigError."""
    password = _required(env, "MLFLOW_AUTH_ADMIN_PASSWORD")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise AuthConfigError(
            f"MLFLOW_AUTH_ADMIN_PASSWORD must be at least {MIN_PASSWORD_LENGTH} characters, got {len(password)}"
        )
    ttl = env.get("MLFLOW_AUTH_CACHE_TTL_SECONDS") or "0"
    if not ttl.isdigit():
        raise AuthConfigError(f"MLFLOW_AUTH_CACHE_TTL_SECONDS must be a whole number of seconds, got {ttl!r}")
    return {
        "default_permission": env.get("MLFLOW_AUTH_DEFAULT_PERMISSION") or "NO_PERMISSIONS",
        "database_uri": _required(env, "MLFLOW_AUTH_DATABASE_URI"),
        "admin_username": env.get("MLFLOW_AUTH_ADMIN_USERNAME") or "admin",
        "admin_password": password,
        "authorization_function": AUTHORIZATION_FUNCTION,
        "auth_cache_ttl_seconds": ttl,
    }


def write_auth_config(path: Path, settings: dict[str, str]) -> None:
    """Write the ini with mode 0600 (it holds the admin password)."""
    parser = configparser.RawConfigParser()
    parser["mlflow"] = {key: _ini_value(key, value) for key, value in settings.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        parser.write(handle)
    os.chmod(path, 0o600)  # an existing file keeps its mode through O_CREAT


def main(argv: list[str]) -> int:
    if not argv:
        print("usage: mlflow_entrypoint.py COMMAND [ARGS...]  (e.g. mlflow server --app-name basic-auth ...)", file=sys.stderr)
        return 2
    env = dict(os.environ)
    try:
        path = Path(_required(env, "MLFLOW_AUTH_CONFIG_PATH"))
        write_auth_config(path, auth_settings(env))
    except AuthConfigError as exc:
        print(f"mlflow entrypoint: {exc}", file=sys.stderr)
        return 2
    # From here on the file is the only copy the server needs; keep it out of /proc/<pid>/environ.
    env.pop("MLFLOW_AUTH_ADMIN_PASSWORD", None)
    os.execvpe(argv[0], argv, env)
    return 0  # unreachable: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
