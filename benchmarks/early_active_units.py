"""Active units against mutual information early in training (issue 14 §3; docs/vae-science.md).

A 32-dimensional VAE on mnist5k (conv encoder, mlp_small decoder), evaluated at initialisation
and after each epoch: active units, val/mi, val/rate, val/marginal_kl, how much the
reconstructions differ between images (their per-pixel variance over 200 validation images,
against the data's), and how much the decoder gains from the right code (log p(x|E_q[z]) minus
the same with the codes shuffled between images).

    python -m benchmarks.early_active_units --epochs 2 --width 0.25
"""
from __future__ import annotations

import argparse
import time

import torch

from trainables.data import load_dataset
from trainables.metrics import evaluate
from trainables.spec import LossSchedule
from trainables.train_loop import train_epoch
from trainables.vae import VAE, VAEConfig, build_vae


def report(model: VAE, val: torch.Tensor, tag: str) -> None:
    model.eval()
    r = evaluate(model, val, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        x = val[:200]
        binary = torch.bernoulli(x, generator=torch.Generator().manual_seed(0))
        mu = model.encode(x).mu
        recon_spread = model.likelihood.mean(model.decode(mu)).var(0).mean().item()
        shuffled = mu[torch.randperm(len(mu), generator=torch.Generator().manual_seed(1))]
        gain = (model.likelihood.log_prob(binary, model.decode(mu)) - model.likelihood.log_prob(binary, model.decode(shuffled))).mean()
        var_mu = mu.var(0)
    print(f"| {tag} | {r.active_units} | {r.mi:.3f} | {r.rate:.2f} | {r.marginal_kl:.2f} | {recon_spread:.4f} "
          f"(data {x.var(0).mean().item():.3f}) | {gain.item():.1f} | {var_mu.median().item():.3f} |", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--latent-dim", type=int, default=32)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    data = load_dataset("mnist5k", binarize="dynamic", seed=0)
    torch.manual_seed(0)
    model = build_vae(VAEConfig(shape=data.shape, latent_dim=args.latent_dim, encoder="conv", decoder="mlp_small",
                                width=args.width))
    print("| after | active units | val/mi | val/rate | val/marginal_kl | recon spread | decoder gain (nats) | median Var(mu) |")
    print("|---|---|---|---|---|---|---|---|")
    report(model, data.val, "init")
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batches = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        train_epoch(model, opt, data.train, batch_size=128, schedule=LossSchedule(), step=0, total_steps=1,
                    binarize="dynamic", generator=batches)
        report(model, data.val, f"{epoch + 1} epoch(s), {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
