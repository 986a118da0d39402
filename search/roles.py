"""The run modes' roles (the experiment record's and the parent run's ``vaesearch.role``), in a
module that imports nothing heavy: ``vaesearch validate`` needs them without Ray or MLflow."""
from __future__ import annotations

from search.config import Config

SEARCH = "search"                                  # vaesearch run
RATE_DISTORTION = "rate-distortion"                # vaesearch run, search.objective: rate_distortion
BANDIT_ALLOCATION = "bandit-allocation"            # vaesearch bandit, bandit.mode: allocation
BANDIT_SHARED_ENCODER = "bandit-shared-encoder"    # vaesearch bandit, bandit.mode: shared_encoder

_BANDIT_ROLES = {"allocation": BANDIT_ALLOCATION, "shared_encoder": BANDIT_SHARED_ENCODER}


def bandit_role(config: Config) -> str:
    """The role of ``vaesearch bandit`` with this config (``bandit.mode``)."""
    return _BANDIT_ROLES[config.bandit.mode]


def search_role(config: Config) -> str:
    """The role of ``vaesearch run`` with this config (``search.objective``)."""
    return RATE_DISTORTION if config.search.objective == "rate_distortion" else SEARCH
