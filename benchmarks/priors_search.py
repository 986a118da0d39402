"""The open search space against N(0, I) + ELBO at the same search budget (issue 14 §5).

Two searches per seed through the real driver (``search.driver.run_search``: Ray Tune, Optuna
TPE, MLflow in a SQLite file under ``--work``), the same trials × epochs and the same space of the
other hyperparameters (latent size, lr):

- ``baseline``: the prior and the objective fixed at N(0, I) and the ELBO;
- ``open``: ``search.space.prior: [standard_normal, vampprior]`` and ``search.space.objective:
  [elbo, iwae]`` searched with the rest.

Every trial gets the importance-sampled test NLL (``final_eval.trials: all``, k = ``--test-k`` on
the whole test split), so the best test NLL of each search is the best of its trials, not only of
the trial its metric picked. Reported per search: the best test NLL and that trial's prior,
objective, val/nelbo, val/mi and val/marginal_kl; the best val/nelbo (the search's own pick);
the search's wall time. Read back from the MLflow child runs.

    python -m benchmarks.priors_search --seeds 0 --trials 12 --epochs 10 --test-k 5000 \
        --out benchmarks/results/priors-objectives/search.json
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.live import child_runs, local_sections

METHODS = ("baseline", "open")
REPORTED = ("test/nll", "val/nelbo", "val/rate", "val/mi", "val/marginal_kl", "val/active_units")


def config(method: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    space: dict[str, Any] = {"latent_dim": [8, 16, 32], "lr": {"low": 5e-4, "high": 3e-3, "log": True}}
    if method == "open":
        space["prior"] = {"standard_normal": {}, "vampprior": {"n_components": args.components, "init": "data"}}
        space["objective"] = {"elbo": {}, "iwae": {"k": args.k}}
    return {
        "name": f"priors-{method}-{seed}", "seed": seed, "data": {"name": args.dataset},
        "model": {"encoder": "mlp", "decoder": "mlp_small", "latent_dim": 16, "width": args.width},
        "train": {"epochs": args.epochs, "batch_size": 100, "n_images": 16},
        "search": {"algorithm": "optuna", "num_samples": args.trials, "max_concurrent": 2,
                   "n_startup_trials": min(args.startup, args.trials - 1), "space": space},
        "final_eval": {"trials": "all", "test_nll_k": args.test_k, "chunk_size": 500, "max_examples": None},
        **local_sections(work, f"priors-{method}-{seed}"),
    }


def trials_of(uri: str, parent_run_id: str) -> list[dict[str, Any]]:
    """Each child run's params and final metrics."""
    return [{"run_id": c.info.run_id, "status": c.info.status, "params": dict(c.data.params),
             "metrics": {k: v for k, v in c.data.metrics.items() if k in REPORTED}} for c in child_runs(uri, parent_run_id)]


def summarise(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The trial with the best test NLL and the one with the best val/nelbo."""
    scored = [t for t in trials if "test/nll" in t["metrics"]]
    by_nll = min(scored, key=lambda t: t["metrics"]["test/nll"]) if scored else None
    with_nelbo = [t for t in trials if "val/nelbo" in t["metrics"]]
    by_nelbo = min(with_nelbo, key=lambda t: t["metrics"]["val/nelbo"]) if with_nelbo else None
    return {"best_test_nll": by_nll, "best_val_nelbo": by_nelbo, "trials_with_test_nll": len(scored)}


def _describe(t: dict[str, Any] | None) -> str:
    if t is None:
        return "—"
    p, m = t["params"], t["metrics"]
    return (f"{p.get('prior', 'standard_normal')} + {p.get('objective', 'elbo')}, latent {p.get('latent_dim')}: "
            f"test NLL {m.get('test/nll', float('nan')):.2f}, val/nelbo {m.get('val/nelbo', float('nan')):.2f}, "
            f"MI {m.get('val/mi', float('nan')):.2f}, marginal KL {m.get('val/marginal_kl', float('nan')):.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--startup", type=int, default=5)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--k", type=int, default=10, help="IWAE's samples per example in training")
    parser.add_argument("--components", type=int, default=50, help="VampPrior pseudo-inputs")
    parser.add_argument("--test-k", type=int, default=5000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--work", type=Path, default=None, help="MLflow and Ray results (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    import ray

    from search.config import parse_config
    from search.driver import run_search

    work = args.work or Path(tempfile.mkdtemp(prefix="priors-search-"))
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs: list[dict[str, Any]] = []
    for seed in args.seeds:
        for method in args.methods:
            data = config(method, seed, args, work)
            start = time.perf_counter()
            summary = run_search(parse_config(data), verbose=0)
            seconds = time.perf_counter() - start
            trials = trials_of(data["tracking"]["uri"], summary.parent_run_id)
            runs.append({"method": method, "seed": seed, "seconds": seconds, "errors": summary.n_errors,
                         "trials": trials, **summarise(trials)})
            print(f"{method} seed {seed}: {len(trials)} trials, {summary.n_errors} failed, {seconds:.0f} s\n"
                  f"  best test NLL: {_describe(runs[-1]['best_test_nll'])}\n"
                  f"  best val/nelbo: {_describe(runs[-1]['best_val_nelbo'])}", flush=True)
            if args.out:   # after every search: a long run keeps what it has
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps({"args": {k: str(v) if isinstance(v, Path) else v
                                                         for k, v in vars(args).items()}, "runs": runs}, indent=1))
    ray.shutdown()


if __name__ == "__main__":
    main()
