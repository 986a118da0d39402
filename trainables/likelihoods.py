"""Decoder likelihoods p(x|z) over images: Bernoulli and Gaussian with fixed, learned or
optimal sigma.

- Bernoulli (Kingma & Welling 2014): log p = -BCE-with-logits summed over pixels. For
  grey levels x in [0, 1] it is the continuous cross-entropy (not a normalised density,
  but the standard MNIST objective).
- Gaussian, mean = sigmoid(params), with sigma chosen by ``sigma_mode`` (Rybkin, Daniilidis
  & Levine 2021, "Simple and Effective VAE Training with Calibrated Decoders", the
  "sigma-VAE", and seed 004): a constant sigma silently acts like a beta on the KL, so
  sigma is either ``fixed`` (the classic choice), ``learned`` (one log sigma per channel)
  or ``optimal``: the analytic maximiser sigma*^2 = MSE over the batch, with no gradient
  through sigma.

Every ``log_prob`` sums over the trailing (C, H, W) dims: (..., C, H, W) -> (...).
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from trainables.encoders import check_shape, soft_clamp
from trainables.gaussian import LOG_2PI
from trainables.registry import Registry

_PIXEL_DIMS = (-3, -2, -1)

# sigma-VAE softly limits log sigma to >= -6 for stable training (a sigma that shrinks
# towards 0 sends log p to +inf on a perfectly reconstructed pixel). Pixels live in
# [0, 1], so the MSE, hence the optimal sigma, is at most 1; e^2 leaves room above that.
LOG_SIGMA_MIN = -6.0
LOG_SIGMA_MAX = 2.0


class Likelihood(nn.Module):
    """p(x | decoder params): per-pixel parameters (B, C, H, W) are unconstrained."""

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) x2 -> (B,), summed over pixels."""
        raise NotImplementedError

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, C, H, W) in [0, 1]."""
        raise NotImplementedError

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """(B, C, H, W) -> one sample x ~ p(x | params), (B, C, H, W)."""
        raise NotImplementedError


class BernoulliLikelihood(Likelihood):
    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        # The logits form is stable where log(sigmoid(.)) would underflow to -inf.
        bce = F.binary_cross_entropy_with_logits(params, x, reduction="none")
        return -bce.sum(dim=_PIXEL_DIMS)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        return torch.bernoulli(torch.sigmoid(params), generator=generator)


class GaussianLikelihood(Likelihood):
    """N(x; sigmoid(params), sigma^2) per pixel; subclasses decide sigma."""

    def log_sigma(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        """log sigma used for (x, mean), broadcastable to (..., C, H, W)."""
        raise NotImplementedError

    def current_log_sigma(self) -> torch.Tensor:
        """log sigma without data (for sampling and reporting), broadcastable to (C, H, W)."""
        raise NotImplementedError

    def log_prob(self, x: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
        mean = self.mean(params)
        log_sigma = self.log_sigma(x, mean)
        z = (x - mean) * torch.exp(-log_sigma)
        return (-0.5 * LOG_2PI - log_sigma - 0.5 * z**2).sum(dim=_PIXEL_DIMS)

    def mean(self, params: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(params)

    def sample(
        self, params: torch.Tensor, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        # Not clipped to [0, 1]: this is a sample of the model's density as defined.
        mean = self.mean(params)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        return mean + torch.exp(self.current_log_sigma()) * noise


class FixedSigmaGaussian(GaussianLikelihood):
    def __init__(self, shape: tuple[int, int, int], sigma: float) -> None:
        super().__init__()
        # A buffer, not a float attribute, so it follows .to(device) and the state_dict.
        self.register_buffer("log_sigma_value", torch.tensor(math.log(sigma)))

    def log_sigma(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return self.log_sigma_value

    def current_log_sigma(self) -> torch.Tensor:
        return self.log_sigma_value


class LearnedSigmaGaussian(GaussianLikelihood):
    """One learnable log sigma per channel, shared by all pixels of that channel."""

    def __init__(self, shape: tuple[int, int, int], sigma: float) -> None:
        super().__init__()
        self.raw_log_sigma = nn.Parameter(torch.full((shape[0], 1, 1), math.log(sigma)))

    def log_sigma(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        return self.current_log_sigma()

    def current_log_sigma(self) -> torch.Tensor:  # (C, 1, 1)
        # Soft, not hard, clamp: a hard clamp gives zero gradient outside the range and the
        # parameter could never come back. It bends the value near the bounds (at the init
        # sigma = 0.1 the effective sigma is ~0.101); log p, sample and reports all use it.
        return soft_clamp(self.raw_log_sigma, LOG_SIGMA_MIN, LOG_SIGMA_MAX)


class OptimalSigmaGaussian(GaussianLikelihood):
    """sigma*^2 = mean squared error over the whole batch (the maximiser of the summed log p).

    sigma is detached: by the envelope theorem d(log p)/d(sigma) = 0 at the optimum, so the
    gradient w.r.t. the mean is the same either way; detaching saves the extra graph.
    The last sigma* is kept in a buffer so ``sample`` (which has no data) can use it.
    """

    def __init__(self, shape: tuple[int, int, int], sigma: float) -> None:
        super().__init__()
        self.register_buffer("last_log_sigma", torch.tensor(math.log(sigma)))

    def log_sigma(self, x: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            mse = ((x - mean) ** 2).mean()
            # clamp also maps log(0) = -inf (a perfect batch) to the floor
            log_sigma = (0.5 * torch.log(mse)).clamp(LOG_SIGMA_MIN, LOG_SIGMA_MAX)
            self.last_log_sigma.copy_(log_sigma)
        return log_sigma

    def current_log_sigma(self) -> torch.Tensor:
        return self.last_log_sigma


_SIGMA_MODES: dict[str, type[GaussianLikelihood]] = {
    "fixed": FixedSigmaGaussian,
    "learned": LearnedSigmaGaussian,
    "optimal": OptimalSigmaGaussian,
}
SIGMA_MODES: tuple[str, ...] = tuple(_SIGMA_MODES)


def check_sigma(sigma: float, sigma_mode: str) -> None:
    """Validate the Gaussian options (also used by ``VAEConfig``)."""
    if (
        isinstance(sigma, bool)
        or not isinstance(sigma, numbers.Real)
        or not 0 < sigma < math.inf  # also rejects NaN
    ):
        raise ValueError(f"sigma must be a finite number > 0, got {sigma=}")
    if sigma_mode not in _SIGMA_MODES:
        raise ValueError(f"sigma_mode must be one of {list(SIGMA_MODES)}, got {sigma_mode=}")


def _bernoulli(shape: tuple[int, int, int], sigma: float, sigma_mode: str) -> Likelihood:
    return BernoulliLikelihood()  # sigma options do not apply to a Bernoulli


def _gaussian(shape: tuple[int, int, int], sigma: float, sigma_mode: str) -> Likelihood:
    check_sigma(sigma, sigma_mode)
    return _SIGMA_MODES[sigma_mode](shape, float(sigma))


LIKELIHOODS: Registry[Callable[[tuple[int, int, int], float, str], Likelihood]] = Registry(
    "likelihood", {"bernoulli": _bernoulli, "gaussian": _gaussian}
)


def available_likelihoods() -> list[str]:
    return LIKELIHOODS.names()


def build_likelihood(
    name: str, shape: tuple[int, int, int], *, sigma: float = 0.1, sigma_mode: str = "fixed"
) -> Likelihood:
    """Build likelihood ``name`` for images of ``shape``; sigma options apply to gaussian only."""
    return LIKELIHOODS.get(name)(check_shape(shape), sigma, sigma_mode)
