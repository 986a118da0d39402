"""The variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

VAE = encoder q(z|x) + decoder + likelihood p(x|z) + prior p(z), each chosen by name
from its registry, so a search trial is fully described by a ``VAEConfig`` (plain,
JSON-serialisable values that travel through Ray Tune, Optuna and MLflow). ``forward``
returns the pieces of the ELBO (log p(x|z) for one reparameterised z, the per-dimension
analytic KL); weighting them (beta, free bits, capacity) is ``objectives.py``'s job.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainables.decoders import available_decoders, build_decoder
from trainables.encoders import (
    Posterior,
    available_encoders,
    build_encoder,
    check_latent_dim,
    check_shape,
    check_width,
)
from trainables.gaussian import reparameterize
from trainables.likelihoods import Likelihood, available_likelihoods, build_likelihood, check_sigma
from trainables.priors import available_priors, build_prior


def _check_name(kind: str, name: str, valid: list[str]) -> None:
    if name not in valid:
        raise ValueError(f"unknown {kind} {name!r}; valid names: {valid}")


@dataclass(frozen=True)
class VAEConfig:
    shape: tuple[int, int, int]  # (C, H, W) of one image
    latent_dim: int
    encoder: str = "conv"
    decoder: str = "mlp_small"
    likelihood: str = "bernoulli"
    sigma: float = 0.1  # Gaussian likelihood only
    sigma_mode: str = "fixed"  # Gaussian likelihood only: fixed | learned | optimal
    prior: str = "standard_normal"
    width: float = 1.0  # scales every hidden width / channel count

    def __post_init__(self) -> None:
        # Normalise what JSON/YAML hand over (a list for the shape, numpy ints) so that two
        # equal configs compare and hash equal; frozen, hence object.__setattr__.
        object.__setattr__(self, "shape", check_shape(self.shape))
        object.__setattr__(self, "latent_dim", check_latent_dim(self.latent_dim))
        object.__setattr__(self, "width", check_width(self.width))
        # Validated for every likelihood (a typo is a typo), although only gaussian uses them.
        check_sigma(self.sigma, self.sigma_mode)
        object.__setattr__(self, "sigma", float(self.sigma))
        _check_name("encoder", self.encoder, available_encoders())
        _check_name("decoder", self.decoder, available_decoders())
        _check_name("likelihood", self.likelihood, available_likelihoods())
        _check_name("prior", self.prior, available_priors())

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)  # JSON has no tuples
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VAEConfig:
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown VAEConfig keys {unknown}; valid keys: {fields}")
        required = [f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING]
        missing = [name for name in required if name not in d]
        if missing:
            raise ValueError(f"VAEConfig is missing required keys {missing}; got keys {sorted(d)}")
        return cls(**d)  # __post_init__ turns the JSON list back into a shape tuple


@dataclass
class VAEOutput:
    params: torch.Tensor  # (B, C, H, W) decoder output for the sampled z
    mu: torch.Tensor  # (B, D)
    logvar: torch.Tensor  # (B, D)
    z: torch.Tensor  # (B, D)
    log_px_z: torch.Tensor  # (B,) log p(x | z), summed over pixels
    kl_per_dim: torch.Tensor  # (B, D) analytic KL(q(z|x) || p(z)) per latent dimension


class VAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder, config.shape, config.latent_dim, config.width)
        self.decoder = build_decoder(config.decoder, config.shape, config.latent_dim, config.width)
        self.likelihood: Likelihood = build_likelihood(
            config.likelihood, config.shape, sigma=config.sigma, sigma_mode=config.sigma_mode
        )
        self.prior = build_prior(config.prior, config.latent_dim)

    def encode(self, x: torch.Tensor) -> Posterior:  # (B, C, H, W) -> Posterior of (B, D)
        if tuple(x.shape[1:]) != self.config.shape:
            raise ValueError(
                f"x must have shape (B, *{self.config.shape}), got x.shape={tuple(x.shape)}"
            )
        return self.encoder(x)

    def decode(self, z: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C, H, W) params
        return self.decoder(z)

    def log_px_given_z(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """log p(x | z): (B, C, H, W), (B, D) -> (B,)."""
        return self.likelihood.log_prob(x, self.decode(z))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> VAEOutput:
        posterior = self.encode(x)
        z = reparameterize(posterior.mu, posterior.logvar, generator)  # (B, D)
        params = self.decode(z)  # (B, C, H, W)
        return VAEOutput(
            params=params,
            mu=posterior.mu,
            logvar=posterior.logvar,
            z=z,
            log_px_z=self.likelihood.log_prob(x, params),
            kl_per_dim=self.prior.kl(posterior.mu, posterior.logvar),
        )

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Mean image of p(x | z = E_q[z]): (B, C, H, W) -> (B, C, H, W) in [0, 1].

        Runs in the module's current mode: call ``.eval()`` first so BatchNorm layers use
        (and do not update) their running statistics.
        """
        return self.likelihood.mean(self.decode(self.encode(x).mu))

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Mean images of p(x | z) for n prior samples z: -> (n, C, H, W) in [0, 1].

        Like ``reconstruct``, call ``.eval()`` first when the decoder has BatchNorm.
        """
        device = next(self.parameters()).device
        z = self.prior.sample(n, device=device, generator=generator)  # (n, D)
        return self.likelihood.mean(self.decode(z))


def build_vae(config: VAEConfig) -> VAE:
    return VAE(config)
