"""Tests for trainables.metrics against a linear-Gaussian VAE whose log p(x) is known exactly.

p(z) = N(0, I), p(x|z) = N(Wz + b, σ²I), x ∈ R^P, so p(x) = N(b, WWᵀ + σ²I). W has orthogonal
columns, which makes the true posterior p(z|x) diagonal: an encoder can represent it exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch

from trainables.gaussian import (
    diag_gaussian_log_prob,
    kl_to_std_normal,
    reparameterize,
    std_normal_log_prob,
)
from trainables.metrics import (
    EvalResult,
    active_units,
    evaluate,
    importance_sampled_log_likelihood,
    importance_sampled_nll,
    mutual_information,
)
from trainables.objectives import log_importance_weights

P, D = 5, 2
DTYPE = torch.float64  # so that "exact" comparisons can be tight


@dataclass
class Posterior:
    mu: torch.Tensor  # (B, D)
    logvar: torch.Tensor  # (B, D)


@dataclass
class Pieces:
    log_px_z: torch.Tensor  # (B,)
    kl_per_dim: torch.Tensor  # (B, D)


class StdNormalPrior:
    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return std_normal_log_prob(z)


class LinearGaussianVAE:
    """Decoder N(Wz + b, σ²I); encoder q(z|x) = N(A(x − b) + c, diag(exp(logvar)))."""

    def __init__(self, encoder_scale: float = 1.0, logvar_shift: float = 0.0) -> None:
        gen = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn((P, D), generator=gen, dtype=DTYPE))
        self.W = q * torch.tensor([2.0, 0.7], dtype=DTYPE)  # (P, D), orthogonal columns
        self.b = torch.randn(P, generator=gen, dtype=DTYPE)  # (P,)
        self.sigma2 = 0.5
        # Exact posterior: Σ = (I + WᵀW/σ²)⁻¹ (diagonal here), mean Σ Wᵀ (x − b) / σ².
        post_var = 1.0 / (1.0 + (self.W**2).sum(0) / self.sigma2)  # (D,)
        self.A = encoder_scale * post_var[:, None] * self.W.T / self.sigma2  # (D, P)
        self.c = torch.zeros(D, dtype=DTYPE)
        self.logvar = post_var.log() + logvar_shift  # (D,)
        self.prior = StdNormalPrior()

    def encode(self, x: torch.Tensor) -> Posterior:
        mu = (x - self.b) @ self.A.T + self.c  # (B, D)
        return Posterior(mu=mu, logvar=self.logvar.expand_as(mu))

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        mean = z @ self.W.T + self.b  # (B, P)
        return diag_gaussian_log_prob(x, mean, torch.full_like(x, math.log(self.sigma2)))

    def __call__(self, x: torch.Tensor) -> Pieces:
        post = self.encode(x)
        z = reparameterize(post.mu, post.logvar)  # global RNG, like a real nn.Module
        return Pieces(self.log_px_given_z(x, z), kl_to_std_normal(post.mu, post.logvar))

    def sample(self, n: int, seed: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn((n, D), generator=gen, dtype=DTYPE)
        noise = torch.randn((n, P), generator=gen, dtype=DTYPE)
        return z @ self.W.T + self.b + math.sqrt(self.sigma2) * noise  # (n, P)

    def log_px(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.W @ self.W.T + self.sigma2 * torch.eye(P, dtype=DTYPE)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)  # (B,)

    def elbo(self, x: torch.Tensor) -> torch.Tensor:
        """Closed form: log N(x; Wμ + b, σ²I) − Σ_j ‖w_j‖² var_j / (2σ²) − KL(q ‖ p)."""
        post = self.encode(x)
        expected_log_lik = self.log_px_given_z(x, post.mu) - (
            (self.W**2).sum(0) * post.logvar.exp()
        ).sum(-1) / (2 * self.sigma2)
        return expected_log_lik - kl_to_std_normal(post.mu, post.logvar).sum(-1)  # (B,)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- (a) exact posterior ---------------------------------------------------------------------


def test_closed_form_elbo_is_tight_at_the_exact_posterior() -> None:
    model = LinearGaussianVAE()
    x = model.sample(50, seed=1)
    assert torch.allclose(model.elbo(x), model.log_px(x), atol=1e-10)
    assert (LinearGaussianVAE(encoder_scale=0.8).elbo(x) < model.log_px(x) - 1e-3).all()


@pytest.mark.parametrize("k", [1, 7, 100])
def test_is_estimate_is_exact_for_any_k_at_the_exact_posterior(k: int) -> None:
    model = LinearGaussianVAE()
    x = model.sample(20, seed=2)
    estimate = importance_sampled_log_likelihood(model, x, k=k, chunk_size=3, generator=_gen(k))
    assert estimate.shape == (20,)
    assert torch.allclose(estimate, model.log_px(x), atol=1e-9)


def test_importance_sampled_nll_is_exact_mean_at_the_exact_posterior() -> None:
    model = LinearGaussianVAE()
    x = model.sample(10, seed=3)  # batches of 3, 3, 3, 1
    nll = importance_sampled_nll(model, x, k=20, batch_size=3, chunk_size=6, generator=_gen(0))
    assert nll == pytest.approx(-model.log_px(x).mean().item(), abs=1e-9)


def test_evaluate_nelbo_matches_log_px_at_the_exact_posterior() -> None:
    model = LinearGaussianVAE()
    x = model.sample(4000, seed=4)
    result = evaluate(model, x, batch_size=1000, generator=_gen(0))
    # Single-sample ELBO: unbiased, so it matches −log p(x) up to its Monte Carlo error.
    torch.manual_seed(0)
    pieces = model(x)
    per_example = -pieces.log_px_z + pieces.kl_per_dim.sum(-1)
    stderr = per_example.std().item() / math.sqrt(len(x))
    assert result.nelbo == pytest.approx(-model.log_px(x).mean().item(), abs=4 * stderr)
    assert stderr < 0.05


# --- (b) perturbed encoder -------------------------------------------------------------------


def test_is_estimate_with_k_5000_is_within_its_standard_error_and_above_the_elbo() -> None:
    model = LinearGaussianVAE(encoder_scale=0.9, logvar_shift=0.5)  # ELBO gap 0.15–0.2 nats
    x = model.sample(16, seed=5)
    estimate = importance_sampled_log_likelihood(model, x, k=5000, generator=_gen(1))
    # Delta-method standard error of log(mean w) from an independent set of weights.
    w = torch.exp(log_importance_weights(model, x, 5000, generator=_gen(2)) - model.log_px(x))
    stderr = w.std(0) / (w.mean(0) * math.sqrt(5000))  # (B,)
    assert stderr.max() < 0.01
    assert ((estimate - model.log_px(x)).abs() < 5 * stderr).all()
    assert (estimate > model.elbo(x) + 0.1).all()


def test_is_estimate_rises_with_k_on_average() -> None:
    model = LinearGaussianVAE(encoder_scale=0.8, logvar_shift=-1.0)  # heavy-ish tailed weights
    x = model.sample(1000, seed=6)
    estimates = {
        k: importance_sampled_log_likelihood(model, x, k=k, chunk_size=250, generator=_gen(k))
        for k in (1, 10, 100, 1000)
    }
    for small, large in [(1, 10), (10, 100), (100, 1000)]:
        gain = estimates[large] - estimates[small]  # (N,) paired by example
        stderr = gain.std().item() / math.sqrt(len(x))
        assert gain.mean().item() > 3 * stderr, (small, large)
    assert (estimates[1000].mean() < model.log_px(x).mean()).item()  # still a lower bound


def test_k_1_estimate_is_unbiased_for_the_elbo() -> None:
    model = LinearGaussianVAE(encoder_scale=0.8, logvar_shift=-1.0)
    x = model.sample(50, seed=7).repeat(200, 1)  # 200 independent draws per example
    diff = importance_sampled_log_likelihood(model, x, k=1, generator=_gen(3)) - model.elbo(x)
    stderr = diff.std().item() / math.sqrt(len(diff))
    assert abs(diff.mean().item()) < 4 * stderr
    assert stderr < 0.01  # far below the ≈ 0.5 nat ELBO gap of this encoder


# --- (c) chunking ----------------------------------------------------------------------------


class _CountingModel(LinearGaussianVAE):
    def __init__(self) -> None:
        super().__init__(encoder_scale=0.8, logvar_shift=-0.5)
        self.encode_calls = 0
        self.decoder_rows: list[int] = []

    def encode(self, x: torch.Tensor) -> Posterior:
        self.encode_calls += 1
        return super().encode(x)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        self.decoder_rows.append(x.shape[0])
        return super().log_px_given_z(x, z)


def test_chunked_estimate_equals_one_chunk_with_the_same_draws() -> None:
    # With B·D = 16, torch's CPU normal sampler (filled in blocks of 16) yields the same stream
    # whether 50 samples are drawn at once or 7 at a time; check that precondition first.
    batch = 8
    whole = torch.randn((50, batch, D), generator=_gen(9), dtype=DTYPE)
    g = _gen(9)
    parts = [torch.randn((n, batch, D), generator=g, dtype=DTYPE) for n in [7] * 7 + [1]]
    assert torch.equal(torch.cat(parts), whole)

    x = LinearGaussianVAE().sample(batch, seed=8)
    chunked_model = _CountingModel()

    def estimate(model: _CountingModel, chunk_size: int) -> torch.Tensor:
        return importance_sampled_log_likelihood(
            model, x, k=50, chunk_size=chunk_size, generator=_gen(9)
        )

    chunked = estimate(chunked_model, 7)
    one_chunk = estimate(_CountingModel(), 50)
    oversized = estimate(_CountingModel(), 999)
    assert torch.allclose(chunked, one_chunk, atol=1e-10, rtol=0)
    assert torch.equal(one_chunk, oversized)
    assert chunked_model.encode_calls == 1
    assert chunked_model.decoder_rows == [7 * batch] * 7 + [1 * batch]  # memory bounded by chunk


# --- evaluate and active units -----------------------------------------------------------------


class _DeterministicImageModel:
    """Images (N, 1, 2, 2); log p(x|z) = −Σ pixels and KL_j = x_j² for the first D pixels."""

    prior = StdNormalPrior()

    def encode(self, x: torch.Tensor) -> Posterior:
        flat = x.flatten(1)[:, :D]  # (B, D)
        return Posterior(mu=flat, logvar=torch.zeros_like(flat))

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return -x.flatten(1).sum(1)

    def __call__(self, x: torch.Tensor) -> Pieces:
        return Pieces(-x.flatten(1).sum(1), x.flatten(1)[:, :D] ** 2)


def test_evaluate_is_the_exact_mean_with_an_uneven_last_batch() -> None:
    x = torch.arange(7 * 4, dtype=DTYPE).reshape(7, 1, 2, 2) / 10  # batches of 3, 3, 1
    result = evaluate(_DeterministicImageModel(), x, batch_size=3)
    flat = x.flatten(1)
    assert result.distortion == pytest.approx(flat.sum(1).mean().item())
    assert result.rate == pytest.approx((flat[:, :D] ** 2).sum(1).mean().item())
    assert result.nelbo == pytest.approx(result.distortion + result.rate)
    assert result.n_examples == 7
    assert result.active_units == 2  # pixel values vary a lot over the 7 images


def test_evaluate_linear_gaussian_terms_and_metric_names() -> None:
    model = LinearGaussianVAE(encoder_scale=0.8)
    x = model.sample(103, seed=10)
    result = evaluate(model, x, batch_size=25, generator=_gen(0))
    expected_rate = kl_to_std_normal(**vars(model.encode(x))).sum(-1).mean().item()
    assert result.rate == pytest.approx(expected_rate, rel=1e-12)
    assert result.nelbo == pytest.approx(result.distortion + result.rate, rel=1e-12)
    assert result.as_metrics("test") == {
        "test/nelbo": result.nelbo,
        "test/rate": result.rate,
        "test/distortion": result.distortion,
        "test/active_units": 2.0,
        "test/mi": result.mi,
        "test/marginal_kl": result.marginal_kl,
    }
    val_names = {"val/nelbo", "val/rate", "val/distortion", "val/active_units", "val/mi", "val/marginal_kl"}
    assert set(result.as_metrics()) == val_names


def test_evaluate_is_reproducible_with_a_generator_and_leaves_global_rng_alone() -> None:
    model = LinearGaussianVAE(encoder_scale=0.8)
    x = model.sample(40, seed=11)
    state = torch.get_rng_state()
    first = evaluate(model, x, batch_size=16, generator=_gen(5))
    assert torch.equal(torch.get_rng_state(), state)
    assert evaluate(model, x, batch_size=16, generator=_gen(5)) == first
    assert evaluate(model, x, batch_size=16, generator=_gen(6)).distortion != first.distortion


def test_evaluate_counts_a_constant_mean_dimension_as_inactive() -> None:
    model = LinearGaussianVAE()
    x = model.sample(200, seed=12)
    assert evaluate(model, x, batch_size=64, generator=_gen(0)).active_units == 2
    model.A[1] = 0.0  # dim 1's posterior mean no longer depends on x
    model.c[1] = 0.7
    assert evaluate(model, x, batch_size=64, generator=_gen(0)).active_units == 1


def test_active_units_threshold() -> None:
    gen = _gen(13)
    base = torch.randn((10_000, 1), generator=gen, dtype=DTYPE)
    base = (base - base.mean()) / base.std(correction=0)  # variance exactly 1
    # Variances 0.04, 0.0081 and 0 about the 0.01 threshold.
    mu = torch.cat([base * 0.2, base * 0.09, torch.full_like(base, 3.0)], dim=1)
    assert active_units(mu) == 1
    assert active_units(mu, threshold=0.005) == 2
    assert active_units(mu[:1]) == 0  # a single example: no variation, not NaN
    with pytest.raises(ValueError, match="N, D"):
        active_units(mu[:, 0])


def test_bad_arguments_raise() -> None:
    model = LinearGaussianVAE()
    x = model.sample(4, seed=14)
    with pytest.raises(ValueError, match="k=0"):
        importance_sampled_log_likelihood(model, x, k=0)
    with pytest.raises(ValueError, match="chunk_size=0"):
        importance_sampled_log_likelihood(model, x, k=5, chunk_size=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        importance_sampled_nll(model, x, k=5, batch_size=0)
    with pytest.raises(ValueError, match="batch_size=0"):
        evaluate(model, x, batch_size=0)
    with pytest.raises(ValueError, match="N >= 1"):
        evaluate(model, x[:0])
    assert isinstance(evaluate(model, x), EvalResult)


# --- ELBO surgery: mutual information and marginal KL ------------------------------------------


class _LinearGaussianEncoder:
    """x ~ N(0, Σ) in R^P, q(z|x) = N(Ax, diag s²), p(z) = N(0, I); a decoder that plays no part.

    The aggregate posterior is q(z) = N(0, C), C = AΣAᵀ + diag s², so in closed form
    I(x; z) = ½ (log det C − Σ log s²) and KL(q(z) ‖ p(z)) = ½ (tr C − D − log det C)."""

    prior = StdNormalPrior()

    def __init__(self, A: torch.Tensor, s2: torch.Tensor, sigma: torch.Tensor) -> None:
        self.A, self.s2, self.sigma = A, s2, sigma
        C = A @ sigma @ A.T + torch.diag(s2)
        self.mi = 0.5 * (torch.logdet(C) - s2.log().sum()).item()
        self.marginal_kl = 0.5 * (torch.trace(C) - len(s2) - torch.logdet(C)).item()

    def encode(self, x: torch.Tensor) -> Posterior:
        mu = x @ self.A.T
        return Posterior(mu=mu, logvar=self.s2.log().expand_as(mu))

    def __call__(self, x: torch.Tensor) -> Pieces:
        post = self.encode(x)
        return Pieces(torch.zeros(len(x), dtype=DTYPE), kl_to_std_normal(post.mu, post.logvar))

    def data(self, n: int, seed: int) -> torch.Tensor:
        chol = torch.linalg.cholesky(self.sigma)
        return torch.randn((n, self.sigma.shape[0]), generator=_gen(seed), dtype=DTYPE) @ chol.T


def _correlated_model() -> _LinearGaussianEncoder:
    g = _gen(0)
    L = torch.randn((4, 4), generator=g, dtype=DTYPE)
    sigma = L @ L.T / 4 + 0.5 * torch.eye(4, dtype=DTYPE)
    A = torch.randn((2, 4), generator=g, dtype=DTYPE) * 0.7
    return _LinearGaussianEncoder(A, torch.tensor([0.3, 0.8], dtype=DTYPE), sigma)


def test_mutual_information_matches_the_closed_form_of_a_linear_gaussian_model() -> None:
    """I = 1.64 nats here. Tolerance: the estimator's spread measured over 30 seeds at N = 2000 is
    0.027 nats (0.044 at N = 500: ∝ 1/√N, as a mean of N per-example terms of std ≈ 1.2), its
    bias −0.008 (the plug-in log q(z) over N components); 4 standard deviations plus the bias
    twice over: 0.125 nats. A missing log N or a wrong axis is off by nats."""
    model = _correlated_model()
    x = model.data(2000, seed=1)
    result = evaluate(model, x, batch_size=500, generator=_gen(2))
    assert result.mi_examples == 2000
    assert result.mi == pytest.approx(model.mi, abs=4 * 0.027 + 2 * 0.008)
    assert model.marginal_kl > 0.5  # ELBO surgery: rate = MI + marginal KL, on the same examples
    assert result.marginal_kl == pytest.approx(model.marginal_kl, abs=4 * 0.027 + 2 * 0.008 + 0.05)


def test_marginal_kl_is_zero_up_to_its_measured_noise_when_the_aggregate_posterior_is_the_prior() -> None:
    """A = diag(a), Σ = I, s² = 1 − a²: q(z) = N(0, I) = p(z), so KL(q(z) ‖ p(z)) = 0 and the rate
    is all mutual information. The estimate rate − MI is not clamped: over 40 seeds at N = 2000 it
    had mean 0.0005, std 0.022, minimum −0.038 (N = 500: std 0.033). Bound: 4 std."""
    a = torch.tensor([0.9, 0.6], dtype=DTYPE)
    model = _LinearGaussianEncoder(torch.diag(a), 1 - a**2, torch.eye(2, dtype=DTYPE))
    assert model.marginal_kl == pytest.approx(0.0, abs=1e-12)
    for seed in range(3):
        result = evaluate(model, model.data(2000, seed=seed), batch_size=1000, generator=_gen(seed))
        assert abs(result.marginal_kl) < 4 * 0.022
        assert result.mi == pytest.approx(model.mi, abs=4 * 0.026)


def test_mutual_information_never_exceeds_log_n() -> None:
    """Posteriors far apart (I(x; z) ≫ log N): the estimate saturates at log N, never above."""
    model = _LinearGaussianEncoder(torch.eye(2, dtype=DTYPE) * 30.0, torch.full((2,), 1e-4, dtype=DTYPE),
                                   torch.eye(2, dtype=DTYPE))
    assert model.mi > 15
    for n in (10, 100, 700):  # 700: two chunks of the N×N matrix
        x = model.data(n, seed=n)
        assert evaluate(model, x, generator=_gen(0)).mi <= math.log(n) + 1e-9
        z = model.encode(x).mu
        assert mutual_information(z, torch.full_like(z, -9.2), z) == pytest.approx(math.log(n), abs=1e-6)


def test_mutual_information_of_posteriors_that_ignore_x_is_zero() -> None:
    mu, logvar = torch.full((50, 3), 0.4, dtype=DTYPE), torch.full((50, 3), -0.5, dtype=DTYPE)
    z = reparameterize(mu, logvar, _gen(0))
    assert mutual_information(mu, logvar, z) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match="equal"):
        mutual_information(mu, logvar, z[:, :2])


def test_a_decoder_that_ignores_z_collapses_the_posterior(digits) -> None:
    """Posterior collapse made certain: the decoder sees zeros instead of z, so only the KL acts on
    the encoder. It starts informative (its mean head scaled up: 8 active units, MI ≈ 0.34 nats);
    two epochs later no unit is active and MI ≈ 0 (measured 0.011 nats, rate 0.009). Counting
    units by the spread of sampled z instead of E_q[z] would still count all 8."""
    from torch import nn

    from tests.trainables.small_vae import one_epoch, small_vae

    class IgnoresZ(nn.Module):
        def __init__(self, inner: nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, z: torch.Tensor) -> torch.Tensor:
            return self.inner(torch.zeros_like(z))

    model = small_vae(digits, latent_dim=8)
    with torch.no_grad():
        model.encoder.head.weight[:8] *= 10.0  # the mean half of the (mu, logvar) head
    model.decoder = IgnoresZ(model.decoder)
    model.eval()
    start = evaluate(model, digits.val, generator=_gen(1))
    assert start.active_units == 8 and start.mi > 0.2
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    g = _gen(0)
    for epoch in range(2):
        one_epoch(model, opt, digits, step=epoch, generator=g)
    model.eval()
    collapsed = evaluate(model, digits.val, generator=_gen(1))
    assert collapsed.active_units == 0 and abs(collapsed.mi) < 0.03 and collapsed.rate < 0.03
    post = model.encode(digits.val)
    assert active_units(reparameterize(post.mu, post.logvar, _gen(2)).detach()) == 8
