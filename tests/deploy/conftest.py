"""Fixtures shared by the deploy tests: the parsed docker-compose.yml."""
from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.deploy.compose_file import COMPOSE_FILE


@pytest.fixture(scope="module")
def services() -> dict[str, dict[str, Any]]:
    data = yaml.safe_load(COMPOSE_FILE.read_text())
    return data["services"]


@pytest.fixture(scope="module")
def volumes() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())["volumes"]
