"""Divergence: the per-pixel marginal's NLL (a closed form here) and the rule built on it."""
from __future__ import annotations

import math

import pytest
import torch

from trainables.divergence import DIVERGENCE_FACTOR, DivergenceError, check_divergence, marginal_nll
from trainables.likelihoods import build_likelihood


def _images(a: list[float], b: list[float]) -> torch.Tensor:
    """8x8 images whose first 32 pixels are a[i] and last 32 are b[i]."""
    return torch.stack([torch.cat([torch.full((32,), float(x)), torch.full((32,), float(y))]) for x, y in zip(a, b)]).reshape(-1, 1, 8, 8)


def test_marginal_nll_is_the_bernoulli_entropy_by_hand() -> None:
    # Pixels of block A are on in 3 of 4 training images; block B is always off (clamped to 1e-3).
    train = _images([1, 1, 1, 0], [0, 0, 0, 0])
    val = _images([1, 0], [0, 1])
    per_pair = -((math.log(0.75) + math.log(1 - 1e-3)) + (math.log(0.25) + math.log(1e-3))) / 2
    got = marginal_nll(build_likelihood("bernoulli", (1, 8, 8)), train, val)
    assert got == pytest.approx(32 * per_pair, rel=1e-5)


def test_gaussian_marginal_nll_by_hand() -> None:
    train, val, sigma = _images([0.2, 0.6], [0.2, 0.6]), _images([0.5], [0.5]), 0.1
    per_pixel = 0.5 * math.log(2 * math.pi) + math.log(sigma) + 0.5 * ((0.5 - 0.4) / sigma) ** 2
    got = marginal_nll(build_likelihood("gaussian", (1, 8, 8), sigma=sigma, sigma_mode="fixed"), train, val)
    assert got == pytest.approx(64 * per_pixel, rel=1e-4)


def test_the_rule() -> None:
    baseline = 26.6
    check_divergence(DIVERGENCE_FACTOR * baseline * 0.99, baseline, epoch=3, last_epoch=5)  # within: no error
    check_divergence(6.3e10, baseline, epoch=1, last_epoch=5)   # an overshoot in the first epoch is spared
    with pytest.raises(DivergenceError, match=r"val/nelbo 5781 after epoch 3 .* 26.6 nats"):
        check_divergence(5781.0, baseline, epoch=3, last_epoch=3)
    with pytest.raises(DivergenceError):
        check_divergence(1e15, baseline, epoch=1, last_epoch=1)  # a one-epoch trial: its only epoch counts
