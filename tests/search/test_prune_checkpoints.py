"""End-of-run checkpoint pruning: each trial keeps its last checkpoint, and a run that ends twice
(``vaesearch resume`` of a finished or interrupted run) finds the old ones gone without error."""
from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

from ray.tune import Checkpoint

from search.driver import prune_checkpoints


def _trial(root: Path, n: int) -> SimpleNamespace:
    checkpoints = []
    for i in range(n):
        directory = root / f"checkpoint_{i:06d}"
        directory.mkdir(parents=True)
        (directory / "state.pt").write_text(str(i))
        checkpoints.append((Checkpoint.from_directory(str(directory)), {"epoch": i + 1}))
    return SimpleNamespace(checkpoint=checkpoints[-1][0], best_checkpoints=checkpoints)


def test_only_the_last_checkpoint_stays_and_a_second_pass_is_quiet(tmp_path: Path, caplog) -> None:
    results = [_trial(tmp_path / "a", 3), _trial(tmp_path / "b", 1), SimpleNamespace(checkpoint=None, best_checkpoints=None)]
    prune_checkpoints(results)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["checkpoint_000002"]
    assert (tmp_path / "a" / "checkpoint_000002" / "state.pt").read_text() == "2"
    assert [p.name for p in (tmp_path / "b").iterdir()] == ["checkpoint_000000"]
    with caplog.at_level(logging.WARNING):
        prune_checkpoints(results)  # the run ends again after a resume: nothing left to delete
    assert "could not delete" not in caplog.text
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["checkpoint_000002"]
