"""Fixtures shared by the trainables tests: the bundled 8×8 digits, loaded once per module; the
plug-in modules of ``tests/plugin_files.py`` written under a test's tmp_path."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugin_files import forget, write_module
from trainables.data import DatasetSplits, load_dataset


@pytest.fixture(scope="module")
def digits() -> DatasetSplits:
    """scikit-learn's 8×8 digits, dynamically binarised, split with seed 0 (no download)."""
    return load_dataset("digits", binarize="dynamic", seed=0)


@pytest.fixture
def plugs(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(module name, the directory it is in): importable through Plugin.search_path only."""
    name = write_module(tmp_path)
    yield name, str(tmp_path)
    forget(tmp_path)
