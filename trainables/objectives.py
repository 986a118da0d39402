"""ELBO terms, the β-weighted training loss and the importance-weighted bound.

Implements the ELBO of Kingma & Welling 2014, the β-VAE loss of Higgins et al. 2017, the
controlled-capacity loss of Burgess et al. 2018, free bits (Kingma et al. 2016) and the
importance-weighted bound of Burda et al. 2015 ("Importance Weighted Autoencoders").

Conventions (DESIGN.md "Metric conventions"): nats per example, summed over the dimensions of
x and z, averaged over the batch.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from trainables.gaussian import Posterior, diag_gaussian_log_prob, reparameterize
from trainables.model_protocol import VAEModel
from trainables.schedules import KLWeight, free_bits_rate

__all__ = ["LossTerms", "iwae_bound", "log_importance_weights", "vae_loss"]


@dataclass
class LossTerms:
    """One minibatch's objective and the ELBO pieces it was built from."""

    loss: torch.Tensor  # scalar, differentiable: the training objective
    distortion: torch.Tensor  # scalar: batch mean of −log p(x|z)
    rate: torch.Tensor  # scalar: batch mean of Σ_j KL_j, without free bits
    kl_batch: torch.Tensor  # (B, D) the per-example, per-dimension KL the terms were built from

    @property
    def kl_per_dim(self) -> torch.Tensor:
        """(D,) batch mean of KL per latent dimension, detached. Computed on demand: the
        training loop does not need it, so it costs no kernel per step."""
        return self.kl_batch.detach().mean(dim=0)


def vae_loss(
    log_px_z: torch.Tensor,
    kl_per_dim: torch.Tensor,
    weight: KLWeight,
    free_bits: float = 0.0,
) -> LossTerms:
    """distortion + β·rate′, or distortion + β·|rate′ − C_t| when ``weight.capacity`` is set.

    rate′ is the free-bits rate when ``free_bits`` > 0, else the plain rate. ``rate`` in the
    result is always the plain rate so that logged numbers are comparable across configs.
    log_px_z: (B,), kl_per_dim: (B, D).
    """
    if log_px_z.ndim != 1 or kl_per_dim.ndim != 2 or kl_per_dim.shape[0] != log_px_z.shape[0]:
        raise ValueError(
            "expected log_px_z (B,) and kl_per_dim (B, D), got "
            f"{tuple(log_px_z.shape)=} and {tuple(kl_per_dim.shape)=}"
        )
    if not math.isfinite(free_bits) or free_bits < 0:
        raise ValueError(f"free_bits must be finite and >= 0 nats, got {free_bits=}")

    distortion = -log_px_z.mean()
    rate = kl_per_dim.sum(dim=1).mean()
    penalised_rate = free_bits_rate(kl_per_dim, free_bits) if free_bits > 0 else rate
    if weight.capacity is None:
        loss = distortion + weight.beta * penalised_rate
    else:
        # |R − C| pulls the rate towards the target capacity from both sides (Burgess 2018).
        loss = distortion + weight.beta * (penalised_rate - weight.capacity).abs()
    return LossTerms(
        loss=loss,
        distortion=distortion,
        rate=rate,
        kl_batch=kl_per_dim,
    )


def iwae_bound(log_w: torch.Tensor) -> torch.Tensor:
    """log (1/K) Σ_k w_k = logsumexp_k log w_k − log K (Burda et al. 2015). (K, B) -> (B,)."""
    if log_w.ndim != 2 or log_w.shape[0] < 1:
        raise ValueError(f"log_w must be (K, B) with K >= 1, got shape {tuple(log_w.shape)}")
    return torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0])


def log_importance_weights(
    model: VAEModel,
    x: torch.Tensor,
    n_samples: int,
    posterior: Posterior | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x), z_k ~ q(z|x). Returns (K, B).

    All K·B decoder evaluations go through a single ``log_px_given_z`` call (x tiled to
    (K·B, ...)), which is what makes k = 5000 affordable. Pass ``posterior`` (the output of
    ``model.encode(x)``) to avoid re-encoding when this is called chunk after chunk.
    The samples are reparameterised, so the result is differentiable for IWAE training.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples=}")
    if posterior is None:
        posterior = model.encode(x)
    mu, logvar = posterior.mu, posterior.logvar  # (B, D)
    batch, latent = mu.shape
    if x.shape[0] != batch:
        raise ValueError(f"x and the posterior disagree on batch size, got {x.shape[0]=}, {batch=}")

    shape = (n_samples, batch, latent)
    z = reparameterize(mu.expand(shape), logvar.expand(shape), generator=generator)  # (K, B, D)
    log_q = diag_gaussian_log_prob(z, mu, logvar)  # (K, B)
    log_pz = model.prior.log_prob(z)  # (K, B)

    # Row k·B + b of the flattened tensors is sample k of example b, for x and z alike.
    x_tiled = x.unsqueeze(0).expand(n_samples, *x.shape).reshape(n_samples * batch, *x.shape[1:])
    log_px_z = model.log_px_given_z(x_tiled, z.reshape(n_samples * batch, latent))  # (K·B,)
    return log_px_z.reshape(n_samples, batch) + log_pz - log_q
