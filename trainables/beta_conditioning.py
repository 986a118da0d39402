"""The β range of a β-conditioned VAE: where training draws β, the grid evaluation sweeps, and
the metric names of the curve one trial traces (pure: no modules, no Ray).

Loss-conditional training (Dosovitskiy & Djolonga 2020, "You Only Train Once"; seed 004: "a single
β-selectable VAE is capable of approximating many β-VAEs"): each training example draws its own β
log-uniformly from [low, high], the networks are told log β, and the one model is then evaluated at
``grid`` log-spaced values of β from ``low`` to ``high``, each a point of the rate–distortion curve.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch

#: The per-epoch metrics of one grid point: ``rd/beta_<β>/rate`` and ``rd/beta_<β>/distortion``
#: (their own ``rd`` section in the MLflow UI, one chart per β), and the curve's score.
CURVE_PREFIX = "rd/"
CURVE_LOSS = "rd/mean_beta_loss"
_POINT = re.compile(r"^rd/beta_(?P<beta>[0-9.eE+-]+)/(?P<what>rate|distortion)$")


@dataclass(frozen=True)
class BetaConditioning:
    """β ~ log-uniform[low, high] per training example; ``grid`` log-spaced β evaluated per epoch."""

    low: float = 0.1
    high: float = 10.0
    grid: int = 8

    def __post_init__(self) -> None:
        low, high, grid = self.low, self.high, self.grid
        if isinstance(low, bool) or isinstance(high, bool) or not (0 < float(low) < float(high) < math.inf):
            raise ValueError(f"model.beta_conditioned needs 0 < low < high (finite), got {low=}, {high=}")
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
            raise ValueError(f"model.beta_conditioned.grid must be an int >= 2 (the curve's points), got {grid=}")
        object.__setattr__(self, "low", float(low))
        object.__setattr__(self, "high", float(high))

    @classmethod
    def of(cls, value: BetaConditioning | Mapping[str, Any] | None) -> BetaConditioning | None:
        """A spec read back from JSON (a mapping), or already one, or None (a plain VAE)."""
        return cls(**value) if isinstance(value, Mapping) else value

    def betas(self) -> list[float]:
        """The evaluation grid: ``grid`` values log-spaced from low to high, both included."""
        a, b = math.log(self.low), math.log(self.high)
        return [math.exp(a + (b - a) * i / (self.grid - 1)) for i in range(self.grid)]

    @property
    def reference_beta(self) -> float:
        """The β of the trial's plain ``val/`` metrics: 1 (the ELBO) clipped into the range."""
        return min(max(1.0, self.low), self.high)

    def sample(self, n: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """n values of β, log-uniform on [low, high]: (n,). From the global RNG, like the
        reparameterisation noise, so a resumed trial (its RNG state restored) draws the same."""
        u = torch.rand(n, device=device)
        return torch.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))

    def normalised_log_beta(self, beta: torch.Tensor) -> torch.Tensor:
        """log β mapped to [-1, 1] over the range (what the networks see): (B,) -> (B, 1)."""
        a, b = math.log(self.low), math.log(self.high)
        return (2 * (beta.log() - a) / (b - a) - 1).unsqueeze(-1)


def point_key(beta: float, what: str) -> str:
    """``rd/beta_<β>/<what>``, β with 4 significant digits (``rd/beta_0.1/rate``)."""
    return f"{CURVE_PREFIX}beta_{beta:.4g}/{what}"


def curve_points(metrics: Mapping[str, Any]) -> list[tuple[float, float, float]]:
    """The (β, rate, distortion) points a β-conditioned trial reported, by β; [] for a plain trial."""
    found: dict[str, dict[str, float]] = {}
    for key, value in metrics.items():
        m = _POINT.match(key)
        if m and isinstance(value, int | float) and not isinstance(value, bool):
            found.setdefault(m["beta"], {})[m["what"]] = float(value)
    points = [(float(b), v["rate"], v["distortion"]) for b, v in found.items() if len(v) == 2]
    return sorted(points)
