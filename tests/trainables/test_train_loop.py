"""One epoch of β-VAE training (``trainables.train_loop``) on the 8×8 digits (no Ray)."""
from __future__ import annotations

import math

import pytest
import torch

from tests.trainables.small_vae import one_epoch, small_vae
from trainables.data import steps_per_epoch
from trainables.spec import LossSchedule
from trainables.train_loop import NonFiniteLossError


def test_training_reduces_the_loss(digits) -> None:
    model = small_vae(digits)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = one_epoch(model, opt, digits)
    for _ in range(3):
        last = one_epoch(model, opt, digits)
    assert last.loss < first.loss - 1.0
    assert first.steps == steps_per_epoch(digits.train.shape[0], 64)
    assert math.isclose(last.loss, last.distortion + last.rate, rel_tol=1e-5)  # beta = 1, constant


def test_schedule_beta_is_applied_per_step(digits) -> None:
    model = small_vae(digits)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = steps_per_epoch(digits.train.shape[0], 64)
    stats = one_epoch(model, opt, digits, LossSchedule(name="linear", beta=2.0, params={"warmup_fraction": 1.0}), step=0, total=n)
    expected = sum(2.0 * min(1.0, t / n) for t in range(n)) / n  # mean of the linear ramp over this epoch
    assert math.isclose(stats.beta, expected, rel_tol=1e-6)


def test_nonfinite_loss_raises_a_clear_error(digits) -> None:
    model = small_vae(digits)
    opt = torch.optim.SGD(model.parameters(), lr=1e30)  # diverges within the epoch
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        for _ in range(3):
            one_epoch(model, opt, digits)
