"""Record the learning-curve table: the real trainable, through Ray Tune, over a grid of configs.

    python -m benchmarks.record_table --out benchmarks/data/mnist5k-w0.0625 [--part 1/2] [--max-minutes 60]
        [--decoders ...] [--betas ...] [--latents ...] [--schedules ...] [--seeds 0 1]
        [--epochs 20] [--width 0.0625] [--max-train 1000] [--batch-size 50] [--concurrent 2] [--gpu 0]

Every (config, seed) of the grid is one Tune trial of ``trainables.ray_trainables.train_vae`` with
``spec=search.trial_specs.trial_spec(config)``, exactly as in a live search; the trial's config holds the
searched keys (``decoder``, ``beta``, ``latent_dim``, ``schedule``) and ``seed``. A driver-side
Tune callback appends each finished trial's curve (every epoch's validation metrics and
timings) to ``OUT/part-IofN.jsonl``. Resumable: curves already in ``OUT`` are skipped, so a
table can be recorded across sessions (``--max-minutes``) or machines (``--part i/n``: every n-th
run of the grid, starting at the i-th). The grid and the fixed settings live in ``OUT/meta.json``;
a later session must use the same ones (flags left out are taken from it).
"""
from __future__ import annotations

import argparse
import logging
import os
import platform
import shlex
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.table import (
    FORMAT,
    METRICS,
    SEED_AXIS,
    Curve,
    Grid,
    Point,
    append_curve,
    iter_curves,
    read_meta,
    write_meta,
)

log = logging.getLogger("record_table")

# The grid: the five decoders of reference 003 × β × latent size × schedule, two seeds.
DEFAULT_GRID: dict[str, list[Any]] = {
    "decoder": ["mlp_small", "mlp_large", "deconv_2x2", "deconv_4x4", "linear_deconv_selu"],
    "beta": [0.25, 0.5, 1.0, 2.0, 4.0],
    "latent_dim": [4, 8, 16, 32, 64],
    "schedule": ["constant", "linear", "cyclical", "free_bits"],
    "seed": [0, 1],
}
# Sized for 2 CPU cores: width 1/16 of the reference decoders' channels, 1,000 training digits,
# batch 50 (20 steps per epoch), 20 epochs. See benchmarks/data/README.md for the measured cost.
DEFAULT_SETTINGS: dict[str, Any] = {
    "dataset": "mnist5k", "epochs": 20, "width": 0.0625, "max_train": 1000, "batch_size": 50, "lr": 1e-3,
    "encoder": "conv",
}
_FLAG_OF = {"decoder": "decoders", "beta": "betas", "latent_dim": "latents", "schedule": "schedules", "seed": "seeds",
            "lr": "lrs"}
#: Settings a table may fix besides the defaults (absent from older tables' meta.json: the config's defaults).
OPTIONAL_SETTINGS = ("likelihood", "sigma_mode", "binarize")


def build_config(settings: dict[str, Any]) -> Any:
    """The search Config whose ``trial_spec`` every recorded trial gets (schedule params: defaults)."""
    from search.config import parse_config

    return parse_config({
        "name": "lc-table", "seed": 0,
        "data": {"name": settings["dataset"], "max_train": settings["max_train"], "download": False,
                 **({"binarize": settings["binarize"]} if settings.get("binarize") else {})},
        "model": {"encoder": settings["encoder"], "width": settings["width"],
                  **{key: settings[key] for key in ("likelihood", "sigma_mode") if settings.get(key)}},
        # lr: a fixed setting, or (absent) an axis of the grid that every trial's config sets
        "train": {"epochs": settings["epochs"], "batch_size": settings["batch_size"],
                  **({"lr": settings["lr"]} if "lr" in settings else {})},
        "final_eval": {"trials": "none"},
    })


def validate_grid(grid: Grid) -> None:
    """Decoder and schedule names checked against the registries before any trial runs (a bad
    name would otherwise fail every trial and be recorded as an error curve)."""
    from search.config import SearchSpace

    try:
        SearchSpace(decoder=list(grid.decoder), schedule={name: {} for name in grid.schedule})
    except ValueError as exc:
        raise ValueError(f"invalid grid: {exc}") from None


def parse_part(text: str | None) -> tuple[int, int]:
    if text is None:
        return 1, 1
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise ValueError(f"--part must be I/N with integers, got {text!r}") from None
    if not 1 <= i <= n:
        raise ValueError(f"--part I/N needs 1 <= I <= N, got {text!r}")
    return i, n


def select_runs(grid: Grid, part: tuple[int, int], done: set[tuple[Point, int]]) -> list[tuple[Point, int]]:
    """The runs of this part (every n-th of the grid's fixed order) not recorded yet."""
    i, n = part
    return [run for k, run in enumerate(grid.runs()) if k % n == i - 1 and run not in done]


def recorded_runs(out: Path, retry_failed: bool) -> set[tuple[Point, int]]:
    return {(c.point, c.seed) for c in iter_curves(out) if not (retry_failed and c.error)}


def machine() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"platform": platform.platform(), "python": platform.python_version(),
                            "cpus": os.cpu_count(), "torch": torch.__version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def resolve(args: argparse.Namespace, out: Path) -> tuple[Grid, dict[str, Any], dict[str, Any] | None]:
    """Grid and settings from the flags, the existing meta.json, or the defaults (in that order);
    a flag that contradicts an existing table is an error."""
    meta = read_meta(out) if (out / "meta.json").exists() else None
    grid_dict = dict(meta["grid"]) if meta else dict(DEFAULT_GRID)
    settings = dict(meta["settings"]) if meta else dict(DEFAULT_SETTINGS)
    for axis, flag in _FLAG_OF.items():
        given = getattr(args, flag)
        if given is not None:
            if meta and [str(v) for v in given] != [str(v) for v in grid_dict.get(axis, [])]:
                raise ValueError(f"{out} was recorded with {axis}={grid_dict.get(axis, 'not an axis')}, got --{flag} "
                                 f"{given}; use the same grid or another --out")
            grid_dict[axis] = given
    for key in (*DEFAULT_SETTINGS, *OPTIONAL_SETTINGS):
        given = getattr(args, key, None)
        if given is not None:
            if meta and given != settings.get(key):
                raise ValueError(f"{out} was recorded with {key}={settings.get(key)!r}, got {given!r}; use another --out")
            settings[key] = given
    if "lr" in grid_dict:
        if args.lr is not None:
            raise ValueError("--lr fixes the learning rate and --lrs makes it an axis of the grid; give one of them")
        settings.pop("lr", None)   # an axis, not a fixed setting
    return Grid.from_dict(grid_dict), settings, meta


class CurveRecorder:
    """Tune callback (driver side): keeps each trial's results; on completion appends its curve."""

    def __init__(self, path: Path, epochs: int, total: int) -> None:
        from ray.tune import Callback

        class _Callback(Callback):
            def on_trial_result(cb, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
                self.results.setdefault(trial.trial_id, []).append({k: result.get(k) for k in METRICS})

            def on_trial_complete(cb, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.finish(trial, None)

            def on_trial_error(cb, iteration: int, trials: list, trial: Any, **info: Any) -> None:
                self.finish(trial, str(getattr(trial, "error_msg", None) or "trial failed").splitlines()[-1][:300])

        self.callback = _Callback()
        self.path, self.epochs, self.total = path, epochs, total
        self.results: dict[str, list[dict[str, Any]]] = {}
        self.written = 0
        self.start = time.monotonic()

    def finish(self, trial: Any, error: str | None) -> None:
        rows = self.results.pop(trial.trial_id, [])
        if error is None and len(rows) != self.epochs:
            return  # stopped by the time budget: not a curve, record it next session
        config = trial.config
        point = Point(config["decoder"], float(config["beta"]), int(config["latent_dim"]), config["schedule"],
                      float(config["lr"]) if "lr" in config else None)
        metrics = {k: [float("nan") if r[k] is None else float(r[k]) for r in rows] for k in METRICS}
        append_curve(self.path, Curve(point, int(config[SEED_AXIS]), metrics, error))
        self.written += 1
        elapsed = time.monotonic() - self.start
        print(f"[{self.written}/{self.total} {elapsed / 60:.1f} min] {point} seed {config[SEED_AXIS]}: "
              f"val/nelbo {metrics['val/nelbo'][-1] if rows else float('nan'):.2f}" + (f" ERROR {error}" if error else ""),
              flush=True)


def record(out: Path, grid: Grid, settings: dict[str, Any], runs: list[tuple[Point, int]], *, part: tuple[int, int],
           concurrent: int, gpu: float, max_minutes: float | None) -> int:
    """Run ``runs`` through Ray Tune; returns the number of curves written."""
    import ray
    from ray import tune
    from ray.tune.search.basic_variant import BasicVariantGenerator

    from search.trial_specs import trial_spec
    from trainables.ray_trainables import train_vae

    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    spec = trial_spec(build_config(settings))
    recorder = CurveRecorder(out / f"part-{part[0]}of{part[1]}.jsonl", settings["epochs"], len(runs))
    points = [{**p.as_config(), SEED_AXIS: s} for p, s in runs]
    storage = Path(tempfile.mkdtemp(prefix="lc-table-"))  # Tune's checkpoints: not kept
    started_ray = not ray.is_initialized()
    if started_ray:
        # address="local": always a private Ray instance, never a cluster some other process started.
        ray.init(address="local", num_cpus=max(concurrent, 1), num_gpus=1 if gpu else 0, include_dashboard=False,
                 log_to_driver=False)
    try:
        trainable = tune.with_resources(tune.with_parameters(train_vae, spec=spec), {"cpu": 1, "gpu": gpu})
        tune.Tuner(
            trainable,
            # points_to_evaluate fill keys of the param space: every key is given, nothing is sampled.
            param_space={axis: tune.choice(list(getattr(grid, axis))) for axis in (*grid.axes, SEED_AXIS)},
            tune_config=tune.TuneConfig(
                search_alg=BasicVariantGenerator(points_to_evaluate=points), num_samples=len(points),
                # One actor per worker, kept across trials: a new trial is then a fresh call of
                # train_vae in a warm process (no Ray actor start, no torch import, data cached).
                reuse_actors=True, time_budget_s=None if max_minutes is None else max_minutes * 60,
            ),
            run_config=tune.RunConfig(
                name="lc-table", storage_path=str(storage), callbacks=[recorder.callback], verbose=0,
                checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                failure_config=tune.FailureConfig(max_failures=0),
            ),
        ).fit()
    finally:
        shutil.rmtree(storage, ignore_errors=True)
        if started_ray:
            ray.shutdown()
    return recorder.written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n", 2)[2])
    parser.add_argument("--out", required=True, type=Path, help="table directory (created, or resumed)")
    parser.add_argument("--part", help="I/N: record every N-th run of the grid starting at the I-th")
    parser.add_argument("--max-minutes", type=float, help="stop after this long; unfinished trials are not written")
    parser.add_argument("--decoders", nargs="+")
    parser.add_argument("--betas", nargs="+", type=float)
    parser.add_argument("--latents", nargs="+", type=int)
    parser.add_argument("--schedules", nargs="+")
    parser.add_argument("--seeds", nargs="+", type=int)
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--width", type=float)
    parser.add_argument("--max-train", dest="max_train", type=int)
    parser.add_argument("--batch-size", dest="batch_size", type=int)
    parser.add_argument("--lr", type=float, help="the fixed learning rate (tables without an lr axis)")
    parser.add_argument("--lrs", nargs="+", type=float, help="learning rates as an axis of the grid")
    parser.add_argument("--likelihood", help="e.g. gaussian (learned sigma) for grey levels with --binarize none")
    parser.add_argument("--sigma-mode", dest="sigma_mode", choices=["fixed", "learned", "optimal"])
    parser.add_argument("--binarize", choices=["dynamic", "static", "none"])
    parser.add_argument("--dataset")
    parser.add_argument("--encoder")
    parser.add_argument("--concurrent", type=int, default=2, help="trials at a time (one CPU each)")
    parser.add_argument("--gpu", type=float, default=0.0, help="GPU per trial (e.g. 0.25 on a GPU machine)")
    parser.add_argument("--retry-failed", action="store_true", help="record again the curves that failed")
    parser.add_argument("--dry-run", action="store_true", help="print what would be recorded and stop")
    args = parser.parse_args(argv)

    out: Path = args.out
    grid, settings, meta = resolve(args, out)
    part = parse_part(args.part)
    build_config(settings)  # validate the settings and the grid before anything is written
    validate_grid(grid)
    runs = select_runs(grid, part, recorded_runs(out, args.retry_failed) if meta else set())
    print(f"table {out}: grid of {grid.size} curves ({len(grid.points())} configs x {len(grid.seed)} seeds), "
          f"{settings['epochs']} epochs each; part {part[0]}/{part[1]}: {len(runs)} to record", flush=True)
    if args.dry_run or not runs:
        return 0
    session = {"command": shlex.join([Path(sys.executable).name, "-m", "benchmarks.record_table", *(argv or sys.argv[1:])]),
               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine(), "part": list(part),
               "concurrent": args.concurrent, "gpu": args.gpu}
    meta = meta or {"format": FORMAT, "grid": grid.to_dict(), "settings": settings, "epochs": settings["epochs"],
                    "axes": list(grid.axes), "metrics": list(METRICS), "sessions": []}
    from dataclasses import asdict

    from search.trial_specs import trial_spec

    meta["base"] = _jsonable(asdict(trial_spec(build_config(settings))))
    meta["sessions"].append(session)
    write_meta(out, meta)
    start = time.monotonic()
    written = record(out, grid, settings, runs, part=part, concurrent=args.concurrent, gpu=args.gpu,
                     max_minutes=args.max_minutes)
    session.update(finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"), curves=written,
                   wall_minutes=round((time.monotonic() - start) / 60, 2))
    write_meta(out, meta)
    print(f"wrote {written} curves in {session['wall_minutes']} min to {out}", flush=True)
    return 0


def _jsonable(value: Any) -> Any:
    import json

    return json.loads(json.dumps(value, default=str))


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    sys.exit(main())
