"""Priors p(z) over the latent space.

Only the standard normal of Kingma & Welling 2014 for now; a mixture of Gaussians and
the VampPrior (Tomczak & Welling 2018) can register here behind the same interface:
``log_prob(z)``, ``sample(n)`` and ``kl(mu, logvar)`` per latent dimension.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from trainables.encoders import check_latent_dim
from trainables.gaussian import kl_to_std_normal, std_normal_log_prob
from trainables.registry import Plugin, PluginError, Registry


class StandardNormalPrior(nn.Module):
    """p(z) = N(0, I) in ``latent_dim`` dimensions."""

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = check_latent_dim(latent_dim)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # (..., D) -> (...)
        return std_normal_log_prob(z)

    def sample(
        self,
        n: int,
        device: torch.device | str = "cpu",
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:  # (n, D)
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n=}")
        return torch.randn((n, self.latent_dim), generator=generator, device=device)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Analytic KL(N(mu, exp(logvar)) || N(0, 1)) per dimension: (B, D) -> (B, D)."""
        return kl_to_std_normal(mu, logvar)


PRIORS: Registry[Callable[[int], nn.Module]] = Registry("prior", {"standard_normal": StandardNormalPrior})


def available_priors() -> list[str]:
    return PRIORS.names()


def build_prior(name: str | Plugin, latent_dim: int) -> nn.Module:
    """Build prior ``name`` (a registered name, or a plug-in built as ``Class(latent_dim=, **kwargs)``
    with the methods of :class:`StandardNormalPrior`: ``log_prob``, ``sample``, ``kl``)."""
    if not isinstance(name, Plugin):
        return PRIORS.get(name)(latent_dim)
    prior = name.build("prior", latent_dim=check_latent_dim(latent_dim))
    missing = [m for m in ("log_prob", "sample", "kl") if not callable(getattr(prior, m, None))]
    if not isinstance(prior, nn.Module) or missing:
        raise PluginError(f"{name.describe('prior')}: must build a torch.nn.Module with log_prob, sample and kl; "
                          f"got a {type(prior).__name__}" + (f" without {missing}" if missing else ""))
    return prior
