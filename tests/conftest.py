"""Test-wide settings."""
from __future__ import annotations

import torch

# The machine (and CI) has 2 cores; Ray trials run beside the test process. One intra-op thread
# per process keeps the small test models from fighting over them.
torch.set_num_threads(1)
