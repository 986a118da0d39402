"""One epoch of vaesearch's training loop against a bare PyTorch loop, same model and data, one process.

    python benchmarks/trainable_overhead.py [--device cpu|cuda] [--dataset mnist5k] [--decoder mlp_small]
                                            [--width 0.25] [--batch-size 100] [--repeats 7]

Both loops see the same tensors on the device, the same architecture and initial weights, and
run alternately (bare, ours, bare, ours, ...) so drift in machine load hits both; the figure is
the median of the per-pair ratios ours / bare. Target: <= 1.05.

``measure`` is the whole measurement as a function: ``benchmarks/gpu_check.py`` (the GPU
machine's one-call check) runs it per decoder. This module imports only torch and
``trainables`` (no Ray, MLflow, Optuna or pydantic), which is what lets that check run where
only torch is installed.
"""
from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import torch

from trainables.data import DatasetSplits, load_dataset, steps_per_epoch
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


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    """Peak memory allocated by tensors since the last reset, in MiB; None off CUDA (torch does
    not track CPU allocations, and a made-up 0 would read as a measurement)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


@dataclass(frozen=True)
class Overhead:
    """One decoder's figures: the per-pair epoch times and what they come to."""

    decoder: str
    width: float
    train_images: int
    bare_s: list[float]           # per timed pair, seconds of the bare epoch
    ours_s: list[float]           # the same pairs, our epoch
    bare_peak_mib: float | None   # the most allocated during any bare epoch (CUDA only)
    ours_peak_mib: float | None   # ... during any of ours (both models are resident in both)
    parameters: int

    @property
    def ratios(self) -> list[float]:
        return [o / b for o, b in zip(self.ours_s, self.bare_s, strict=True)]

    @property
    def ratio(self) -> float:
        """The median of the per-pair ratios: each pair ran back to back, so shared drift cancels."""
        return statistics.median(self.ratios)


def measure(data: DatasetSplits, device: torch.device, *, encoder: str, decoder: str, width: float,
            latent_dim: int = 16, batch_size: int = 100, repeats: int = 7,
            time_budget_s: float | None = None) -> Overhead:
    """Time ``repeats`` alternating pairs (bare, ours) after one untimed warm-up epoch of each.

    ``time_budget_s`` stops adding pairs once the pairs so far took that long (at least one
    pair is timed): it lets a caller with many decoders and a fixed slot size the run.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats=}")
    train = data.train.to(device)
    config = VAEConfig(shape=tuple(train.shape[1:]), latent_dim=latent_dim, encoder=encoder, decoder=decoder,
                       width=width)
    torch.manual_seed(0)
    models = {"bare": build_vae(config).to(device), "ours": build_vae(config).to(device)}
    models["ours"].load_state_dict(models["bare"].state_dict())
    opts = {k: torch.optim.Adam(m.parameters(), lr=1e-3) for k, m in models.items()}
    gens = {k: torch.Generator().manual_seed(0) for k in models}
    schedule = LossSchedule(name="constant", beta=1.0)
    total = steps_per_epoch(train.shape[0], batch_size)

    # warm-up (allocator, kernels, cuDNN's algorithm choice), not timed
    bare_epoch(models["bare"], opts["bare"], train, batch_size, 1.0, gens["bare"])
    ours_epoch(models["ours"], opts["ours"], train, batch_size, schedule, gens["ours"], total)

    bare_times: list[float] = []
    our_times: list[float] = []
    peaks: dict[str, float | None] = {"bare": None, "ours": None}
    spent = 0.0
    for _ in range(repeats):
        _reset_peak(device)
        b = bare_epoch(models["bare"], opts["bare"], train, batch_size, 1.0, gens["bare"])
        peaks["bare"] = _max(peaks["bare"], _peak_mib(device))
        _reset_peak(device)
        o = ours_epoch(models["ours"], opts["ours"], train, batch_size, schedule, gens["ours"], total)
        peaks["ours"] = _max(peaks["ours"], _peak_mib(device))
        bare_times.append(b)
        our_times.append(o)
        spent += b + o
        if time_budget_s is not None and spent >= time_budget_s:
            break
    return Overhead(decoder=decoder, width=width, train_images=int(train.shape[0]), bare_s=bare_times,
                    ours_s=our_times, bare_peak_mib=peaks["bare"], ours_peak_mib=peaks["ours"],
                    parameters=sum(p.numel() for p in models["ours"].parameters()))


def _max(a: float | None, b: float | None) -> float | None:
    return b if a is None else a if b is None else max(a, b)


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

    data = load_dataset(args.dataset, binarize="dynamic", seed=0)
    row = measure(data, device, encoder=args.encoder, decoder=args.decoder, width=args.width,
                  latent_dim=args.latent_dim, batch_size=args.batch_size, repeats=args.repeats)
    ratios = row.ratios
    print(f"device={device} dataset={args.dataset} ({row.train_images} train) encoder={args.encoder} "
          f"decoder={args.decoder} width={args.width} batch={args.batch_size} threads={torch.get_num_threads()}")
    print(f"bare PyTorch epoch: median {statistics.median(row.bare_s):.3f} s")
    print(f"vaesearch epoch:    median {statistics.median(row.ours_s):.3f} s")
    print(f"ratio ours/bare:    median {row.ratio:.3f} (min {min(ratios):.3f}, max {max(ratios):.3f}, "
          f"{len(ratios)} pairs; target <= 1.05)")
    if row.ours_peak_mib is not None:
        print(f"peak GPU memory:    bare {row.bare_peak_mib:.0f} MiB, ours {row.ours_peak_mib:.0f} MiB "
              f"(both models resident)")


if __name__ == "__main__":
    main()
