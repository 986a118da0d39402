"""The shared-encoder model: one encoder, K decoder heads, one likelihood, the N(0, I) prior."""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from trainables.decoders import build_decoder
from trainables.encoders import build_encoder, check_shape
from trainables.gaussian import Posterior, reparameterize
from trainables.likelihoods import build_likelihood
from trainables.priors import build_prior
from trainables.registry import Plugin
from trainables.spec import SharedEncoderSpec
from trainables.vae import VAEOutput, elbo_pieces


@dataclass
class HeadScores:
    distortion: list[float]  # per head: mean −log p(x|z) on the batch, nats per example
    rate: float  # mean KL(q(z|x) ‖ p(z)): the shared encoder's, the same for every head


class SharedEncoderVAE(nn.Module):
    """One encoder, ``len(decoders)`` heads (an ``nn.ModuleList``), one likelihood, the N(0, I) prior."""

    def __init__(
        self, shape: Sequence[int], decoders: Sequence[str | Plugin], *, encoder: str | Plugin = "conv", latent_dim: int = 16,
        width: float = 0.25, likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        self.shape = check_shape(shape)
        self.decoders = tuple(Plugin.of(d) for d in decoders)   # registered names or plug-ins
        self.decoder_names = tuple(d.label if isinstance(d, Plugin) else d for d in self.decoders)
        encoder = Plugin.of(encoder)
        self.settings = {"encoder": dataclasses.asdict(encoder) if isinstance(encoder, Plugin) else encoder,
                         "latent_dim": latent_dim, "width": width, "likelihood": likelihood}
        self.encoder = build_encoder(encoder, self.shape, latent_dim, width)
        self.heads = nn.ModuleList(build_decoder(d, self.shape, latent_dim, width) for d in self.decoders)
        self.likelihood = build_likelihood(likelihood, self.shape)
        self.prior = build_prior("standard_normal", latent_dim)

    def config_dict(self) -> dict[str, Any]:
        """The constructor's arguments as JSON values: enough to rebuild the model."""
        decoders = [dataclasses.asdict(d) if isinstance(d, Plugin) else d for d in self.decoders]
        return {"shape": list(self.shape), "decoders": decoders, **self.settings}

    def _check_head(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self.heads):
            raise ValueError(f"head index must be an int in [0, {len(self.heads)}), got {k=}")

    def encode(self, x: torch.Tensor) -> Posterior:  # (B, C, H, W) -> Posterior of (B, D)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape (B, *{self.shape}), got x.shape={tuple(x.shape)}")
        return self.encoder(x)

    def head_output(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> VAEOutput:
        """The ELBO pieces of head ``k`` for one reparameterised z; x: (B, C, H, W)."""
        self._check_head(k)
        return elbo_pieces(x, self.encode(x), self.heads[k], self.likelihood, self.prior, generator)

    @torch.no_grad()
    def head_scores(self, x: torch.Tensor, generator: torch.Generator | None = None) -> HeadScores:
        """Every head's mean −log p(x|z) on x, all on the same z, in eval mode (BatchNorm uses
        and keeps its running statistics); the module's mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            posterior = self.encode(x)
            z = reparameterize(posterior.mu, posterior.logvar, generator)  # (B, D), shared by every head
            nll = [-self.likelihood.log_prob(x, head(z)).double().mean() for head in self.heads]  # K × ()
            rate = self.prior.kl(posterior.mu, posterior.logvar).double().sum(1).mean()
            values = torch.stack([*nll, rate]).tolist()  # one host sync for all heads
        finally:
            self.train(was_training)
        return HeadScores(distortion=values[:-1], rate=values[-1])

    def head_val_distortion(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[float]:
        """Per head, the mean −log p(x|z) on x (no gradient, eval mode)."""
        return self.head_scores(x, generator).distortion

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Head ``k``'s mean image for z = E_q[z]: (B, C, H, W) -> (B, C, H, W) in [0, 1]."""
        self._check_head(k)
        return self.likelihood.mean(self.heads[k](self.encode(x).mu))


def build_shared_model(spec: SharedEncoderSpec, shape: Sequence[int]) -> SharedEncoderVAE:
    return SharedEncoderVAE(
        shape, spec.decoders, encoder=spec.encoder, latent_dim=spec.latent_dim, width=spec.width,
        likelihood=spec.likelihood,
    )


