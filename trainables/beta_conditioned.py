"""The β-conditioned VAE: one model for a whole rate–distortion curve.

Loss-conditional training (Dosovitskiy & Djolonga 2020, "You Only Train Once: Loss-Conditional
Training of Deep Networks", ICLR; their β-VAE experiment), the "β-selectable VAE" of seed 004.
Every training example draws its own β log-uniformly from the range
(:class:`~trainables.beta_conditioning.BetaConditioning`), the loss is
mean_i [D_i + β_i·R_i], and the networks are told log β through FiLM (Perez et al. 2018):

- an embedding e(log β) (a small MLP of the normalised log β);
- the encoder: its features h (B, F), before the (μ, logvar) head, become h·(1 + γ(e)) + b(e);
- the decoder: its input z (B, D) becomes z·(1 + γ'(e)) + b'(e). Conditioning the decoder's
  *input* works for every decoder, plug-ins included, with no change to them; a scale γ' of −1 on a
  dimension lets the decoder ignore a latent that this β's posterior leaves at the prior.

γ and b come from zero-initialised linear maps, so an untrained model *is* the plain VAE at every β
(the same weights give the same loss on the same batch and noise): loss-conditional training starts
from the plain model and learns only what β changes. A built-in encoder's features are the hook; a
plug-in encoder takes part when it declares ``feature_dim`` and takes ``forward(x, modulate=None)``
(``trainables.encoders.PluginEncoder.feature_dim``; else a PluginError at ``vaesearch validate``).

Evaluation (:func:`curve_metrics`) sweeps the grid of β: the rate and distortion of the validation
set at each, one point of the trial's curve each. Everything that takes no β (``encode``,
``decode``, ``sample``, ``reconstruct``, the metrics of ``trainables.metrics``, the test NLL) runs
at :attr:`BetaConditionedVAE.beta`: the reference β (1 clipped into the range) unless set
(:meth:`BetaConditionedVAE.at_beta`).
"""
from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from trainables.beta_conditioning import CURVE_LOSS, BetaConditioning, point_key
from trainables.encoders import GaussianEncoder
from trainables.gaussian import Posterior
from trainables.objectives import LossTerms
from trainables.schedules import KLWeight
from trainables.vae import VAE, VAEConfig, VAEOutput, elbo_pieces

EMBED_DIM = 32  # the log-β embedding's width: a curve in one scalar needs few features


class FiLM(nn.Module):
    """h -> h·(1 + γ(e)) + b(e), (B, F) with e (B, E). Zero-initialised: the identity until trained."""

    def __init__(self, embed_dim: int, features: int) -> None:
        super().__init__()
        self.proj = nn.Linear(embed_dim, 2 * features)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, h: torch.Tensor, e: torch.Tensor) -> torch.Tensor:  # (B, F), (B, E) -> (B, F)
        gamma, shift = self.proj(e).chunk(2, dim=-1)
        return h * (1 + gamma) + shift


class BetaConditionedVAE(VAE):
    """A :class:`~trainables.vae.VAE` whose encoder and decoder are conditioned on log β."""

    def __init__(self, config: VAEConfig) -> None:
        super().__init__(config)   # the plain VAE's modules, built in the same order (same init under one seed)
        if config.beta_conditioned is None:
            raise ValueError("BetaConditionedVAE needs config.beta_conditioned (the β range)")
        # a built-in's features feed its head; a plug-in says its F (PluginEncoder.feature_dim, or a PluginError)
        features = self.encoder.head.in_features if isinstance(self.encoder, GaussianEncoder) else self.encoder.feature_dim
        self.conditioning: BetaConditioning = config.beta_conditioned
        self.embed = nn.Sequential(nn.Linear(1, EMBED_DIM), nn.SiLU(), nn.Linear(EMBED_DIM, EMBED_DIM), nn.SiLU())
        self.encoder_film = FiLM(EMBED_DIM, features)
        self.decoder_film = FiLM(EMBED_DIM, config.latent_dim)
        self.beta = self.conditioning.reference_beta   # the β of every call that names none

    @contextmanager
    def at_beta(self, beta: float) -> Iterator[None]:
        """Within the block, calls that name no β (``evaluate``, ``sample``, ...) run at ``beta``."""
        previous, self.beta = self.beta, float(beta)
        try:
            yield
        finally:
            self.beta = previous

    def _embedding(self, beta: float | torch.Tensor | None, batch: int, device: torch.device) -> torch.Tensor:
        """e(log β) for a batch: β a number (every row) or (B,) per row; None: :attr:`beta`. -> (B, E)."""
        b = torch.as_tensor(self.beta if beta is None else beta, dtype=torch.float32, device=device)
        if b.ndim == 0:
            b = b.expand(batch)
        if tuple(b.shape) != (batch,):
            raise ValueError(f"beta must be a number or one per example ({batch},), got shape {tuple(b.shape)}")
        return self.embed(self.conditioning.normalised_log_beta(b))

    def encode(self, x: torch.Tensor, beta: float | torch.Tensor | None = None) -> Posterior:
        if tuple(x.shape[1:]) != self.config.shape:
            raise ValueError(f"x must have shape (B, *{self.config.shape}), got x.shape={tuple(x.shape)}")
        e = self._embedding(beta, x.shape[0], x.device)  # (B, E)
        return self.encoder(x, modulate=lambda h: self.encoder_film(h, e))

    def decode(self, z: torch.Tensor, beta: float | torch.Tensor | None = None) -> torch.Tensor:
        e = self._embedding(beta, z.shape[0], z.device)  # (B, E)
        return self.decoder(self.decoder_film(z, e))     # (B, C, H, W)

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None,
                beta: float | torch.Tensor | None = None) -> VAEOutput:
        decoder = _Decoder(self, beta)
        return elbo_pieces(x, self.encode(x, beta), decoder, self.likelihood, self.prior, generator)


class _Decoder:
    """``decode`` at a fixed β, as the callable ``elbo_pieces`` takes."""

    def __init__(self, model: BetaConditionedVAE, beta: float | torch.Tensor | None) -> None:
        self.model, self.beta = model, beta

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.model.decode(z, self.beta)


def conditioned_loss(log_px_z: torch.Tensor, kl_per_dim: torch.Tensor, beta: torch.Tensor) -> LossTerms:
    """mean_i [−log p(x_i|z_i) + β_i·R_i]: the β-VAE loss with one β per example.
    log_px_z (B,), kl_per_dim (B, D), beta (B,). With every β_i = β it is ``vae_loss`` at β
    (equal up to float rounding: the sum is taken in another order)."""
    rate_i = kl_per_dim.sum(dim=1)  # (B,)
    return LossTerms(loss=(-log_px_z + beta * rate_i).mean(), distortion=-log_px_z.mean(), rate=rate_i.mean(),
                     kl_batch=kl_per_dim)


@dataclass(frozen=True)
class BetaConditionedObjective:
    """The training objective of a β-conditioned trial, with the interface of
    ``trainables.spec.ObjectiveSpec`` (what ``train_epoch`` calls). β_i ~ log-uniform per example;
    the KL schedule's β_t (run with ``train.beta`` = 1, so a factor in [0, 1] for the warm-ups)
    multiplies every β_i: a warm-up anneals the whole range together, while the networks are told
    the target β_i (what they are asked to be at the end of the warm-up)."""

    conditioning: BetaConditioning

    def loss(self, model: BetaConditionedVAE, x: torch.Tensor, weight: KLWeight, free_bits: float = 0.0) -> LossTerms:
        if free_bits > 0 or weight.capacity is not None:
            raise ValueError("a β-conditioned model trains the β-VAE loss: no free bits or capacity "
                             f"(got free_bits={free_bits}, capacity={weight.capacity})")
        beta = self.conditioning.sample(x.shape[0], device=x.device)   # (B,)
        out = model(x, beta=beta)
        return conditioned_loss(out.log_px_z, out.kl_per_dim, beta * weight.beta)


@torch.no_grad()
def curve_metrics(model: BetaConditionedVAE, data: torch.Tensor, batch_size: int = 500,
                  seed: int = 0) -> dict[str, float]:
    """The trial's curve on ``data`` (N, C, H, W): ``rd/beta_<β>/rate`` and ``.../distortion`` at each
    grid β (nats per example, one z per example, the same noise at every β), and ``rd/mean_beta_loss``,
    the mean over the grid of D(β) + β·R(β): the β-VAE loss the trial was trained on, averaged over
    the grid. For each β, the lowest D + β·R any model reaches is the curve's support line of slope
    −β, so the mean scores the whole curve with no reference point (lower: further down-left).
    Put the model in eval mode first."""
    metrics: dict[str, float] = {}
    losses = []
    for beta in model.conditioning.betas():
        rate, distortion = _rate_distortion(model, data, batch_size, beta, seed)
        metrics[point_key(beta, "rate")], metrics[point_key(beta, "distortion")] = rate, distortion
        losses.append(distortion + beta * rate)
    metrics[CURVE_LOSS] = math.fsum(losses) / len(losses)
    return metrics


def _rate_distortion(model: BetaConditionedVAE, data: torch.Tensor, batch_size: int, beta: float,
                     seed: int) -> tuple[float, float]:
    n_devices = torch.accelerator.device_count() if torch.accelerator.is_available() else 0
    rate = distortion = torch.zeros((), dtype=torch.float64, device=data.device)
    with torch.random.fork_rng(devices=range(n_devices)):   # the training RNG stream is left alone
        torch.manual_seed(seed)
        for start in range(0, data.shape[0], batch_size):
            out = model(data[start : start + batch_size], beta=beta)
            rate = rate + out.kl_per_dim.to(torch.float64).sum()
            distortion = distortion - out.log_px_z.to(torch.float64).sum()
    return rate.item() / data.shape[0], distortion.item() / data.shape[0]
