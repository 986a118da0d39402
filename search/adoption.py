"""Handing a resuming driver's own objects to the experiment Tune restores.

``Tuner.restore`` unpickles the callbacks and the scheduler a run was started with from
``tuner.pkl``: objects the resuming driver never sees. A class whose pickle goes through
:func:`adopted` is instead unpickled as the instance the resuming driver registered for the same
key (the parent run id) with :func:`adopt`: so that driver holds the very callback and scheduler
Tune calls, and can read them when the run ends (the MLflow callback's backlog, the bandit
scheduler's pulls).
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

T = TypeVar("T")

_ADOPTED: dict[tuple[str, str], Any] = {}


def adopt(kind: str, key: str, obj: Any) -> None:
    """Unpickle the next ``kind`` object saved under ``key`` as ``obj``."""
    _ADOPTED[(kind, key)] = obj


def adopted(kind: str, key: str, rebuild: Callable[[], T]) -> T:
    """The object adopted for (``kind``, ``key``), else a fresh one from ``rebuild()``."""
    found = _ADOPTED.get((kind, key))
    return found if found is not None else rebuild()


def forget(key: str) -> None:
    """Drop everything adopted for ``key`` (the resumed run is over)."""
    for entry in [e for e in _ADOPTED if e[1] == key]:
        del _ADOPTED[entry]
