"""A plug-in decoder for vaesearch: an MLP with residual blocks (an example of ``docs/plugins.md``).

vaesearch builds it as ``ResidualMLPDecoder(shape=(C, H, W), latent_dim=D, width=w, **kwargs)``,
the arguments every built-in decoder gets, and calls ``forward(z)`` with z of shape (B, D); it must
return unconstrained per-pixel parameters of shape (B, C, H, W), float32 (logits for the Bernoulli
likelihood: vaesearch applies the sigmoid). ``kwargs`` come from the config
(``kwargs: {blocks: 2}``). Nothing else is required: no registration, no vaesearch import.
"""
from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    def __init__(self, units: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.LayerNorm(units), nn.Linear(units, units), nn.GELU(), nn.Linear(units, units))

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # (B, U) -> (B, U)
        return h + self.net(h)


class ResidualMLPDecoder(nn.Module):
    """z (B, D) -> linear -> ``blocks`` residual blocks -> linear -> (B, C, H, W)."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, width: float = 1.0, blocks: int = 2,
                 hidden: int = 256) -> None:
        super().__init__()
        units = max(8, round(hidden * width))   # `width` scales hidden sizes, as for the built-ins
        c, h, w = shape
        self.shape = shape
        self.net = nn.Sequential(
            nn.Linear(latent_dim, units),
            *[ResidualBlock(units) for _ in range(blocks)],
            nn.GELU(),
            nn.Linear(units, c * h * w),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C, H, W)
        return self.net(z).view(z.shape[0], *self.shape)
