"""Test-wide settings and fixtures."""
from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

# The machine (and CI) has 2 cores; Ray trials run beside the test process. One intra-op thread
# per process keeps the small test models from fighting over them.
torch.set_num_threads(1)


@pytest.fixture(scope="module")
def ray_local() -> Iterator[None]:
    """A fresh Ray on this machine for one test module (never a cluster named by RAY_ADDRESS)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()
