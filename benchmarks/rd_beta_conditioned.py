"""β-conditioned trials against per-β trials at equal total epochs (issue 11 §3): the live service.

Two rate–distortion searches per seed through the real driver (``search.driver.run_search``: Ray
Tune, Optuna, MLflow in a SQLite file under ``--work``), the same trials × epochs each, the same
space of the *other* hyperparameters (latent size, decoder, lr):

- ``per_beta``: the ordinary mode: β searched in [low, high] (log) with the rest, multi-objective
  TPE on (``val/rate``, ``val/distortion``); each trial is one point.
- ``conditioned``: ``model.beta_conditioned: {low, high, grid}``; TPE on each trial's curve score
  (``rd/mean_beta_loss``); each trial is ``grid`` points.
- ``conditioned_TxE`` (``--longer T×E ...``): the same with T trials of E epochs, T·E = trials·epochs:
  the same total epochs spent on fewer, longer trials (a curve needs more epochs than a point).

Every trial's points are read back from its MLflow child run. The hypervolume of each search's
front is taken against one reference point for all searches of the comparison (the worst rate and
distortion of every point, plus 10 % of each range), so the numbers compare.

    python -m benchmarks.rd_beta_conditioned --seeds 0 1 2 --trials 12 --epochs 20 --longer 6x40 4x60 \
        --out benchmarks/results/rd-beta-conditioned/digits.json
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.live import child_runs, local_sections
from search.pareto import front, hypervolume, reference_point


def config(method: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    space: dict[str, Any] = {"latent_dim": [2, 4, 8], "decoder": ["mlp_small", "mlp_large"],
                             "lr": {"low": 1e-3, "high": 1e-2, "log": True}}
    model: dict[str, Any] = {"encoder": "mlp", "latent_dim": 4, "width": args.width}
    trials, epochs = args.trials, args.epochs
    if method == "per_beta":
        space["beta"] = {"low": args.low, "high": args.high, "log": True}
    else:
        model["beta_conditioned"] = {"low": args.low, "high": args.high, "grid": args.grid}
        if method != "conditioned":   # conditioned_TxE
            trials, epochs = (int(v) for v in method.removeprefix("conditioned_").split("x"))
    return {
        "name": f"rdbc-{method}-{seed}", "seed": seed, "data": {"name": args.dataset}, "model": model,
        "train": {"epochs": epochs, "batch_size": 64, "n_images": 16},
        "search": {"objective": "rate_distortion", "algorithm": "optuna", "num_samples": trials,
                   "max_concurrent": 2, "n_startup_trials": min(args.startup, trials - 1), "space": space},
        "final_eval": {"trials": "none"},
        **local_sections(work, f"rdbc-{method}-{seed}"),
    }


def points_of(uri: str, parent_run_id: str) -> list[tuple[float, float]]:
    """Every point of every child run: its curve (β-conditioned) or its one (rate, distortion)."""
    from search.modes.rd_points import trial_points

    return [(p.rate, p.distortion) for c in child_runs(uri, parent_run_id)
            for p in trial_points(c.info.run_id, c.data.metrics)]


def plot_fronts(result: dict[str, Any], path: Path, seed: int | None = None) -> None:
    """Every search of one seed in the RD plane: its points, and its front as a step line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = [r for r in result["runs"] if r["seed"] == (result["runs"][0]["seed"] if seed is None else seed)]
    fig, ax = plt.subplots(figsize=(7, 5))
    for run, colour in zip(runs, ("tab:grey", "tab:blue", "tab:orange", "tab:green", "tab:red")):
        xs, ys = zip(*run["points"]) if run["points"] else ((), ())
        ax.scatter(xs, ys, s=10, alpha=0.35, color=colour)
        fr = sorted(run["front"])
        ax.step([p[0] for p in fr], [p[1] for p in fr], where="post", color=colour, lw=2,
                label=f"{run['method']} (HV {run['hypervolume']:.1f}, {len(fr)} front points)")
    ref = result["reference"]
    ax.set_xlim(0, ref[0])
    ax.set_ylim(min(p[1] for r in runs for p in r["points"]) * 0.98, ref[1])
    ax.set_xlabel("rate (nats)")
    ax.set_ylabel("distortion (nats)")
    ax.set_title(f"rate–distortion fronts at equal epochs, seed {runs[0]['seed']} "
                 f"(reference point {ref[0]:.3g}, {ref[1]:.4g})")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def print_table(result: dict[str, Any], methods: list[str], trials: int, epochs: int) -> None:
    reference = result["reference"]
    runs = result["runs"]
    print(f"\nreference point (rate, distortion) = ({reference[0]:.4g}, {reference[1]:.4g}); "
          f"{trials * epochs} epochs per search\n")
    print("| method | trials × epochs | hypervolume per seed | median | front points (median) | search s (median) |")
    print("|---|---|---|---|---|---|")
    for method in methods:
        mine = [r for r in runs if r["method"] == method]
        hvs = [r["hypervolume"] for r in mine]
        shape = method.removeprefix("conditioned_") if "x" in method else f"{trials}x{epochs}"
        print(f"| {method} | {shape} | {', '.join(f'{h:.1f}' for h in hvs)} | {statistics.median(hvs):.1f} | "
              f"{statistics.median(len(r['front']) for r in mine):.0f} | "
              f"{statistics.median(r['seconds'] for r in mine):.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--startup", type=int, default=4)
    parser.add_argument("--dataset", default="digits")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--low", type=float, default=0.1)
    parser.add_argument("--high", type=float, default=10.0)
    parser.add_argument("--grid", type=int, default=8)
    parser.add_argument("--longer", nargs="*", default=[], metavar="TxE",
                        help="β-conditioned searches of T trials × E epochs (T·E = trials·epochs: equal total epochs)")
    parser.add_argument("--work", type=Path, default=None, help="MLflow and Ray results (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--plot", type=Path, default=None, help="the fronts of one seed's searches, plotted together (PNG)")
    parser.add_argument("--plot-seed", type=int, default=None, help="the seed --plot shows (default: the first)")
    parser.add_argument("--replot", type=Path, default=None, metavar="JSON",
                        help="no searches: read a previous --out file and write --plot (and print its table)")
    args = parser.parse_args()
    if args.replot:
        result = json.loads(args.replot.read_text())
        saved = result["args"]
        methods = list(dict.fromkeys(r["method"] for r in result["runs"]))
        print_table(result, methods, saved["trials"], saved["epochs"])
        if args.plot:
            plot_fronts(result, args.plot, args.plot_seed)
        return
    methods = ["per_beta", "conditioned", *(f"conditioned_{x}" for x in args.longer)]
    for x in args.longer:
        t, e = (int(v) for v in x.split("x"))
        if t * e != args.trials * args.epochs:
            parser.error(f"--longer {x}: {t}×{e} = {t * e} epochs, not the {args.trials * args.epochs} of the others")

    import ray

    from search.config import parse_config
    from search.driver import run_search

    work = args.work or Path(tempfile.mkdtemp(prefix="rdbc-"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for method in methods:
            data = config(method, seed, args, work)
            start = time.perf_counter()
            summary = run_search(parse_config(data), verbose=0)
            seconds = time.perf_counter() - start
            points = points_of(data["tracking"]["uri"], summary.parent_run_id)
            runs.append({"method": method, "seed": seed, "seconds": seconds, "points": points,
                         "errors": summary.n_errors})
            print(f"{method} seed {seed}: {len(points)} points, {summary.n_errors} failed trials, {seconds:.0f} s",
                  flush=True)
    ray.shutdown()

    reference = reference_point([p for r in runs for p in r["points"]])
    for r in runs:
        r["front"] = front(r["points"])
        r["hypervolume"] = hypervolume(r["points"], reference)
    result = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
              "reference": reference, "runs": runs}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))
    print_table(result, methods, args.trials, args.epochs)
    if args.plot:
        plot_fronts(result, args.plot, args.plot_seed)


if __name__ == "__main__":
    main()
