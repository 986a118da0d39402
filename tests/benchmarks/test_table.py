"""The learning-curve table format and the recorder's resume / part logic (no Ray)."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest

from benchmarks.record_table import CurveRecorder, main, parse_part, resolve, select_runs
from benchmarks.table import Curve, Grid, Point, Table, append_curve, iter_curves, read_meta
from tests.benchmarks.synthetic import EPOCHS, GRID, curve, write_table


def test_round_trip_keeps_points_seeds_and_values(tmp_path: Path) -> None:
    table = Table.load(write_table(tmp_path))
    assert len(table.curves) == len(GRID.points()) == 3 * 3 * 3 * 2
    point = Point("deconv_4x4", 1.0, 16, "constant")
    seeds = table.curves[point]
    assert [c.seed for c in seeds] == [0, 1]
    expected = curve(point, 1)
    assert seeds[1].metrics["val/nelbo"] == pytest.approx(expected.metrics["val/nelbo"], abs=1e-4)
    assert seeds[1].epochs == EPOCHS
    assert min(table.values()) == pytest.approx(100 + 60 * math.exp(-EPOCHS / 3), abs=1e-4)


def test_truncated_last_line_is_skipped_and_table_reports_what_is_missing(tmp_path: Path) -> None:
    write_table(tmp_path)
    part = tmp_path / "part-1of1.jsonl"
    lines = part.read_text().splitlines()
    part.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])  # cut off mid-line
    assert len(list(iter_curves(tmp_path))) == len(lines) - 1
    with pytest.raises(ValueError, match=r"incomplete: 1 of 108 curves missing"):
        Table.load(tmp_path)


def test_non_finite_values_round_trip_as_nan(tmp_path: Path) -> None:
    point = Point("mlp_small", 1.0, 16, "constant")
    append_curve(tmp_path / "a.jsonl", Curve(point, 0, {"val/nelbo": [300.0, float("nan")]}, error="diverged"))
    (read,) = iter_curves(tmp_path)
    assert read.metrics["val/nelbo"][0] == 300.0 and math.isnan(read.metrics["val/nelbo"][1])
    assert read.error == "diverged"


def test_grid_rejects_bad_axes() -> None:
    with pytest.raises(ValueError, match="'beta' has repeated"):
        Grid(("mlp_small",), (1.0, 1.0), (16,), ("constant",), (0,))
    with pytest.raises(ValueError, match="'seed' is empty"):
        Grid(("mlp_small",), (1.0,), (16,), ("constant",), ())
    with pytest.raises(ValueError, match="missing axes"):
        Grid.from_dict({"decoder": ["mlp_small"]})


def test_parts_partition_the_grid_and_skip_recorded_runs() -> None:
    runs = GRID.runs()
    parts = [select_runs(GRID, (i, 3), set()) for i in (1, 2, 3)]
    assert sorted(r for p in parts for r in p) == sorted(runs)      # every run in exactly one part
    assert sum(len(p) for p in parts) == len(runs)
    done = set(parts[0][:5])
    assert select_runs(GRID, (1, 3), done) == parts[0][5:]
    assert parse_part(None) == (1, 1) and parse_part("2/4") == (2, 4)
    for bad in ("0/2", "3/2", "a/b", "2"):
        with pytest.raises(ValueError, match="--part"):
            parse_part(bad)


def _args(**given: object) -> argparse.Namespace:
    keys = ["decoders", "betas", "latents", "schedules", "seeds", "lrs", "epochs", "width", "max_train", "batch_size",
            "lr", "dataset", "encoder", "likelihood", "sigma_mode", "binarize"]
    return argparse.Namespace(**{k: given.get(k) for k in keys})


def test_resume_takes_the_grid_from_meta_and_refuses_a_different_one(tmp_path: Path) -> None:
    grid, settings, meta = resolve(_args(betas=[0.5, 2.0], epochs=3), tmp_path)
    assert meta is None and grid.beta == (0.5, 2.0) and settings["epochs"] == 3
    (tmp_path / "meta.json").write_text(json.dumps({"format": "vaesearch-lc-table/1", "grid": grid.to_dict(),
                                                    "settings": settings, "epochs": 3}))
    resumed, resumed_settings, _ = resolve(_args(), tmp_path)
    assert resumed == grid and resumed_settings == settings
    with pytest.raises(ValueError, match="recorded with beta"):
        resolve(_args(betas=[1.0]), tmp_path)
    with pytest.raises(ValueError, match="recorded with epochs=3"):
        resolve(_args(epochs=5), tmp_path)
    with pytest.raises(FileNotFoundError, match="meta.json is missing"):
        read_meta(tmp_path / "nowhere")


class _Trial:
    def __init__(self, trial_id: str, config: dict) -> None:
        self.trial_id, self.config = trial_id, config


def test_recorder_writes_only_complete_or_failed_trials(tmp_path: Path) -> None:
    recorder = CurveRecorder(tmp_path / "part-1of1.jsonl", epochs=2, total=3)
    config = {"decoder": "mlp_small", "beta": 0.5, "latent_dim": 8, "schedule": "linear", "seed": 1}
    row = {"val/nelbo": 200.0, "val/rate": 3.0, "val/distortion": 197.0, "val/active_units": 4.0,
           "time/epoch_seconds": 0.1, "time_this_iter_s": 0.2}
    for trial_id, epochs, error in (("done", 2, None), ("cut", 1, None), ("failed", 1, "NaN loss")):
        recorder.results[trial_id] = [dict(row)] * epochs
        recorder.finish(_Trial(trial_id, {**config, "seed": len(trial_id)}), error)
    written = list(iter_curves(tmp_path))
    assert [(c.seed, c.epochs, c.error) for c in written] == [(4, 2, None), (6, 1, "NaN loss")]
    assert written[0].point == Point("mlp_small", 0.5, 8, "linear")
    assert written[0].metrics["time_this_iter_s"] == [0.2, 0.2]


def test_bad_grid_names_fail_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown decoder 'mlp_tiny'"):
        main(["--out", str(tmp_path / "t"), "--decoders", "mlp_tiny", "--dry-run"])
    with pytest.raises(ValueError, match="unknown schedule 'cosine'"):
        main(["--out", str(tmp_path / "t"), "--schedules", "cosine", "--dry-run"])
    assert not (tmp_path / "t").exists()


def test_lr_is_an_optional_axis_of_the_grid_and_of_each_point(tmp_path: Path) -> None:
    data = {**GRID.to_dict(), "lr": [3e-4, 1e-3, 3e-3]}
    grid = Grid.from_dict(data)
    assert grid.axes == ("decoder", "beta", "latent_dim", "schedule", "lr") and GRID.axes == grid.axes[:4]
    assert len(grid.points()) == 3 * len(GRID.points()) and grid.to_dict() == data and "lr" not in GRID.to_dict()
    assert {p.lr for p in grid.points()} == {3e-4, 1e-3, 3e-3} and {p.lr for p in GRID.points()} == {None}
    point = grid.points()[1]
    assert point.as_config()["lr"] == 1e-3 and "lr" not in GRID.points()[0].as_config()
    # a curve's lr survives the file (and a table without the axis reads as before)
    append_curve(tmp_path / "part-1of1.jsonl", Curve(point, 0, {"val/nelbo": [3.0, 2.0]}))
    [back] = iter_curves(tmp_path)
    assert back.point == point and back.point != Point(point.decoder, point.beta, point.latent_dim, point.schedule)
    with pytest.raises(ValueError, match="lr must be > 0"):
        Grid.from_dict({**data, "lr": [0.0, 1e-3]})
    with pytest.raises(ValueError, match="'lr' has repeated values"):
        Grid.from_dict({**data, "lr": [1e-3, 1e-3]})


def test_the_recorder_takes_lr_as_an_axis_or_a_setting_never_both(tmp_path: Path) -> None:
    grid, settings, _ = resolve(_args(lrs=[1e-3, 3e-3], likelihood="gaussian", binarize="none"), tmp_path)
    assert grid.lr == (1e-3, 3e-3) and "lr" not in settings   # each trial's config sets it
    assert settings["likelihood"] == "gaussian" and settings["binarize"] == "none"
    with pytest.raises(ValueError, match="give one of them"):
        resolve(_args(lrs=[1e-3], lr=1e-3), tmp_path)
    (tmp_path / "meta.json").write_text(json.dumps({"format": "vaesearch-lc-table/1", "grid": GRID.to_dict(),
                                                    "settings": {}, "epochs": 3}))
    with pytest.raises(ValueError, match="recorded with lr=not an axis"):
        resolve(_args(lrs=[1e-3]), tmp_path)
