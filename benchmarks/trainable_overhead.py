"""One epoch of vaesearch's training loop against a bare PyTorch loop, same model and data, one process.

    python benchmarks/trainable_overhead.py [--device cpu|cuda] [--dataset mnist5k] [--decoder mlp_small]
                                            [--width 0.25] [--batch-size 100] [--repeats 7]

Both loops see the same tensors on the device, the same architecture and initial weights, and
run alternately (bare, ours, bare, ours, ...) so drift in machine load hits both; the figure is
the median of the per-pair ratios ours / bare. Target: <= 1.05.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from trainables.data import load_dataset, steps_per_epoch
from trainables.spec import LossSchedule
from trainables.train_loop import train_epoch
from trainables.vae import VAEConfig, build_vae


def bare_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, train: torch.Tensor, batch_size: int,
               beta: float, gen: torch.Generator) -> float:
    """The loop a researcher writes by hand: permute, slice, binarise, forward, loss, backward, step."""
    model.train()
    start = time.perf_counter()
    perm = torch.randperm(train.shape[0], generator=gen).to(train.device)
    for i in range(0, train.shape[0], batch_size):
        x = torch.bernoulli(train[perm[i : i + batch_size]])
        out = model(x)
        loss = (-out.log_px_z + beta * out.kl_per_dim.sum(1)).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(train.device)
    return time.perf_counter() - start


def ours_epoch(model: torch.nn.Module, opt: torch.optim.Optimizer, train: torch.Tensor, batch_size: int,
               schedule: LossSchedule, gen: torch.Generator, total_steps: int) -> float:
    start = time.perf_counter()
    train_epoch(model, opt, train, batch_size=batch_size, schedule=schedule, step=0, total_steps=total_steps,
                binarize="dynamic", generator=gen)
    _sync(train.device)
    return time.perf_counter() - start


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--encoder", default="conv")
    parser.add_argument("--decoder", default="mlp_small")
    parser.add_argument("--width", type=float, default=0.25)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    data = load_dataset(args.dataset, binarize="dynamic", seed=0).to(device)
    config = VAEConfig(shape=data.shape, latent_dim=args.latent_dim, encoder=args.encoder, decoder=args.decoder, width=args.width)
    torch.manual_seed(0)
    models = {"bare": build_vae(config).to(device), "ours": build_vae(config).to(device)}
    models["ours"].load_state_dict(models["bare"].state_dict())
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    gens = {k: torch.Generator().manual_seed(0) for k in models}
    schedule = LossSchedule(name="constant", beta=1.0)
    total = steps_per_epoch(data.train.shape[0], args.batch_size)

    # warm-up (allocator, kernels), not timed
    bare_epoch(models["bare"], opts["bare"], data.train, args.batch_size, 1.0, gens["bare"])
    ours_epoch(models["ours"], opts["ours"], data.train, args.batch_size, schedule, gens["ours"], total)

    ratios, bare_times, our_times = [], [], []
    for _ in range(args.repeats):
        b = bare_epoch(models["bare"], opts["bare"], data.train, args.batch_size, 1.0, gens["bare"])
        o = ours_epoch(models["ours"], opts["ours"], data.train, args.batch_size, schedule, gens["ours"], total)
        bare_times.append(b)
        our_times.append(o)
        ratios.append(o / b)
    print(f"device={device} dataset={args.dataset} ({data.train.shape[0]} train) encoder={args.encoder} "
          f"decoder={args.decoder} width={args.width} batch={args.batch_size} threads={torch.get_num_threads()}")
    print(f"bare PyTorch epoch: median {statistics.median(bare_times):.3f} s")
    print(f"vaesearch epoch:    median {statistics.median(our_times):.3f} s")
    print(f"ratio ours/bare:    median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
          f"{args.repeats} pairs; target <= 1.05)")


if __name__ == "__main__":
    main()
