from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal

from trainables.likelihoods import (
    SIGMA_MODES,
    Likelihood,
    available_likelihoods,
    build_likelihood,
)

SHAPE = (3, 8, 8)


def _batch(seed: int = 0, b: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand((b, *SHAPE), generator=g, dtype=torch.float64)
    params = 2.0 * torch.randn((b, *SHAPE), generator=g, dtype=torch.float64)
    return x, params


def test_registered_names() -> None:
    assert available_likelihoods() == ["bernoulli", "gaussian"]
    assert SIGMA_MODES == ("fixed", "learned", "optimal")


# --------------------------------------------------------------------------- Bernoulli


def test_bernoulli_log_prob_equals_the_pmf_on_binary_pixels() -> None:
    x, params = _batch()
    x = (x > 0.5).double()
    p = torch.sigmoid(params)
    direct = (x * torch.log(p) + (1 - x) * torch.log(1 - p)).sum(dim=(1, 2, 3))
    got = build_likelihood("bernoulli", SHAPE).log_prob(x, params)
    assert got.shape == (5,)
    torch.testing.assert_close(got, direct)


def test_bernoulli_on_grey_levels_is_the_continuous_cross_entropy() -> None:
    x, params = _batch(1)
    p = torch.sigmoid(params)
    direct = (x * torch.log(p) + (1 - x) * torch.log1p(-p)).sum(dim=(1, 2, 3))
    torch.testing.assert_close(build_likelihood("bernoulli", SHAPE).log_prob(x, params), direct)


def test_bernoulli_is_stable_for_saturated_logits() -> None:
    x = torch.ones(2, *SHAPE)
    params = torch.full((2, *SHAPE), -200.0)  # log(sigmoid(-200)) underflows naively
    got = build_likelihood("bernoulli", SHAPE).log_prob(x, params)
    torch.testing.assert_close(got, torch.full((2,), -200.0 * x[0].numel()))


def test_bernoulli_mean_and_sample() -> None:
    lik = build_likelihood("bernoulli", SHAPE)
    levels = torch.tensor([-50.0, 0.0, 50.0])
    params = levels[torch.arange(2 * 3 * 8 * 8) % 3].reshape(2, *SHAPE)  # (2, 3, 8, 8)
    mean = lik.mean(params)
    assert mean.min() >= 0 and mean.max() <= 1
    s1 = lik.sample(params, generator=torch.Generator().manual_seed(3))
    s2 = lik.sample(params, generator=torch.Generator().manual_seed(3))
    assert torch.equal(s1, s2)
    assert set(s1.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(s1[params == 50.0], torch.ones_like(s1[params == 50.0]))


def test_bernoulli_ignores_sigma_options() -> None:
    lik = build_likelihood("bernoulli", SHAPE, sigma=-1.0, sigma_mode="whatever")
    assert isinstance(lik, Likelihood) and not list(lik.parameters())


# --------------------------------------------------------------------------- Gaussian


def test_gaussian_fixed_equals_torch_normal() -> None:
    x, params = _batch()
    lik = build_likelihood("gaussian", SHAPE, sigma=0.3).double()
    expected = Normal(torch.sigmoid(params), 0.3).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(lik.log_prob(x, params), expected)
    assert not list(lik.parameters())  # fixed sigma is not trained


def test_gaussian_learned_sigma_is_per_channel_and_gets_a_gradient() -> None:
    x, params = _batch()
    lik = build_likelihood("gaussian", SHAPE, sigma=0.2, sigma_mode="learned").double()
    (log_sigma,) = list(lik.parameters())
    assert log_sigma.numel() == SHAPE[0]
    # initialised at sigma (up to the soft clamp's small bend)
    sigma = lik.current_log_sigma().exp()  # (C, 1, 1)
    torch.testing.assert_close(sigma.flatten(), torch.full((3,), 0.2).double(), rtol=0.02, atol=0)
    expected = Normal(torch.sigmoid(params), sigma).log_prob(x).sum(dim=(1, 2, 3))
    torch.testing.assert_close(lik.log_prob(x, params), expected)
    (-lik.log_prob(x, params).sum()).backward()
    assert log_sigma.grad is not None and (log_sigma.grad != 0).all()


def test_gaussian_learned_sigma_converges_to_the_rms_error() -> None:
    x, params = _batch(b=16)
    lik = build_likelihood("gaussian", SHAPE, sigma=0.5, sigma_mode="learned").double()
    opt = torch.optim.Adam(lik.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        (-lik.log_prob(x, params).mean()).backward()
        opt.step()
    rmse = ((x - torch.sigmoid(params)) ** 2).mean(dim=(0, 2, 3)).sqrt()  # (C,)
    torch.testing.assert_close(lik.current_log_sigma().exp().flatten(), rmse, rtol=0.01, atol=0)


def test_gaussian_optimal_sigma_maximises_log_p() -> None:
    x, params = _batch()
    optimal = build_likelihood("gaussian", SHAPE, sigma_mode="optimal").double()
    best = optimal.log_prob(x, params).sum()
    sigma_star = ((x - torch.sigmoid(params)) ** 2).mean().sqrt().item()
    torch.testing.assert_close(optimal.current_log_sigma().exp().item(), sigma_star)
    for sigma in [0.01, 0.1, 0.5, 1.0, sigma_star * 0.98, sigma_star * 1.02]:
        fixed = build_likelihood("gaussian", SHAPE, sigma=sigma).double()
        assert fixed.log_prob(x, params).sum() < best


def test_gaussian_optimal_sigma_gradient_is_that_of_a_fixed_batch_sigma_star() -> None:
    # sigma* is one number for the whole batch (not per image), and the gradient w.r.t. the
    # decoder output is that of a constant sigma = sigma* (sigma-VAE's optimal-sigma loss).
    x, params = _batch()
    p1 = params.clone().requires_grad_(True)
    optimal = build_likelihood("gaussian", SHAPE, sigma_mode="optimal").double()
    optimal.log_prob(x, p1).sum().backward()
    sigma_star = ((x - torch.sigmoid(params)) ** 2).mean().sqrt().item()
    p2 = params.clone().requires_grad_(True)
    build_likelihood("gaussian", SHAPE, sigma=sigma_star).double().log_prob(x, p2).sum().backward()
    torch.testing.assert_close(p1.grad, p2.grad)


def test_gaussian_optimal_sigma_is_floored_on_a_perfect_batch() -> None:
    params = torch.zeros(2, *SHAPE)
    x = torch.full((2, *SHAPE), 0.5)  # sigmoid(0) = 0.5: zero error
    got = build_likelihood("gaussian", SHAPE, sigma_mode="optimal").log_prob(x, params)
    assert torch.isfinite(got).all()


@pytest.mark.parametrize("mode", SIGMA_MODES)
def test_gaussian_mean_and_sample(mode: str) -> None:
    lik = build_likelihood("gaussian", SHAPE, sigma=0.1, sigma_mode=mode)
    params = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(0)) * 30
    mean = lik.mean(params)
    assert mean.min() >= 0 and mean.max() <= 1
    big = torch.zeros(2000, *SHAPE)
    s = lik.sample(big, generator=torch.Generator().manual_seed(1))
    assert s.shape == big.shape
    assert abs(s.mean().item() - 0.5) < 0.01
    assert abs(s.std().item() - lik.current_log_sigma().exp().mean().item()) < 0.01


def test_log_prob_supports_leading_sample_dims() -> None:
    x, params = _batch()
    lik = build_likelihood("gaussian", SHAPE, sigma=0.2).double()
    stacked = lik.log_prob(x.expand(4, *x.shape), params.expand(4, *params.shape))
    assert stacked.shape == (4, 5)
    torch.testing.assert_close(stacked[2], lik.log_prob(x, params))


# --------------------------------------------------------------------------- errors


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown likelihood 'laplace'.*'bernoulli'.*'gaussian'"):
        build_likelihood("laplace", SHAPE)


@pytest.mark.parametrize("sigma", [0.0, -0.1, math.nan, math.inf])
def test_gaussian_rejects_bad_sigma(sigma: float) -> None:
    with pytest.raises(ValueError, match="sigma"):
        build_likelihood("gaussian", SHAPE, sigma=sigma)


def test_gaussian_rejects_unknown_sigma_mode_listing_the_modes() -> None:
    with pytest.raises(ValueError, match=r"'fixed'.*'learned'.*'optimal'.*sigma_mode='adaptive'"):
        build_likelihood("gaussian", SHAPE, sigma_mode="adaptive")
