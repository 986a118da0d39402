"""Which device a trial trains on."""
from __future__ import annotations

import torch


def pick_device() -> torch.device:
    """CUDA when Ray gave this trial a GPU (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
