"""Diagonal-Gaussian helpers shared by priors, objectives and metrics.

Kingma & Welling 2014 (the reparameterisation trick and the analytic KL to N(0, I)).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

LOG_2PI = math.log(2.0 * math.pi)


@dataclass
class Posterior:
    """q(z|x) = N(mu, diag(exp(logvar))): what every encoder returns."""

    mu: torch.Tensor  # (B, D)
    logvar: torch.Tensor  # (B, D)


def reparameterize(
    mu: torch.Tensor, logvar: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """z = mu + sigma * eps, eps ~ N(0, I). Shapes (..., D) -> (..., D)."""
    if generator is None:
        eps = torch.randn_like(mu)
    else:
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
    return mu + torch.exp(0.5 * logvar) * eps


def diag_gaussian_log_prob(z: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log N(z; mu, diag(exp(logvar))), summed over the last dim. (..., D) -> (...)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * torch.exp(-logvar)).sum(-1)


def std_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I), summed over the last dim. (..., D) -> (...)."""
    return -0.5 * (LOG_2PI + z**2).sum(-1)


def kl_to_std_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """Per-dimension KL(N(mu, exp(logvar)) || N(0, 1)) = -1/2 (1 + logvar - mu^2 - exp(logvar)).

    (B, D) -> (B, D); sum over D for the rate.
    """
    return -0.5 * (1.0 + logvar - mu**2 - torch.exp(logvar))
