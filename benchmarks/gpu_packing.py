"""Fractional-GPU packing: throughput of 1, 2, 4 … concurrent VAE trials sharing one GPU.

    python -m benchmarks.gpu_packing [--packing 1 2 4] [--epochs 6] [--decoder deconv_4x4] [--width 1.0]
        [--dataset mnist5k] [--batch-size 100] [--device cuda|cpu]

For each packing n, one Ray Tune run of n identical trials (seeds differ) of the real trainable
(``train_vae`` with ``search.trial_specs.trial_spec``, as a live search runs it), each asking for
``{"gpu": 1/n}`` (so Ray puts all n on the one GPU at once) and one CPU. A driver-side callback
stamps every epoch's result as it arrives. Printed per n:

- the aggregate throughput in epochs per second over the window in which all n trials were
  training (so Ray's and each worker's start, and their skew, are not counted);
- that as a multiple of n = 1's (the packing gain: > 1 means sharing the GPU pays);
- the mean seconds per epoch inside a trial (``time_this_iter_s``), which grows as trials share;
- how many trials actually overlapped (at most n).

``--device cpu`` runs the same measurement with one CPU per trial and no GPU (a check of the
script on a machine without one; the figures are then CPU-core scaling, not GPU packing).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class Packing:
    n: int
    epochs: int               # epoch results received, all trials
    window_s: float           # the time all n trials were training (see summarize)
    throughput: float         # epoch results per second inside the window, all trials
    epoch_s: float            # mean time_this_iter_s of those epochs
    overlap: int              # most trials with results in flight at once
    errors: int


def build_config(args: argparse.Namespace) -> Any:
    from search.config import parse_config

    return parse_config({
        "name": "gpu-packing", "seed": 0,
        "data": {"name": args.dataset, "download": False},
        "model": {"encoder": "conv" if args.dataset != "digits" else "mlp", "decoder": args.decoder,
                  "width": args.width, "latent_dim": 16},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size},
        "final_eval": {"trials": "none"},
    })


def overlap(spans: list[tuple[float, float]]) -> int:
    """The most intervals open at one time (an interval closing at t does not overlap one opening at t)."""
    events = sorted([(a, 1) for a, _ in spans] + [(b, -1) for _, b in spans], key=lambda e: (e[0], e[1]))
    most = current = 0
    for _, step in events:
        current += step
        most = max(most, current)
    return most


def summarize(n: int, stamps: dict[str, list[tuple[float, float]]], errors: int) -> Packing:
    """``stamps[trial]``: (arrival time, time_this_iter_s) per epoch result, in order.

    The window is the time every trial was running: from the last trial's first epoch result to
    the first trial's last one; the throughput counts the epoch results that arrived inside it.
    Start-up skew (one trial still loading while another trains) is thereby left out.
    """
    rows = [r for r in stamps.values() if r]
    arrivals = [t for r in rows for t, _ in r]
    if not rows:
        return Packing(n, 0, 0.0, float("nan"), float("nan"), 0, errors)
    start, end = max(r[0][0] for r in rows), min(r[-1][0] for r in rows)
    inside = [s for r in rows for t, s in r if start < t <= end]
    window = end - start
    return Packing(
        n=n, epochs=len(arrivals), window_s=window,
        throughput=len(inside) / window if window > 0 and inside else float("nan"),
        epoch_s=statistics.fmean(inside) if inside else float("nan"),
        overlap=overlap([(r[0][0] - r[0][1], r[-1][0]) for r in rows]), errors=errors,
    )


def measure(n: int, config: Any, *, gpu: bool, storage: Path) -> Packing:
    """One Tune run of ``n`` concurrent trials (Ray must be running)."""
    from ray import tune

    from search.trial_specs import trial_spec
    from trainables.ray_trainables import train_vae

    stamps: dict[str, list[tuple[float, float]]] = {}
    errors = 0

    class Stamp(tune.Callback):
        def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
            stamps.setdefault(trial.trial_id, []).append((time.monotonic(), float(result["time_this_iter_s"])))

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            nonlocal errors
            errors += 1

    resources = {"cpu": 1, "gpu": 1.0 / n} if gpu else {"cpu": 1}
    trainable = tune.with_resources(tune.with_parameters(train_vae, spec=trial_spec(config)), resources)
    tune.Tuner(
        trainable,
        param_space={"seed": tune.grid_search(list(range(n)))},
        tune_config=tune.TuneConfig(max_concurrent_trials=n, reuse_actors=False),
        run_config=tune.RunConfig(name=f"packing-{n}", storage_path=str(storage), callbacks=[Stamp()], verbose=0,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
                                  failure_config=tune.FailureConfig(max_failures=0)),
    ).fit()
    return summarize(n, stamps, errors)


def format_rows(rows: list[Packing], device: str) -> str:
    base = rows[0].throughput if rows and rows[0].n == 1 else float("nan")
    lines = [f"packing on {device}: n trials at once, each 1/n of the device",
             f"{'n':>3}{'epochs':>8}{'window s':>10}{'epochs/s':>10}{'x n=1':>8}{'s/epoch':>9}{'overlap':>9}{'errors':>8}"]
    for r in rows:
        lines.append(f"{r.n:>3}{r.epochs:>8}{r.window_s:>10.1f}{r.throughput:>10.2f}{r.throughput / base:>8.2f}"
                     f"{r.epoch_s:>9.3f}{r.overlap:>9}{r.errors:>8}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packing", nargs="+", type=int, default=[1, 2, 4])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--decoder", default="deconv_4x4")
    parser.add_argument("--width", type=float, default=1.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.packing) or args.epochs < 3:
        parser.error("--packing values must be >= 1 and --epochs >= 3 (the window starts after every trial's first epoch)")
    try:
        config = build_config(args)  # checked before Ray starts: a bad decoder or dataset name fails here
    except ValueError as exc:
        parser.error(f"invalid trial settings: {exc}")

    import ray
    import torch

    gpu = args.device == "cuda"
    if gpu and not torch.cuda.is_available():
        print("no CUDA device here: run on a GPU machine, or pass --device cpu", file=sys.stderr)
        return 2
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    started = not ray.is_initialized()
    if started:
        cpus = max(args.packing) if not gpu else max(os.cpu_count() or 1, max(args.packing))
        ray.init(address="local", num_cpus=cpus, num_gpus=1 if gpu else 0, include_dashboard=False,
                 log_to_driver=False)
    device = torch.cuda.get_device_name(0) if gpu else f"cpu ({os.cpu_count()} cores)"
    print(f"{args.dataset}, {args.decoder}, width {args.width}, batch {args.batch_size}, {args.epochs} epochs per trial",
          flush=True)
    rows = []
    try:
        with tempfile.TemporaryDirectory(prefix="packing-") as storage:
            for n in sorted(set(args.packing)):
                rows.append(measure(n, config, gpu=gpu, storage=Path(storage)))
                print(f"  n = {n}: {rows[-1].throughput:.2f} epochs/s", flush=True)
    finally:
        if started:
            ray.shutdown()
    print(format_rows(rows, device))
    return 0


if __name__ == "__main__":
    sys.exit(main())
