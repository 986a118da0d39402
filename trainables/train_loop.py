"""One epoch of β-VAE training on tensors that already live on the device.

The hot loop is what a bare PyTorch loop does (index a tensor, forward, backward, step) plus
the KL weight β_t (a Python float) and, under dynamic binarisation, one Bernoulli draw per batch
(Burda et al. 2015's protocol). Statistics are accumulated as device tensors and read once per
epoch, so there is no per-batch host synchronisation; a non-finite loss is therefore detected at
the end of the epoch, where it ends the trial with :class:`NonFiniteLossError`.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn

from trainables.data import binarize_batch, minibatch_indices, steps_per_epoch
from trainables.spec import LossSchedule, ObjectiveSpec


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite: the trial is stopped rather than reporting a silent number."""


@dataclass
class EpochStats:
    loss: float
    distortion: float
    rate: float
    beta: float          # mean β_t over the epoch's steps
    steps: int
    seconds: float

    def as_metrics(self) -> dict[str, float]:
        return {
            "train/loss": self.loss,
            "train/distortion": self.distortion,
            "train/rate": self.rate,
            "train/beta_t": self.beta,  # the schedule's mean β_t; the setting `beta` is a param
            "time/epoch_seconds": self.seconds,
        }


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: torch.Tensor,  # (N, C, H, W) on the model's device
    *,
    batch_size: int,
    schedule: LossSchedule,
    step: int,
    total_steps: int,
    binarize: str,
    generator: torch.Generator | None = None,
    grad_clip: float | None = None,
    objective: ObjectiveSpec | None = None,
) -> EpochStats:
    """Train for one pass over ``train``; ``step`` is the global step at the start of the epoch.
    ``objective``: the ELBO (None) or the IWAE bound (``trainables.objectives``)."""
    objective = objective or ObjectiveSpec()
    model.train()
    start = time.perf_counter()
    device = train.device
    weights = schedule.weights(step, total_steps, steps_per_epoch(train.shape[0], batch_size))
    stats: list[torch.Tensor] = []  # loss, distortion, rate of every step (detached views: no kernel), reduced once
    for weight, idx in zip(weights, minibatch_indices(train.shape[0], batch_size, generator=generator, device=device)):
        x = binarize_batch(train[idx], binarize)  # (B, C, H, W)
        terms = objective.loss(model, x, weight, free_bits=schedule.free_bits)
        optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        if grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
        optimizer.step()
        stats += (terms.loss.detach(), terms.distortion.detach(), terms.rate.detach())
    n_steps = len(stats) // 3
    means = epoch_means(stats, f"epoch ending step {step + n_steps}")
    return EpochStats(
        loss=means[0],
        distortion=means[1],
        rate=means[2],
        beta=sum(w.beta for w in weights[:n_steps]) / max(n_steps, 1),
        steps=n_steps,
        seconds=time.perf_counter() - start,
    )


def epoch_means(stats: list[torch.Tensor], where: str) -> list[float]:
    """The means of (loss, distortion, rate) over an epoch's steps, from their detached scalars
    laid out flat (loss, distortion, rate, loss, ...): the epoch's one host sync, and where a
    non-finite loss is found (:class:`NonFiniteLossError`)."""
    means = torch.stack(stats).double().view(-1, 3).mean(0).tolist() if stats else [0.0] * 3
    if not all(math.isfinite(m) for m in means):
        raise NonFiniteLossError(
            f"non-finite training loss at {where}: loss={means[0]}, distortion={means[1]}, rate={means[2]}. "
            "Lower the learning rate, enable train.grad_clip, or check the data range for the likelihood."
        )
    return means


