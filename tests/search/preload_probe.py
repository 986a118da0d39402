"""A Ray task that reports which of the preloaded modules its worker had imported before it ran.
Kept apart from the tests so that running it imports nothing of the project."""
from __future__ import annotations

import sys


def imported(names: list[str]) -> list[str]:
    return [name for name in names if name in sys.modules]
