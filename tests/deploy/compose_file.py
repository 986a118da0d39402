"""The compose stack's files and small readers of them, shared by the deploy tests."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"


def env_example() -> dict[str, str]:
    """The uncommented KEY=VALUE lines of .env.example."""
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f".env.example: not KEY=VALUE: {line!r}"
            values[key.strip()] = value.strip()
    return values


def looks_like_secret(value: str) -> bool:
    """16+ characters of token alphabet with letters and digits mixed: a generated key, not a placeholder."""
    return bool(re.fullmatch(r"[A-Za-z0-9+/=_\-.]{16,}", value)) and bool(re.search(r"\d", value)) and bool(re.search(r"[A-Za-z]", value))


def with_defaults(text: str) -> str:
    """``${VAR:-default}`` -> ``default`` (what compose uses when .env leaves VAR unset)."""
    return re.sub(r"\$\{\w+:?-([^}]*)\}", r"\1", text)


def host_ip(port: str | dict[str, Any]) -> str:
    if isinstance(port, dict):  # long syntax
        return with_defaults(str(port.get("host_ip", "")))
    parts = with_defaults(str(port)).split(":")
    return parts[0] if len(parts) == 3 else ""  # "HOST_PORT:CONTAINER" or "CONTAINER" bind every interface


def container_port(port: str | dict[str, Any]) -> int:
    if isinstance(port, dict):
        return int(port["target"])
    return int(with_defaults(str(port)).split(":")[-1].split("/")[0])


def strings(node: Any) -> list[str]:
    """Every string of the parsed compose file (keys' values, list items), comments excluded."""
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings(value)]
    if isinstance(node, list):
        return [s for item in node for s in strings(item)]
    return [node] if isinstance(node, str) else []


def env_of(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}
