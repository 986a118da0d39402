"""Test-wide settings and fixtures."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

# The machine (and CI) has 2 cores; Ray trials run beside the test process. One intra-op thread
# per process keeps the small test models from fighting over them.
torch.set_num_threads(1)


@pytest.fixture
def ray_local() -> Iterator[None]:
    """A Ray on this machine (``address="local"``: never a cluster named by RAY_ADDRESS), shared by
    every test that asks for it: started by the first (Ray takes seconds to start on 2 cores),
    started again after a test that shut it down for a cluster of its own, stopped at the end of
    the session (``pytest_sessionfinish``)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    import sys

    ray = sys.modules.get("ray")  # imported only if a test used it
    if ray is not None and ray.is_initialized():
        ray.shutdown()
