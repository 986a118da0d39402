"""One epoch of the shared-encoder bandit: a policy pull per minibatch, validation scoring of
every head, regret, and the epoch's reported metrics."""
from __future__ import annotations

import copy
import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from trainables.data import DatasetSplits, binarize_batch, minibatch_indices, steps_per_epoch
from trainables.objectives import vae_loss
from trainables.policies import Policy
from trainables.schedules import KLWeight
from trainables.shared_encoder.model import SharedEncoderVAE
from trainables.spec import SharedEncoderSpec
from trainables.train_loop import NonFiniteLossError, epoch_means


@dataclass
class SharedEncoderProgress:
    """What the loop has done so far (JSON-serialisable; goes into checkpoints)."""

    step: int  # minibatches (= pulls) so far
    epoch: int  # epochs completed
    pulls: list[int]  # per head
    cumulative_regret: float
    val_distortion: list[float]  # per head, the latest validation scores ([] before the first)
    val_rate: float = 0.0  # the encoder's rate on the validation batch at the latest scoring
    arm_history: list[int] = field(default_factory=list)  # the head chosen at every step
    regret_history: list[float] = field(default_factory=list)  # the regret of every step
    train_loss: float = 0.0  # means over the last epoch's steps (of whichever head trained)
    train_distortion: float = 0.0
    train_rate: float = 0.0
    seconds: float = 0.0  # wall time of the last epoch

    @classmethod
    def start(cls, n_heads: int) -> SharedEncoderProgress:
        return cls(step=0, epoch=0, pulls=[0] * n_heads, cumulative_regret=0.0, val_distortion=[])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SharedEncoderProgress:
        return cls(**d)


def step_regret(val_distortion: Sequence[float], arm: int) -> float:
    """val_distortion[arm] − min_k val_distortion[k]; 0 before any validation scoring."""
    return val_distortion[arm] - min(val_distortion) if val_distortion else 0.0


def validation_batch(data: DatasetSplits, size: int) -> torch.Tensor:
    """The fixed validation batch every head is scored on: the first ``size`` of data.val."""
    return data.val[:size]  # (min(size, N_val), C, H, W)


def _score(model: SharedEncoderVAE, progress: SharedEncoderProgress, val_batch: torch.Tensor, seed: int) -> None:
    # A fresh generator with the same seed: every scoring uses the same noise, so a change in a
    # head's score is a change in the head, and the global RNG (training) is left untouched.
    generator = torch.Generator(device=val_batch.device).manual_seed(seed)
    scores = model.head_scores(val_batch, generator)
    progress.val_distortion, progress.val_rate = scores.distortion, scores.rate


def train_shared_epoch(
    model: SharedEncoderVAE, optimizer: torch.optim.Optimizer, policy: Policy, data: DatasetSplits,
    spec: SharedEncoderSpec, progress: SharedEncoderProgress, val_batch: torch.Tensor,
    generator: torch.Generator | None = None,
) -> SharedEncoderProgress:
    """One pass over data.train, one policy pull per minibatch; returns the updated copy of
    ``progress``. ``generator`` (CPU) orders the batches; z and dynamic binarisation use the global RNG."""
    start = time.perf_counter()
    p = copy.deepcopy(progress)  # the caller's progress stays as it was
    weight = KLWeight(beta=float(spec.beta))
    stats: list[torch.Tensor] = []  # loss, distortion, rate per step, reduced once at the end
    model.train()
    for idx in minibatch_indices(data.train.shape[0], spec.batch_size, generator=generator, device=data.train.device):
        arm = policy.select()
        regret = step_regret(p.val_distortion, arm)  # judged by the scores known when choosing
        x = binarize_batch(data.train[idx], data.binarize)  # (B, C, H, W)
        out = model.head_output(x, arm)
        terms = vae_loss(out.log_px_z, out.kl_per_dim, weight)
        optimizer.zero_grad(set_to_none=True)  # None grads: Adam skips the heads not chosen
        terms.loss.backward()
        optimizer.step()
        reward = -terms.distortion.item()  # the policy needs it before the next choice: one sync per step
        if not math.isfinite(reward):
            raise NonFiniteLossError(f"non-finite distortion {-reward} of head {model.decoder_names[arm]!r} at step {p.step}; lower lr")
        policy.update(arm, reward)
        stats += (terms.loss.detach(), terms.distortion.detach(), terms.rate.detach())
        p.step, p.pulls[arm] = p.step + 1, p.pulls[arm] + 1
        p.arm_history.append(arm)
        p.regret_history.append(regret)
        p.cumulative_regret += regret
        if p.step % spec.eval_every == 0:
            _score(model, p, val_batch, spec.seed)
    if p.step % spec.eval_every != 0:  # the reported scores are always this epoch's final ones
        _score(model, p, val_batch, spec.seed)
    p.train_loss, p.train_distortion, p.train_rate = epoch_means(stats, f"epoch {p.epoch + 1}")
    p.epoch += 1
    p.seconds = time.perf_counter() - start
    return p


def total_steps(spec: SharedEncoderSpec, n_train: int) -> int:
    """Pulls in the whole trial: the budget handed to the policy."""
    return spec.epochs * steps_per_epoch(n_train, spec.batch_size)


def epoch_metrics(spec: SharedEncoderSpec, progress: SharedEncoderProgress, policy: Policy) -> dict[str, float]:
    """The per-epoch report: regret, the bandit's and the validation's best head, per-head stats."""
    val = progress.val_distortion
    val_best = min(range(len(val)), key=val.__getitem__) if val else 0
    best = policy.best_arm()
    metrics: dict[str, float] = {
        "epoch": progress.epoch,
        "step": progress.step,
        "regret/cumulative": progress.cumulative_regret,
        "regret/mean": progress.cumulative_regret / max(progress.step, 1),
        "bandit/best_head": best,
        "bandit/val_best_head": val_best,
        "bandit/agrees": float(best == val_best),
        "bandit/active_heads": len(policy.active),
        "val/distortion": val[val_best] if val else math.nan,
        "val/rate": progress.val_rate,
        "val/nelbo": (val[val_best] + progress.val_rate) if val else math.nan,  # the best head's, on the batch
        "train/loss": progress.train_loss,
        "train/distortion": progress.train_distortion,
        "train/rate": progress.train_rate,
        "time/epoch_seconds": progress.seconds,
    }
    for k, name in enumerate(spec.decoder_names):
        metrics[f"head/{name}/pulls"] = progress.pulls[k]
        metrics[f"head/{name}/pull_share"] = progress.pulls[k] / max(progress.step, 1)
        metrics[f"head/{name}/val_distortion"] = val[k] if val else math.nan
    return metrics


