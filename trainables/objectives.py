"""ELBO terms, the β-weighted training loss, the importance-weighted bound and the training
objectives by name.

Implements the ELBO of Kingma & Welling 2014, the β-VAE loss of Higgins et al. 2017, the
controlled-capacity loss of Burgess et al. 2018, free bits (Kingma et al. 2016) and the
importance-weighted bound of Burda et al. 2015 ("Importance Weighted Autoencoders").

The training objectives (``OBJECTIVES``, chosen by ``train.objective``):

- ``elbo``: the β_t-weighted ELBO with the schedules, free bits and capacity (:func:`vae_loss`).
- ``iwae``: −log (1/k) Σ_i w_i^β with log w_i^β = log p(x|z_i) + β_t (log p(z_i) − log q(z_i|x)),
  z_i ~ q(z|x), all k·B decoder rows in one call. β_t = 1 is exactly the IWAE objective of Burda
  et al.; β_t tempers the rate inside every importance weight, so the β schedules (warm-ups,
  cyclical) keep their meaning, and at k = 1 it is the β-VAE loss with the Monte Carlo rate.
  Free bits and the capacity objective act on the batch-mean rate, which the IWAE bound has no
  place for: they are refused with it (``trainables.spec.TrialSpec.check``).

Conventions (DESIGN.md "Metric conventions"): nats per example, summed over the dimensions of
x and z, averaged over the batch.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch

from trainables.gaussian import Posterior, diag_gaussian_log_prob, reparameterize
from trainables.model_protocol import VAEModel
from trainables.registry import Registry
from trainables.schedules import KLWeight, free_bits_rate

__all__ = ["OBJECTIVES", "ImportanceTerms", "LossTerms", "elbo_objective", "importance_terms", "iwae_bound",
           "iwae_objective", "log_importance_weights", "objective_parameters", "vae_loss"]


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


@dataclass
class ImportanceTerms:
    """The pieces of k importance weights per example, each (K, B), z_k ~ q(z|x)."""

    log_px_z: torch.Tensor  # log p(x | z_k)
    log_pz: torch.Tensor  # log p(z_k)
    log_qz: torch.Tensor  # log q(z_k | x)

    def log_weights(self, beta: float = 1.0) -> torch.Tensor:
        """log w_k = log p(x|z_k) + β (log p(z_k) − log q(z_k|x)); β = 1: the plain weights. (K, B)."""
        return self.log_px_z + beta * (self.log_pz - self.log_qz)


def importance_terms(
    model: VAEModel,
    x: torch.Tensor,
    n_samples: int,
    posterior: Posterior | None = None,
    generator: torch.Generator | None = None,
) -> ImportanceTerms:
    """log p(x|z_k), log p(z_k) and log q(z_k|x) for z_k ~ q(z|x), k = 1..K: each (K, B).

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
    return ImportanceTerms(log_px_z=log_px_z.reshape(n_samples, batch), log_pz=log_pz, log_qz=log_q)


def log_importance_weights(
    model: VAEModel,
    x: torch.Tensor,
    n_samples: int,
    posterior: Posterior | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """log w_k = log p(x|z_k) + log p(z_k) − log q(z_k|x), z_k ~ q(z|x). Returns (K, B).

    See :func:`importance_terms` (one batched decoder call; differentiable)."""
    return importance_terms(model, x, n_samples, posterior=posterior, generator=generator).log_weights()


# --- the training objectives by name ----------------------------------------------------------


def elbo_objective(model: VAEModel, x: torch.Tensor, weight: KLWeight, *, free_bits: float = 0.0) -> LossTerms:
    """The β_t-weighted ELBO of one minibatch (one reparameterised z per example)."""
    out = model(x)
    return vae_loss(out.log_px_z, out.kl_per_dim, weight, free_bits=free_bits)


def iwae_objective(model: VAEModel, x: torch.Tensor, weight: KLWeight, *, free_bits: float = 0.0,
                   k: int = 5) -> LossTerms:
    """−mean_b log (1/k) Σ_i w_i^β (module docstring). ``distortion`` and ``rate`` are the ELBO's
    pieces averaged over the k samples (comparable with the ELBO objective's)."""
    if free_bits > 0 or weight.capacity is not None:
        raise ValueError("the iwae objective has no free bits or capacity (they act on the batch-mean rate); "
                         f"got free_bits={free_bits}, capacity={weight.capacity}")
    terms = importance_terms(model, x, k)
    loss = -iwae_bound(terms.log_weights(weight.beta)).mean()
    rate_per_example = (terms.log_qz - terms.log_pz).mean(0)  # (B,) Monte Carlo over the k samples
    return LossTerms(loss=loss, distortion=-terms.log_px_z.mean(), rate=rate_per_example.mean(),
                     kl_batch=rate_per_example.unsqueeze(1))


OBJECTIVES: Registry[Callable[..., LossTerms]] = Registry("objective", {"elbo": elbo_objective, "iwae": iwae_objective})

_COMMON = frozenset({"model", "x", "weight", "free_bits"})
#: Each objective's own parameters and their defaults (``iwae``: ``k``), declared once by the signatures.
OBJECTIVE_PARAMETERS: Registry[Mapping[str, Any]] = Registry("objective", {
    name: MappingProxyType({p.name: p.default for p in inspect.signature(f).parameters.values() if p.name not in _COMMON})
    for name, f in OBJECTIVES.items()
})


def objective_parameters(name: str) -> dict[str, Any]:
    return dict(OBJECTIVE_PARAMETERS.get(name))
