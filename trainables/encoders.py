"""Encoders q(z|x) = N(mu(x), diag(exp(logvar(x)))) for the VAE (Kingma & Welling 2014).

Two encoders are registered by name:

- ``mlp``: flatten -> hidden [512, 256] with ReLU -> (mu, logvar), the MLP
  recognition model of Kingma & Welling 2014.
- ``conv``: the shared convolutional encoder of the multi-armed-bandit VAE
  (reference 003): stride-2 4x4 convolutions with BatchNorm + LeakyReLU, channels
  [32, 64, 128, 256], as many stages as keep the feature map at least 2x2
  (so 32x32 uses 4 stages, 28x28 uses 3, 8x8 uses 2), then flatten -> linear.

The small shape/width helpers at the bottom of this module are shared with
``decoders.py`` and ``likelihoods.py`` so the rules (``max(4, round(c * width))``,
H == W >= 8) are written down once.
"""
from __future__ import annotations

import inspect
import math
import numbers
import operator
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from trainables.gaussian import Posterior
from trainables.registry import Plugin, PluginError, Registry

# exp(logvar) appears in the reparameterisation and in the KL; an unbounded linear head
# can emit logvar ~ 90 early in training (exp overflows float32 to inf -> NaN loss) or
# ~ -100 (std underflows to 0 and log-densities blow up). [-12, 8] covers std in
# [0.0025, 55], far wider than any useful posterior on normalised images.
LOGVAR_MIN = -12.0
LOGVAR_MAX = 8.0

MLP_HIDDEN = (512, 256)
CONV_CHANNELS = (32, 64, 128, 256)


# --------------------------------------------------------------------------- helpers


def check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    """Validate an image shape (C, H, W) with H == W >= 8 and return it as a tuple of ints."""
    try:
        # operator.index accepts Python and numpy ints but rejects floats like 28.0.
        dims = tuple(operator.index(s) for s in shape if not isinstance(s, bool))
        ok = len(dims) == len(shape) == 3
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"shape must be three ints (C, H, W), got {shape=}")
    c, h, w = dims
    if c < 1 or h != w or h < 8:
        raise ValueError(f"shape must be (C, H, W) with C >= 1 and H == W >= 8, got {shape=}")
    return (c, h, w)


def check_width(width: float) -> float:
    if (
        isinstance(width, bool)
        or not isinstance(width, numbers.Real)
        or not 0 < width < math.inf  # also rejects NaN
    ):
        raise ValueError(f"width must be a finite number > 0, got {width=}")
    return float(width)


def scaled(units: int, width: float) -> int:
    """Channels/units scaled by the width factor; never below 4 so BatchNorm and the
    smallest CPU runs keep a meaningful layer."""
    return max(4, round(units * width))


def soft_clamp(x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Smooth clamp to [lo, hi]: ~identity well inside the range, and, unlike torch.clamp,
    never a zero gradient outside it, so a parameter that strays out can come back."""
    x = lo + F.softplus(x - lo)
    return hi - F.softplus(hi - x)


def check_latent_dim(latent_dim: int) -> int:
    try:
        value = operator.index(latent_dim)
    except TypeError:
        value = 0
    if isinstance(latent_dim, bool) or value < 1:
        raise ValueError(f"latent_dim must be an int >= 1, got {latent_dim=}")
    return value


# --------------------------------------------------------------------------- modules


class GaussianEncoder(nn.Module):
    """A feature extractor followed by one linear head emitting (mu, logvar)."""

    def __init__(self, body: nn.Module, feature_dim: int, latent_dim: int) -> None:
        super().__init__()
        self.body = body
        self.head = nn.Linear(feature_dim, 2 * latent_dim)
        self.latent_dim = latent_dim

    def forward(self, x: torch.Tensor, modulate: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Posterior:
        """x (B, C, H, W) -> Posterior of (B, D). ``modulate`` maps the features (B, F) to (B, F)
        before the head: the β-conditioned VAE's FiLM (``trainables.beta_conditioned``)."""
        h = self.body(x)  # (B, F)
        if modulate is not None:
            h = modulate(h)
        mu, logvar = self.head(h).chunk(2, dim=-1)  # (B, D) each
        return Posterior(mu=mu, logvar=soft_clamp(logvar, LOGVAR_MIN, LOGVAR_MAX))


def _mlp_body(shape: tuple[int, int, int], width: float) -> tuple[nn.Module, int]:
    c, h, w = shape
    layers: list[nn.Module] = [nn.Flatten()]  # (B, C*H*W)
    fan_in = c * h * w
    for units in MLP_HIDDEN:
        units = scaled(units, width)
        layers += [nn.Linear(fan_in, units), nn.ReLU()]
        fan_in = units
    return nn.Sequential(*layers), fan_in


def _conv_out(size: int) -> int:
    # Conv2d(kernel=4, stride=2, padding=1): exact halving for even sizes, 7 -> 3 for odd.
    return (size + 2 * 1 - 4) // 2 + 1


def _conv_body(shape: tuple[int, int, int], width: float) -> tuple[nn.Module, int]:
    c_in, size, _ = shape
    layers: list[nn.Module] = []
    for channels in CONV_CHANNELS:
        if _conv_out(size) < 2:
            break  # one more stage would leave a 1x1 (or empty) map: stop here
        channels = scaled(channels, width)
        layers += [
            # No conv bias: the BatchNorm right after subtracts any per-channel constant,
            # so a bias would only ever receive a zero gradient.
            nn.Conv2d(c_in, channels, kernel_size=4, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(channels),
            nn.LeakyReLU(0.2),
        ]
        c_in, size = channels, _conv_out(size)
    layers.append(nn.Flatten())  # (B, C' * S * S)
    return nn.Sequential(*layers), c_in * size * size


_BodyBuilder = Callable[[tuple[int, int, int], float], tuple[nn.Module, int]]
ENCODERS: Registry[_BodyBuilder] = Registry("encoder", {"mlp": _mlp_body, "conv": _conv_body})


def available_encoders() -> list[str]:
    return ENCODERS.names()


class PluginEncoder(nn.Module):
    """A plug-in encoder: its forward returns a ``Posterior`` or a pair (mu, logvar), each (B, D);
    logvar is soft-clamped like the built-ins' (a plug-in need not know why)."""

    def __init__(self, inner: nn.Module, plugin: Plugin) -> None:
        super().__init__()
        self.inner = inner
        self.what = plugin.describe("encoder")

    @property
    def feature_dim(self) -> int:
        """F of a plug-in that takes part in β-conditioning (``model.beta_conditioned``): its int
        ``feature_dim`` and ``forward(x, modulate=None)``, which applies ``modulate`` to its (B, F)
        features before its (mu, logvar) head. Otherwise a PluginError saying what is missing."""
        feature_dim = getattr(self.inner, "feature_dim", None)
        has_dim = isinstance(feature_dim, int) and not isinstance(feature_dim, bool) and feature_dim > 0
        takes_modulate = _takes_keyword(self.inner.forward, "modulate")
        if has_dim and takes_modulate:
            return feature_dim
        missing = [m for m, ok in ((f"an int attribute feature_dim > 0 (got {feature_dim!r})", has_dim),
                                   ("a forward(x, modulate=None) argument", takes_modulate)) if not ok]
        raise PluginError(
            f"{self.what}: model.beta_conditioned conditions the encoder's features on log β, and this plug-in "
            f"lacks {' and '.join(missing)}: apply modulate to the (B, feature_dim) features before the (mu, logvar) "
            "head (docs/plugins.md, β-conditioned encoders), or use model.encoder mlp or conv, or drop "
            "model.beta_conditioned")

    def forward(self, x: torch.Tensor, modulate: Callable[[torch.Tensor], torch.Tensor] | None = None) -> Posterior:
        """x (B, C, H, W) -> Posterior of (B, D); ``modulate`` (β-conditioning) goes to the plug-in."""
        out = self.inner(x) if modulate is None else self.inner(x, modulate=modulate)
        if isinstance(out, Posterior):
            mu, logvar = out.mu, out.logvar
        elif isinstance(out, tuple | list) and len(out) == 2:
            mu, logvar = out
        else:
            raise PluginError(f"{self.what}: forward must return a Posterior or a pair (mu, logvar), "
                              f"got a {type(out).__name__}")
        return Posterior(mu=mu, logvar=soft_clamp(logvar, LOGVAR_MIN, LOGVAR_MAX))


def _takes_keyword(function: Callable[..., object], name: str) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):   # a builtin without a signature
        return False
    return any(p.name == name or p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters)


def build_encoder(
    name: str | Plugin, shape: tuple[int, int, int], latent_dim: int, width: float = 1.0
) -> nn.Module:
    """Build the encoder ``name`` (a registered name or a plug-in); its forward maps x (B, C, H, W)
    to a ``Posterior``. A plug-in is built as ``Class(shape=, latent_dim=, width=, **kwargs)``."""
    shape = check_shape(shape)
    latent_dim = check_latent_dim(latent_dim)
    width = check_width(width)
    if isinstance(name, Plugin):
        inner = name.build("encoder", shape=shape, latent_dim=latent_dim, width=width)
        if not isinstance(inner, nn.Module):
            raise PluginError(f"{name.describe('encoder')}: must build a torch.nn.Module, got a {type(inner).__name__}")
        return PluginEncoder(inner, name)
    body, feature_dim = ENCODERS.get(name)(shape, width)
    return GaussianEncoder(body, feature_dim, latent_dim)
