"""Recording a tiny table through real Ray Tune and the real trainable, then resuming it."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from benchmarks.record_table import main
from benchmarks.table import METRICS, Point, Table

pytestmark = pytest.mark.integration

TINY = ["--decoders", "mlp_small", "mlp_large", "--betas", "0.5", "--lrs", "1e-3", "1e-2", "--latents", "4",
        "--schedules", "constant", "--seeds", "0", "--epochs", "2", "--max-train", "200", "--width", "0.0625",
        "--concurrent", "2", "--binarize", "none", "--likelihood", "gaussian", "--sigma-mode", "learned"]


def test_records_a_tiny_grid_in_parts_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str], ray_local) -> None:
    out = tmp_path / "tiny"
    assert main(["--out", str(out), *TINY, "--part", "1/2"]) == 0
    assert len((out / "part-1of2.jsonl").read_text().splitlines()) == 2
    assert main(["--out", str(out)]) == 0            # resume: the grid comes from meta.json, 2 curves left
    assert "part 1/1: 2 to record" in capsys.readouterr().out
    assert main(["--out", str(out), "--dry-run"]) == 0
    assert "0 to record" in capsys.readouterr().out

    table = Table.load(out)
    assert set(table.curves) == {Point(d, 0.5, 4, "constant", lr) for d in ("mlp_small", "mlp_large") for lr in (1e-3, 1e-2)}
    for (curve,) in table.curves.values():
        assert curve.error is None and curve.epochs == 2
        assert set(curve.metrics) == set(METRICS)
        assert math.isfinite(curve.metrics["val/nelbo"][1]) and curve.metrics["time_this_iter_s"][0] > 0
    # each curve trained at its own lr: same decoder, seed and data, different second epochs
    for d in ("mlp_small", "mlp_large"):
        slow, fast = (table.curves[Point(d, 0.5, 4, "constant", lr)][0] for lr in (1e-3, 1e-2))
        assert slow.metrics["val/nelbo"][1] != fast.metrics["val/nelbo"][1]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["base"]["data"]["max_train"] == 200 and meta["base"]["model"]["width"] == 0.0625
    assert meta["grid"]["lr"] == [1e-3, 1e-2] and "lr" not in meta["settings"] and meta["axes"][-1] == "lr"
    assert meta["base"]["model"]["likelihood"] == "gaussian" and meta["base"]["model"]["sigma_mode"] == "learned"
    assert meta["base"]["data"]["binarize"] == "none"
    assert [s["curves"] for s in meta["sessions"]] == [2, 2]
    assert "--part 1/2" in meta["sessions"][0]["command"]
