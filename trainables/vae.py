"""The variational autoencoder (Kingma & Welling 2014, "Auto-Encoding Variational Bayes").

VAE = encoder q(z|x) + decoder + likelihood p(x|z) + prior p(z), each chosen by name
from its registry, so a search trial is fully described by a ``VAEConfig`` (plain,
JSON-serialisable values that travel through Ray Tune, Optuna and MLflow). ``forward``
returns the pieces of the ELBO (log p(x|z) for one reparameterised z, the prior's rate terms:
the analytic KL per latent dimension for N(0, I), the single-sample Monte Carlo estimate
log q(z|x) − log p(z) for the mixture priors, ``trainables.priors``); weighting them (beta, free
bits, capacity) is ``objectives.py``'s job.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainables.beta_conditioning import BetaConditioning
from trainables.decoders import DECODERS, build_decoder
from trainables.encoders import ENCODERS, build_encoder, check_latent_dim, check_shape, check_width
from trainables.gaussian import Posterior, reparameterize
from trainables.likelihoods import LIKELIHOODS, Likelihood, build_likelihood, check_sigma
from trainables.priors import PRIORS, Prior, build_prior, prior_parameters
from trainables.registry import Plugin


def _label(ref: str | Plugin) -> str:
    return ref.label if isinstance(ref, Plugin) else ref


@dataclass(frozen=True)
class ModelSpec:
    """The model of a trial, by registry names (or plug-ins by import path: encoder, decoder, prior)
    and sizes; the image shape comes with the data."""

    latent_dim: int = 16
    encoder: str | Plugin = "conv"
    decoder: str | Plugin = "mlp_small"
    likelihood: str = "bernoulli"
    sigma: float = 0.1  # Gaussian likelihood only
    sigma_mode: str = "fixed"  # Gaussian likelihood only: fixed | learned | optimal
    prior: str | Plugin = "standard_normal"
    width: float = 1.0  # scales every hidden width / channel count
    prior_params: dict[str, Any] = dataclasses.field(default_factory=dict)  # the prior's own (trainables.priors)
    # Set: one model for a β range, conditioned on log β (trainables.beta_conditioned); None: a plain VAE.
    beta_conditioned: BetaConditioning | None = None

    def __post_init__(self) -> None:
        # Normalise what JSON/YAML hand over (numpy ints, ints for floats) so that two equal
        # specs compare and hash equal; frozen, hence object.__setattr__.
        object.__setattr__(self, "latent_dim", check_latent_dim(self.latent_dim))
        object.__setattr__(self, "width", check_width(self.width))
        # Validated for every likelihood (a typo is a typo), although only gaussian uses them.
        check_sigma(self.sigma, self.sigma_mode)
        object.__setattr__(self, "sigma", float(self.sigma))
        for key in ("encoder", "decoder", "prior"):  # a plug-in read back from JSON is a mapping
            object.__setattr__(self, key, Plugin.of(getattr(self, key)))
        for registry, name in ((ENCODERS, self.encoder), (DECODERS, self.decoder), (PRIORS, self.prior)):
            registry.check_ref(name)
        LIKELIHOODS.check(self.likelihood)
        object.__setattr__(self, "prior_params", dict(self.prior_params))
        object.__setattr__(self, "beta_conditioned", BetaConditioning.of(self.beta_conditioned))
        unknown = sorted(set(self.prior_params) - set(prior_parameters(self.prior)))
        if unknown:
            raise ValueError(f"prior {_label(self.prior)!r} has no parameter(s) {unknown}; "
                             f"allowed: {sorted(prior_parameters(self.prior))}")

    def __hash__(self) -> int:  # prior_params is a dict: hash its sorted items
        return hash(tuple((f.name, tuple(sorted(v.items())) if isinstance(v := getattr(self, f.name), dict) else v)
                          for f in dataclasses.fields(self)))

    def plugins(self) -> list[Plugin]:
        """The plug-ins among this model's components."""
        return [ref for ref in (self.encoder, self.decoder, self.prior) if isinstance(ref, Plugin)]

    def vae_config(self, shape: Sequence[int]) -> VAEConfig:
        """This model for images of ``shape`` (C, H, W)."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(ModelSpec)}
        return VAEConfig(shape=tuple(shape), **fields)


@dataclass(frozen=True, kw_only=True)
class VAEConfig(ModelSpec):
    """A :class:`ModelSpec` with its image shape: everything needed to rebuild a VAE (checkpoints
    store it as ``vae_config.json``)."""

    shape: tuple[int, int, int]  # (C, H, W) of one image

    __hash__ = ModelSpec.__hash__

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", check_shape(self.shape))
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["shape"] = list(self.shape)  # JSON has no tuples
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> VAEConfig:
        """A persisted config: every field must be there (a missing one is a truncated file)."""
        fields = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ValueError(f"unknown VAEConfig keys {unknown}; valid keys: {fields}")
        d = {"prior_params": {}, "beta_conditioned": None, **d}  # added after the first checkpoints were written
        missing = [name for name in fields if name not in d]
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
    # The rate terms, summing over dim 1 to KL(q(z|x) || p(z)) per example: (B, D), the analytic KL
    # per latent dimension (N(0, I)), or (B, 1), one Monte Carlo estimate (mixture priors).
    kl_per_dim: torch.Tensor


class VAE(nn.Module):
    def __init__(self, config: VAEConfig) -> None:
        super().__init__()
        self.config = config
        self.encoder = build_encoder(config.encoder, config.shape, config.latent_dim, config.width)
        self.decoder = build_decoder(config.decoder, config.shape, config.latent_dim, config.width)
        self.likelihood: Likelihood = build_likelihood(
            config.likelihood, config.shape, sigma=config.sigma, sigma_mode=config.sigma_mode
        )
        self.prior: Prior = build_prior(config.prior, config.latent_dim, shape=config.shape, encoder=self.encoder,
                                        params=config.prior_params)

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
        return elbo_pieces(x, self.encode(x), self.decoder, self.likelihood, self.prior, generator)

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


def elbo_pieces(
    x: torch.Tensor, posterior: Posterior, decoder: Callable[[torch.Tensor], torch.Tensor], likelihood: Likelihood,
    prior: Prior,
    generator: torch.Generator | None = None,
) -> VAEOutput:
    """The single-sample ELBO pieces of ``decoder`` on x (B, C, H, W) for one reparameterised z
    from ``posterior``: what a VAE's forward returns (also each head of the shared-encoder model)."""
    z = reparameterize(posterior.mu, posterior.logvar, generator)  # (B, D)
    params = decoder(z)  # (B, C, H, W)
    return VAEOutput(
        params=params,
        mu=posterior.mu,
        logvar=posterior.logvar,
        z=z,
        log_px_z=likelihood.log_prob(x, params),  # (B,)
        kl_per_dim=prior.rate(posterior, z),  # (B, D) or (B, 1)
    )


def build_vae(config: VAEConfig) -> VAE:
    """The VAE of ``config``: a :class:`~trainables.beta_conditioned.BetaConditionedVAE` when
    ``config.beta_conditioned`` is set."""
    if config.beta_conditioned is not None:
        from trainables.beta_conditioned import BetaConditionedVAE  # it subclasses VAE: imported here

        return BetaConditionedVAE(config)
    return VAE(config)
