"""The run modes, by role (the experiment record's and the parent run's ``vaesearch.role``).

- ``search``: the single-objective search of ``vaesearch run`` (``search.py``)
- ``bandit-allocation``: ``vaesearch bandit`` with ``bandit.mode: allocation`` (``allocation.py``)
- ``bandit-shared-encoder``: ``vaesearch bandit`` with ``bandit.mode: shared_encoder``
  (``shared_encoder.py``)

Each supplies only what differs (``base.py``); the driver (``search/driver.py``) runs them all.
"""
from __future__ import annotations

from search.config import Config
from search.modes.allocation import AllocationMode
from search.modes.base import Mode
from search.modes.search import SearchMode
from search.modes.shared_encoder import SharedEncoderMode
from trainables.registry import Registry

MODES: Registry[type[Mode]] = Registry(
    "run mode", {cls.role: cls for cls in (SearchMode, AllocationMode, SharedEncoderMode)}
)

_BANDIT_ROLES = {"allocation": AllocationMode.role, "shared_encoder": SharedEncoderMode.role}


def bandit_role(config: Config) -> str:
    """The role of ``vaesearch bandit`` with this config (``bandit.mode``)."""
    return _BANDIT_ROLES[config.bandit.mode]
