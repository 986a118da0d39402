"""Fixtures shared by the trainables tests: the bundled 8×8 digits, loaded once per module."""
from __future__ import annotations

import pytest

from trainables.data import DatasetSplits, load_dataset


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    """scikit-learn's 8×8 digits, dynamically binarised, split with seed 0 (no download)."""
    return load_dataset("digits", binarize="dynamic", seed=0)
