"""A small VAE on the 8×8 digits and one epoch of training it: what several trainables tests build."""
from __future__ import annotations

import torch

from trainables.data import DatasetSplits
from trainables.spec import DataSpec, LossSchedule, TrialSpec
from trainables.train_loop import EpochStats, train_epoch
from trainables.vae import VAE, ModelSpec, VAEConfig, build_vae

#: A trial of the small VAE on the digits: a linear warm-up, 3 epochs.
DIGITS_SPEC = TrialSpec(
    data=DataSpec(name="digits", binarize="dynamic"),
    model=ModelSpec(encoder="mlp", decoder="mlp_small", latent_dim=4, width=0.25),
    schedule=LossSchedule(name="linear", beta=1.0, params={"warmup_fraction": 0.5}),
    epochs=3, batch_size=64, lr=3e-3,
)


def small_vae(digits: DatasetSplits, latent_dim: int = 4) -> VAE:
    torch.manual_seed(0)
    return build_vae(VAEConfig(shape=digits.shape, latent_dim=latent_dim, encoder="mlp", decoder="mlp_small", width=0.25))


def one_epoch(model: VAE, opt: torch.optim.Optimizer, digits: DatasetSplits, schedule: LossSchedule = LossSchedule(),
              step: int = 0, total: int = 100, generator: torch.Generator | None = None) -> EpochStats:
    return train_epoch(model, opt, digits.train, batch_size=64, schedule=schedule, step=step, total_steps=total,
                       binarize=digits.binarize, generator=generator or torch.Generator().manual_seed(0))
