"""The run modes, by role (the experiment record's and the parent run's ``vaesearch.role``).

- ``search``: the single-objective search of ``vaesearch run`` (``search.py``)
- ``rate-distortion``: ``vaesearch run`` with ``search.objective: rate_distortion``, the Pareto
  front of rate and distortion (``rate_distortion.py``)
- ``bandit-allocation``: ``vaesearch bandit`` with ``bandit.mode: allocation`` (``allocation.py``)
- ``bandit-shared-encoder``: ``vaesearch bandit`` with ``bandit.mode: shared_encoder``
  (``shared_encoder.py``)

Each supplies only what differs (``base.py``); the driver (``search/driver.py``) runs them all.
"""
from __future__ import annotations

from search.modes.allocation import AllocationMode
from search.modes.base import Mode
from search.modes.rate_distortion import RateDistortionMode
from search.modes.search import SearchMode
from search.modes.shared_encoder import SharedEncoderMode
from search.roles import bandit_role, search_role
from trainables.registry import Registry

__all__ = ["MODES", "bandit_role", "search_role"]

MODES: Registry[type[Mode]] = Registry(
    "run mode", {cls.role: cls for cls in (SearchMode, RateDistortionMode, AllocationMode, SharedEncoderMode)}
)
