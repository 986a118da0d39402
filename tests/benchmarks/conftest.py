"""Fixtures shared by the benchmark tests: a synthetic learning-curve table with a known best."""
from __future__ import annotations

import pytest

from benchmarks.table import Table
from tests.benchmarks.synthetic import write_table


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Table:
    """``tests/benchmarks/synthetic.py``'s table, written once per test module."""
    return Table.load(write_table(tmp_path_factory.mktemp("table")))
