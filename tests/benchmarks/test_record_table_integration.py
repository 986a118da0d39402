"""Recording a tiny table through real Ray Tune and the real trainable, then resuming it."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.record_table import main
from benchmarks.table import METRICS, Point, Table

pytestmark = pytest.mark.integration

TINY = ["--decoders", "mlp_small", "mlp_large", "--betas", "0.5", "2", "--latents", "4", "--schedules", "constant",
        "--seeds", "0", "--epochs", "2", "--max-train", "200", "--width", "0.0625", "--concurrent", "2"]


def test_records_a_tiny_grid_in_parts_and_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str], ray_local) -> None:
    out = tmp_path / "tiny"
    assert main(["--out", str(out), *TINY, "--part", "1/2"]) == 0
    assert len((out / "part-1of2.jsonl").read_text().splitlines()) == 2
    assert main(["--out", str(out)]) == 0            # resume: the grid comes from meta.json, 2 curves left
    assert "part 1/1: 2 to record" in capsys.readouterr().out
    assert main(["--out", str(out), "--dry-run"]) == 0
    assert "0 to record" in capsys.readouterr().out

    table = Table.load(out)
    assert set(table.curves) == {Point(d, b, 4, "constant") for d in ("mlp_small", "mlp_large") for b in (0.5, 2.0)}
    for (curve,) in table.curves.values():
        assert curve.error is None and curve.epochs == 2
        assert set(curve.metrics) == set(METRICS)
        assert 0 < curve.metrics["val/nelbo"][1] < 800 and curve.metrics["time_this_iter_s"][0] > 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["base"]["data"]["max_train"] == 200 and meta["base"]["model"]["width"] == 0.0625
    assert [s["curves"] for s in meta["sessions"]] == [2, 2]
    assert "--part 1/2" in meta["sessions"][0]["command"]
