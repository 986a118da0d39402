"""One epoch of β-VAE training (``trainables.train_loop``) on the 8×8 digits (no Ray)."""
from __future__ import annotations

import math

import pytest
import torch

from trainables.spec import LossSchedule
from trainables.train_loop import NonFiniteLossError, steps_per_epoch, train_epoch
from trainables.vae import VAEConfig, build_vae


def _model(digits, latent_dim: int = 4):
    torch.manual_seed(0)
    return build_vae(VAEConfig(shape=digits.shape, latent_dim=latent_dim, encoder="mlp", decoder="mlp_small", width=0.25))


def _epoch(model, opt, digits, schedule=LossSchedule(), step=0, total=100, generator=None):
    return train_epoch(model, opt, digits.train, batch_size=64, schedule=schedule, step=step, total_steps=total,
                       binarize=digits.binarize, generator=generator or torch.Generator().manual_seed(0))


def test_training_reduces_the_loss(digits) -> None:
    model = _model(digits)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = _epoch(model, opt, digits)
    for _ in range(3):
        last = _epoch(model, opt, digits)
    assert last.loss < first.loss - 1.0
    assert first.steps == steps_per_epoch(digits.train.shape[0], 64)
    assert math.isclose(last.loss, last.distortion + last.rate, rel_tol=1e-5)  # beta = 1, constant


def test_schedule_beta_is_applied_per_step(digits) -> None:
    model = _model(digits)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = steps_per_epoch(digits.train.shape[0], 64)
    stats = _epoch(model, opt, digits, LossSchedule(name="linear", beta=2.0, params={"warmup_fraction": 1.0}), step=0, total=n)
    expected = sum(2.0 * min(1.0, t / n) for t in range(n)) / n  # mean of the linear ramp over this epoch
    assert math.isclose(stats.beta, expected, rel_tol=1e-6)


def test_nonfinite_loss_raises_a_clear_error(digits) -> None:
    model = _model(digits)
    opt = torch.optim.SGD(model.parameters(), lr=1e30)  # diverges within the epoch
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        for _ in range(3):
            _epoch(model, opt, digits)
