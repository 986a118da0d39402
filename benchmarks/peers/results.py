"""The results file both harnesses write (one per harness and table), read by the report.

    {"harness": "ours" | "syne-tune", "table": ..., "budget_epochs": ..., "y_star": ..., "y_worst": ...,
     "runs": {"<W>": {"<method>": <benchmarks.peers.summary.summarise record>}}}

Written after every (method, W) so that a long session cut off keeps what it finished.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks.peers.summary import Trace, summarise
from benchmarks.regret import Bounds


def new(harness: str, table: str, budget_epochs: int, bounds: Bounds) -> dict[str, Any]:
    return {"harness": harness, "table": table, "budget_epochs": budget_epochs,
            "y_star": bounds.best, "y_worst": bounds.worst, "runs": {}}


def load_or_new(path: Path, harness: str, table: str, budget_epochs: int, bounds: Bounds) -> dict[str, Any]:
    """An existing file of the same harness, table and budget is extended (one method at a time)."""
    if path.is_file():
        old = json.loads(path.read_text())
        if (old.get("harness"), old.get("table"), old.get("budget_epochs")) == (harness, table, budget_epochs):
            return old
    return new(harness, table, budget_epochs, bounds)


def add(results: dict[str, Any], workers: int, record: dict[str, Any], path: Path) -> None:
    results["runs"].setdefault(str(workers), {})[record["method"]] = record
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)


def add_cell(results: dict[str, Any], workers: int, method: str, traces: list[Trace], trials: list[int],
             budget_epochs: int, wall_seconds: float, path: Path) -> dict[str, Any]:
    """Summarise one (method, W) cell of replays, add it to ``results`` (written to ``path``) and
    print its line; both harnesses (ours, Syne Tune) end each cell here."""
    record = summarise(method, traces, budget_epochs, trials=trials, wall_seconds=round(wall_seconds, 1))
    add(results, workers, record, path)
    e = record["epochs_to_0.05"]
    print(f"W={workers} {method:<16} epochs to 0.05: {e['median']} [{e['q25']}-{e['q75']}] "
          f"({e['reached']}/{len(traces)}), {record['wall_seconds']} s", flush=True)
    return record
