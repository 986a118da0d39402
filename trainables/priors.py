"""Priors p(z) over the latent space: N(0, I), a mixture of Gaussians, and the VampPrior.

- ``standard_normal``: N(0, I) (Kingma & Welling 2014); its KL to a diagonal-Gaussian q(z|x) is
  analytic and splits over latent dimensions (what free bits act on).
- ``mog``: a mixture of K learnable diagonal Gaussians with learnable mixture weights.
- ``vampprior``: the variational mixture of posteriors of Tomczak & Welling 2018 ("VAE with a
  VampPrior"): p(z) = (1/K) Σ_k q(z | u_k), the K pseudo-inputs u_k a bias-free linear layer on
  one-hot inputs (a K×K identity) squashed to the data range [0, 1] (Hardtanh), passed through
  the VAE's *own* encoder. Initialised small and random (N(0.05, 0.01²), the reference code's
  MNIST setting) or from K random training images (:meth:`Prior.init_from_data`).

Every prior has ``log_prob(z)``, ``sample(n)`` and ``rate(posterior, z)``: the per-example rate
terms of the ELBO. For N(0, I) they are the analytic KL per latent dimension, (B, D); a mixture
has no closed-form KL, so its rate is the single-sample Monte Carlo estimate
log q(z|x) − log p(z) on the reparameterised z, one column (B, 1): it does not split over latent
dimensions, which is why per-dimension free bits are refused with these priors
(``trainables.spec.TrialSpec.check``). Mixture densities use ``logsumexp`` over components.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from trainables.encoders import check_latent_dim
from trainables.gaussian import Posterior, diag_gaussian_log_prob, kl_to_std_normal, std_normal_log_prob
from trainables.registry import Plugin, PluginError, Registry

#: Components of the mixture priors when the config does not say (Tomczak & Welling use 500 on
#: MNIST; pythae defaults to 50, which keeps a CPU trial's prior cheap: K encoder rows per step).
DEFAULT_COMPONENTS = 50
VAMP_INITS = ("random", "data")


@dataclass(frozen=True)
class PriorContext:
    """What a prior may need from the VAE it belongs to: the latent size, the image shape, and
    the encoder (the VampPrior's components are that encoder's posteriors)."""

    latent_dim: int
    shape: tuple[int, int, int]  # (C, H, W)
    encoder: nn.Module | None = None  # x (B, C, H, W) -> Posterior of (B, D)


class Prior(nn.Module):
    """The interface every prior implements; the hooks have no-op defaults."""

    latent_dim: int
    #: True when ``rate`` returns the analytic KL per latent dimension (B, D), which per-dimension
    #: free bits need; False when it returns the one-column Monte Carlo estimate (B, 1).
    per_dimension_kl: bool = False

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # (..., D) -> (...)
        raise NotImplementedError

    def sample(self, n: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:  # (n, D)
        raise NotImplementedError

    def rate(self, posterior: Posterior, z: torch.Tensor) -> torch.Tensor:
        """The rate terms of each example, summing to its rate: (B, 1) by default, the single-
        sample Monte Carlo estimate log q(z|x) − log p(z) at the reparameterised z (B, D)."""
        return (diag_gaussian_log_prob(z, posterior.mu, posterior.logvar) - self.log_prob(z)).unsqueeze(1)

    def init_from_data(self, images: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """Called once with the training images (N, C, H, W) before the first epoch."""

    def summary(self) -> dict[str, Any] | None:
        """A JSON-able description of the learnt prior for MLflow (None: nothing to log)."""
        return None


def _check_n(n: int) -> None:
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n=}")


def check_components(n_components: int) -> int:
    if isinstance(n_components, bool) or not isinstance(n_components, int) or n_components < 1:
        raise ValueError(f"n_components must be an int >= 1, got {n_components=}")
    return n_components


def mixture_log_prob(z: torch.Tensor, log_weights: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """log Σ_k π_k N(z; μ_k, diag(exp(logvar_k))) by logsumexp over k.

    z (..., D); log_weights (K,) normalised; mu, logvar (K, D). Returns (...).
    """
    per_component = diag_gaussian_log_prob(z.unsqueeze(-2), mu, logvar)  # (..., K)
    return torch.logsumexp(per_component + log_weights, dim=-1)


def sample_mixture(n: int, log_weights: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor,
                   generator: torch.Generator | None) -> torch.Tensor:
    """n draws of the mixture: a component per draw, then its Gaussian. -> (n, D)."""
    _check_n(n)
    k = torch.multinomial(log_weights.exp(), n, replacement=True, generator=generator) if n else \
        torch.zeros(0, dtype=torch.long, device=mu.device)
    eps = torch.randn((n, mu.shape[1]), generator=generator, device=mu.device, dtype=mu.dtype)
    return mu[k] + torch.exp(0.5 * logvar[k]) * eps


class StandardNormalPrior(Prior):
    """p(z) = N(0, I) in ``latent_dim`` dimensions."""

    per_dimension_kl = True

    def __init__(self, latent_dim: int) -> None:
        super().__init__()
        self.latent_dim = check_latent_dim(latent_dim)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:  # (..., D) -> (...)
        return std_normal_log_prob(z)

    def sample(self, n: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:  # (n, D)
        _check_n(n)
        return torch.randn((n, self.latent_dim), generator=generator, device=device)

    def kl(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        """Analytic KL(N(mu, exp(logvar)) || N(0, 1)) per dimension: (B, D) -> (B, D)."""
        return kl_to_std_normal(mu, logvar)

    def rate(self, posterior: Posterior, z: torch.Tensor) -> torch.Tensor:  # (B, D)
        return kl_to_std_normal(posterior.mu, posterior.logvar)


class MixtureOfGaussiansPrior(Prior):
    """p(z) = Σ_k π_k N(z; μ_k, diag σ_k²): K learnable components and mixture weights π = softmax(logits).

    Means start as N(0, I) draws (so the components are spread out like the standard normal's
    mass), variances at 1, weights uniform.
    """

    def __init__(self, latent_dim: int, n_components: int = 10) -> None:
        super().__init__()
        self.latent_dim = check_latent_dim(latent_dim)
        k = check_components(n_components)
        self.means = nn.Parameter(torch.randn(k, self.latent_dim))  # (K, D)
        self.logvars = nn.Parameter(torch.zeros(k, self.latent_dim))  # (K, D)
        self.logits = nn.Parameter(torch.zeros(k))  # (K,)

    def log_weights(self) -> torch.Tensor:  # (K,)
        return torch.log_softmax(self.logits, dim=0)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return mixture_log_prob(z, self.log_weights(), self.means, self.logvars)

    def sample(self, n: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            return sample_mixture(n, self.log_weights(), self.means, self.logvars, generator)

    def summary(self) -> dict[str, Any]:
        return {"prior": "mog", "weights": self.log_weights().exp().tolist(), "means": self.means.tolist(),
                "scales": torch.exp(0.5 * self.logvars).tolist()}


@contextmanager
def _batch_norm_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm layers of ``module`` on their running statistics (not updated) inside the block.

    The pseudo-inputs are not a batch of data: normalising them by their own statistics would make
    q(z|u_k) depend on the other pseudo-inputs, and feeding them to the running statistics would
    mix them into what the data is normalised by at evaluation. Gradients still flow."""
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training]
    for m in norms:
        m.train(False)
    try:
        yield
    finally:
        for m in norms:
            m.train(True)


class VampPrior(Prior):
    """p(z) = (1/K) Σ_k q(z | u_k) with learnable pseudo-inputs u_k (Tomczak & Welling 2018)."""

    def __init__(self, latent_dim: int, shape: tuple[int, int, int], encoder: nn.Module,
                 n_components: int = DEFAULT_COMPONENTS, init: str = "random") -> None:
        super().__init__()
        if init not in VAMP_INITS:
            raise ValueError(f"vampprior init must be one of {list(VAMP_INITS)}, got {init=}")
        self.latent_dim = check_latent_dim(latent_dim)
        self.shape = tuple(shape)
        self.n_components = check_components(n_components)
        self.init = init
        # The reference's "linear layer on a K×K identity": its weight column k is u_k before the squash.
        self.pseudo = nn.Linear(self.n_components, math.prod(self.shape), bias=False)  # weight (C·H·W, K)
        nn.init.normal_(self.pseudo.weight, mean=0.05, std=0.01)
        self.squash = nn.Hardtanh(0.0, 1.0)  # the data range of every dataset here
        # Not a submodule: the encoder belongs to the VAE (its weights are saved once, under "encoder.").
        object.__setattr__(self, "_encoder", encoder)

    def pseudo_inputs(self) -> torch.Tensor:  # (K, C, H, W) in [0, 1]
        one_hot = torch.eye(self.n_components, device=self.pseudo.weight.device, dtype=self.pseudo.weight.dtype)
        return self.squash(self.pseudo(one_hot)).view(self.n_components, *self.shape)

    def components(self) -> Posterior:
        """q(z | u_k) for every pseudo-input: mu, logvar (K, D)."""
        encoder: nn.Module = self._encoder  # type: ignore[assignment]
        with _batch_norm_frozen(encoder):
            return encoder(self.pseudo_inputs())

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        post = self.components()
        log_weights = torch.full((self.n_components,), -math.log(self.n_components), device=z.device, dtype=z.dtype)
        return mixture_log_prob(z, log_weights, post.mu, post.logvar)

    def sample(self, n: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        with torch.no_grad():
            post = self.components()
            log_weights = torch.full((self.n_components,), -math.log(self.n_components), device=post.mu.device)
            return sample_mixture(n, log_weights, post.mu, post.logvar, generator)

    def init_from_data(self, images: torch.Tensor, generator: torch.Generator | None = None) -> None:
        """``init: data``: u_k = K distinct random training images (the squash is the identity on [0, 1])."""
        if self.init != "data":
            return
        if images.shape[0] < self.n_components:
            raise ValueError(f"vampprior init 'data' needs n_components <= the training images, got "
                             f"n_components={self.n_components} with {images.shape[0]} images")
        pick = torch.randperm(images.shape[0], generator=generator)[: self.n_components].to(images.device)
        with torch.no_grad():
            self.pseudo.weight.copy_(images[pick].reshape(self.n_components, -1).T.to(self.pseudo.weight))

    def summary(self) -> dict[str, Any]:
        with torch.no_grad():
            post = self.components()
        return {"prior": "vampprior", "n_components": self.n_components, "init": self.init,
                "component_means": post.mu.tolist(), "component_scales": torch.exp(0.5 * post.logvar).tolist()}


def _standard_normal(ctx: PriorContext) -> Prior:
    return StandardNormalPrior(ctx.latent_dim)


def _mog(ctx: PriorContext, n_components: int = 10) -> Prior:
    return MixtureOfGaussiansPrior(ctx.latent_dim, n_components=n_components)


def _vampprior(ctx: PriorContext, n_components: int = DEFAULT_COMPONENTS, init: str = "random") -> Prior:
    if ctx.encoder is None:
        raise ValueError("the vampprior needs the VAE's encoder (its components are the encoder's posteriors)")
    return VampPrior(ctx.latent_dim, ctx.shape, ctx.encoder, n_components=n_components, init=init)


PRIORS: Registry[Callable[..., Prior]] = Registry(
    "prior", {"standard_normal": _standard_normal, "mog": _mog, "vampprior": _vampprior})

#: Each prior's own parameters and their defaults, read off the factories' signatures (its domain,
#: declared once: the config layer validates ``model.prior_params`` and the search space with it).
PRIOR_PARAMETERS: Registry[Mapping[str, Any]] = Registry("prior", {
    name: MappingProxyType({p.name: p.default for p in list(inspect.signature(f).parameters.values())[1:]})
    for name, f in PRIORS.items()
})


def available_priors() -> list[str]:
    return PRIORS.names()


def prior_parameters(name: str | Plugin) -> dict[str, Any]:
    """The prior's own parameters and their defaults (a plug-in's settings are its kwargs: none)."""
    return {} if isinstance(name, Plugin) else dict(PRIOR_PARAMETERS.get(name))


#: The priors whose rate is the analytic KL per latent dimension (``Prior.per_dimension_kl``).
_PER_DIMENSION_KL = frozenset({"standard_normal"})


def per_dimension_kl(name: str | Plugin) -> bool:
    """Whether the prior's rate is the analytic KL per latent dimension (per-dimension free bits need
    it). A plug-in prior's rate is not known to be: free bits are refused with it."""
    return not isinstance(name, Plugin) and PRIORS.check(name) in _PER_DIMENSION_KL


class PluginPrior(Prior):
    """A user's prior (``docs/plugins.md``), built as ``Class(latent_dim=, **kwargs)``, with
    ``log_prob(z)`` and ``sample(n, device=, generator=)``; its rate is ``kl(mu, logvar)`` (B, D)
    when it has one, else the Monte Carlo estimate log q(z|x) − log p(z)."""

    def __init__(self, inner: nn.Module, latent_dim: int) -> None:
        super().__init__()
        self.inner, self.latent_dim = inner, latent_dim

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        return self.inner.log_prob(z)

    def sample(self, n: int, device: torch.device | str = "cpu",
               generator: torch.Generator | None = None) -> torch.Tensor:
        return self.inner.sample(n, device=device, generator=generator)

    def rate(self, posterior: Posterior, z: torch.Tensor) -> torch.Tensor:
        if callable(getattr(self.inner, "kl", None)):
            return self.inner.kl(posterior.mu, posterior.logvar)
        return super().rate(posterior, z)


def _build_plugin_prior(ref: Plugin, latent_dim: int) -> Prior:
    inner = ref.build("prior", latent_dim=check_latent_dim(latent_dim))
    missing = [m for m in ("log_prob", "sample") if not callable(getattr(inner, m, None))]
    if not isinstance(inner, nn.Module) or missing:
        raise PluginError(f"{ref.describe('prior')}: must build a torch.nn.Module with log_prob and sample (and "
                          f"optionally kl); got a {type(inner).__name__}" + (f" without {missing}" if missing else ""))
    return inner if isinstance(inner, Prior) else PluginPrior(inner, latent_dim)


def build_prior(name: str | Plugin, latent_dim: int, *, shape: tuple[int, int, int] = (1, 8, 8),
                encoder: nn.Module | None = None, params: Mapping[str, Any] | None = None) -> Prior:
    """The prior ``name`` with its ``params`` (unknown ones are errors listing the allowed), or a
    plug-in prior (:class:`PluginPrior`; its settings are its kwargs)."""
    if isinstance(name, Plugin):
        if params:
            raise ValueError(f"{name.describe('prior')} takes its settings as kwargs, not prior_params={dict(params)}")
        return _build_plugin_prior(name, latent_dim)
    factory = PRIORS.get(name)
    params = dict(params or {})
    allowed = PRIOR_PARAMETERS.get(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(f"prior {name!r} has no parameter(s) {unknown}; allowed: {sorted(allowed)}")
    return factory(PriorContext(latent_dim, tuple(shape), encoder), **params)


__all__ = [
    "DEFAULT_COMPONENTS", "MixtureOfGaussiansPrior", "PRIORS", "PRIOR_PARAMETERS", "PluginPrior", "Prior", "PriorContext",
    "StandardNormalPrior", "VampPrior", "available_priors", "build_prior", "mixture_log_prob", "per_dimension_kl",
    "prior_parameters",
]
