"""What metrics and objectives need from a VAE, as typing protocols (no implementation here).

``trainables.vae.VAE`` satisfies :class:`VAEModel`; so do the small closed-form models of the
tests (a linear-Gaussian VAE whose log p(x) is known exactly), which is why the metrics and the
importance-weighted bound are written against this protocol rather than against ``VAE``.
"""
from __future__ import annotations

from typing import Protocol

import torch

from trainables.gaussian import Posterior


class ELBOPieces(Protocol):
    """The single-sample ELBO pieces returned by ``model(x)``."""

    @property
    def log_px_z(self) -> torch.Tensor: ...  # (B,)

    @property
    def kl_per_dim(self) -> torch.Tensor: ...  # (B, D), or (B, 1) for a Monte Carlo rate: sums to the rate


class Prior(Protocol):
    def log_prob(self, z: torch.Tensor) -> torch.Tensor: ...  # (..., D) -> (...)


class VAEModel(Protocol):
    """An encoder q(z|x), a decoder likelihood p(x|z) and a prior p(z)."""

    @property
    def prior(self) -> Prior: ...

    def encode(self, x: torch.Tensor) -> Posterior: ...  # x (B, ...) -> mu, logvar (B, D)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor: ...  # -> (B,)

    def __call__(self, x: torch.Tensor) -> ELBOPieces: ...
