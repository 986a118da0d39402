"""Prior × objective at equal epochs (issue 14 §5, reduced): N(0, I) or VampPrior, ELBO or IWAE.

Trains the same VAE (one seed, the same data split and batch order) with each combination for
the same number of epochs, without Ray or a search, and reports per run: the importance-sampled
test NLL (k samples), the final val/nelbo, val/rate and its split into val/mi and val/marginal_kl,
active units, and the training time. Writes JSON and prints a Markdown table.

    python -m benchmarks.priors_objectives --epochs 10 --test-k 1000 --out benchmarks/results/priors-objectives.json

This is a fixed-hyperparameter grid, not the search comparison the issue describes (that needs a
search budget per arm: `vaesearch run` with `search.space.prior` / `search.space.objective`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from trainables.data import load_dataset
from trainables.metrics import evaluate, importance_sampled_nll
from trainables.spec import LossSchedule, ObjectiveSpec
from trainables.train_loop import train_epoch
from trainables.vae import VAEConfig, build_vae

GRID = [("standard_normal", "elbo"), ("vampprior", "elbo"), ("standard_normal", "iwae"), ("vampprior", "iwae")]


def run_one(prior: str, objective: str, args: argparse.Namespace) -> dict[str, Any]:
    data = load_dataset(args.dataset, binarize="dynamic", seed=0)
    torch.manual_seed(args.seed)
    params = {"n_components": args.components, "init": "data"} if prior == "vampprior" else {}
    model = build_vae(VAEConfig(shape=data.shape, latent_dim=args.latent_dim, encoder="mlp", decoder="mlp_small",
                                width=args.width, prior=prior, prior_params=params))
    model.prior.init_from_data(data.train, generator=torch.Generator().manual_seed(args.seed))
    spec = ObjectiveSpec(objective, {"k": args.k} if objective == "iwae" else {})
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    batches = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        train_epoch(model, opt, data.train, batch_size=args.batch_size, schedule=LossSchedule(), step=0,
                    total_steps=1, binarize=data.binarize, generator=batches, objective=spec)
    seconds = time.perf_counter() - start
    model.eval()
    val = evaluate(model, data.val, generator=torch.Generator().manual_seed(1))
    test = torch.bernoulli(data.test, generator=torch.Generator().manual_seed(2))  # one fixed binarisation
    nll = importance_sampled_nll(model, test, k=args.test_k, batch_size=max(1, 4096 // min(args.test_k, 500)),
                                 chunk_size=min(args.test_k, 500), generator=torch.Generator().manual_seed(3))
    return {"prior": prior, "objective": objective, "k": spec.k, "test_nll": nll, "val_nelbo": val.nelbo,
            "val_rate": val.rate, "val_mi": val.mi, "val_marginal_kl": val.marginal_kl, "mi_examples": val.mi_examples,
            "val_active_units": val.active_units, "train_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k", type=int, default=10, help="IWAE samples in training")
    parser.add_argument("--test-k", type=int, default=1000, help="importance samples for the test NLL")
    parser.add_argument("--components", type=int, default=50, help="VampPrior pseudo-inputs")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--width", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    rows = [run_one(prior, objective, args) for prior, objective in GRID]
    print(f"{args.dataset}, {args.epochs} epochs, latent {args.latent_dim}, mlp encoder/mlp_small decoder width "
          f"{args.width}, IWAE k={args.k}, VampPrior K={args.components} (init: data), test NLL k={args.test_k}")
    print("| prior | objective | test NLL | val/nelbo | val/rate | val/mi | val/marginal_kl | active units | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['prior']} | {r['objective']} | {r['test_nll']:.2f} | {r['val_nelbo']:.2f} | {r['val_rate']:.2f} | "
              f"{r['val_mi']:.2f} | {r['val_marginal_kl']:.2f} | {r['val_active_units']} | {r['train_seconds']:.0f} |")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
