"""The five candidate decoders of the multi-armed-bandit VAE (reference 003): the bandit's arms.

Abecidan's multi-armed-bandit VAE shares one convolutional encoder between K decoders
and lets an epsilon-greedy bandit decide which decoder trains on each minibatch. The
five arms, registered here in the reference's order (list index = its decoder number):

0. ``mlp_small``: MLP, hidden [128, 256, 512] -> C*H*W.
1. ``mlp_large``: MLP, hidden [256, 512, 1024] -> C*H*W.
2. ``deconv_2x2``: linear -> (1024, 2, 2), transposed convs [1024, 512, 256, 128], BN + ReLU.
3. ``deconv_4x4``: linear -> (1024, 4, 4), transposed convs [1024, 512, 256], BN + ReLU.
4. ``linear_deconv_selu``: linear latent -> max(1, latent // 2), linear -> (512, 2, 2),
   transposed convs [512, 256, 128, 64] with SELU.

Every decoder maps z (B, D) to unconstrained per-pixel parameters (B, C, H, W) (logits
for a Bernoulli, pre-sigmoid means for a Gaussian; the likelihood interprets them).

Adapting the reference's 32x32 architectures to any (C, H, W) with H == W >= 8: the channel
list gives one transposed conv per entry (entry i -> entry i + 1, the last keeps its
width). Each stride-2 transposed conv (4x4, padding 1) doubles the spatial size; the
first layers are stride-2 while the size is below the target, the remaining layers of
the list are stride-1 3x3 (size preserving). If the list is too short to reach the
target, stride-2 layers with the last width are appended. A final 3x3 conv maps to C
channels and, if the size overshoots the target (32 for 28), the map is center-cropped.
So 8x8 from 2x2 uses 2 stride-2 stages, 32x32 from 2x2 uses 4, 28x28 reaches 32 and
crops. All hidden units and channels are scaled by ``width`` as ``max(4, round(c * width))``:
the reference-003 widths (1024 channels) are GPU-sized, 0.125-0.25 trains in minutes on a CPU.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from trainables.encoders import check_latent_dim, check_shape, check_width, scaled
from trainables.registry import Plugin, PluginError, Registry

_ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "selu": nn.SELU}


class CenterCrop(nn.Module):
    """Crop the trailing (H, W) dims to ``size`` x ``size`` around the center."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def extra_repr(self) -> str:
        return f"size={self.size}"

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) -> (B, C, size, size)
        top = (x.shape[-2] - self.size) // 2
        left = (x.shape[-1] - self.size) // 2
        return x[..., top : top + self.size, left : left + self.size]


class MLPDecoder(nn.Module):
    """z -> ReLU MLP -> C*H*W unconstrained pixel parameters."""

    def __init__(self, shape: tuple[int, int, int], latent_dim: int, hidden: Sequence[int]) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = latent_dim
        for units in hidden:
            layers += [nn.Linear(fan_in, units), nn.ReLU()]
            fan_in = units
        c, h, w = shape
        layers += [nn.Linear(fan_in, c * h * w), nn.Unflatten(1, (c, h, w))]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C, H, W)
        return self.net(z)


def upsampling_strides(start_size: int, target: int, n_layers: int) -> list[int]:
    """Strides of the transposed convs: stride 2 while below ``target``, then stride 1.

    Returns at least ``n_layers`` entries (more when ``n_layers`` doublings are not enough).
    """
    n_double, size = 0, start_size
    while size < target:
        size, n_double = size * 2, n_double + 1
    return [2] * n_double + [1] * max(0, n_layers - n_double)


class DeconvDecoder(nn.Module):
    """[optional linear bottleneck] -> linear -> (c0, s, s) -> transposed convs -> conv to C."""

    def __init__(
        self,
        shape: tuple[int, int, int],
        latent_dim: int,
        start_size: int,
        channels: Sequence[int],
        activation: type[nn.Module],
        batch_norm: bool,
        bottleneck: int | None = None,
    ) -> None:
        super().__init__()
        c_out, target, _ = shape
        layers: list[nn.Module] = []
        fan_in = latent_dim
        if bottleneck is not None:
            # Deliberately no activation: this arm sees z only through a rank-`bottleneck`
            # linear projection, which is what distinguishes it in the reference.
            layers.append(nn.Linear(latent_dim, bottleneck))
            fan_in = bottleneck
        c0 = channels[0]
        layers += [
            nn.Linear(fan_in, c0 * start_size * start_size),
            nn.Unflatten(1, (c0, start_size, start_size)),  # (B, c0, s, s)
            # Without a nonlinearity here the projection and the first transposed conv
            # would compose into a single linear map.
            activation(),
        ]
        strides = upsampling_strides(start_size, target, len(channels))
        widths = list(channels[1:]) + [channels[-1]] * (len(strides) - len(channels) + 1)
        c_in, size = c0, start_size
        for stride, c_next in zip(strides, widths):
            layers.append(_transposed_conv(c_in, c_next, stride, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_next))
            layers.append(activation())
            c_in, size = c_next, size * stride
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))  # (B, C, size, size)
        if size != target:
            layers.append(CenterCrop(target))  # (B, C, H, W)
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:  # (B, D) -> (B, C, H, W)
        return self.net(z)


def _transposed_conv(c_in: int, c_out: int, stride: int, bias: bool) -> nn.ConvTranspose2d:
    # 4x4/stride 2/padding 1 doubles the size exactly; 3x3/stride 1/padding 1 keeps it.
    # The bias is dropped before BatchNorm, which would cancel it (its gradient is zero).
    if stride == 2:
        return nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=bias)
    return nn.ConvTranspose2d(c_in, c_out, kernel_size=3, stride=1, padding=1, bias=bias)


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class MLPArm:
    hidden: tuple[int, ...]
    description: str

    def build(self, shape: tuple[int, int, int], latent_dim: int, width: float) -> nn.Module:
        return MLPDecoder(shape, latent_dim, [scaled(h, width) for h in self.hidden])


@dataclass(frozen=True)
class DeconvArm:
    start_size: int
    channels: tuple[int, ...]
    activation: str  # a key of _ACTIVATIONS
    batch_norm: bool
    description: str
    halve_latent: bool = False  # first a linear latent -> max(1, latent // 2)

    def build(self, shape: tuple[int, int, int], latent_dim: int, width: float) -> nn.Module:
        return DeconvDecoder(
            shape,
            latent_dim,
            start_size=self.start_size,
            channels=[scaled(c, width) for c in self.channels],
            activation=_ACTIVATIONS[self.activation],
            batch_norm=self.batch_norm,
            bottleneck=max(1, latent_dim // 2) if self.halve_latent else None,
        )


# Insertion order is the reference's decoder numbering (0..4).
DECODERS: Registry[MLPArm | DeconvArm] = Registry("decoder", {
    "mlp_small": MLPArm(
        hidden=(128, 256, 512), description="MLP, hidden [128, 256, 512], ReLU"
    ),
    "mlp_large": MLPArm(
        hidden=(256, 512, 1024), description="MLP, hidden [256, 512, 1024], ReLU"
    ),
    "deconv_2x2": DeconvArm(
        start_size=2,
        channels=(1024, 512, 256, 128),
        activation="relu",
        batch_norm=True,
        description="linear -> 2x2, transposed convs [1024, 512, 256, 128], BN + ReLU",
    ),
    "deconv_4x4": DeconvArm(
        start_size=4,
        channels=(1024, 512, 256),
        activation="relu",
        batch_norm=True,
        description="linear -> 4x4, transposed convs [1024, 512, 256], BN + ReLU",
    ),
    "linear_deconv_selu": DeconvArm(
        start_size=2,
        channels=(512, 256, 128, 64),
        activation="selu",
        batch_norm=False,
        halve_latent=True,
        description=(
            "linear latent -> latent/2, linear -> 2x2, transposed convs [512, 256, 128, 64], SELU"
        ),
    ),
})

DECODER_DESCRIPTIONS: dict[str, str] = {name: arm.description for name, arm in DECODERS.items()}


def available_decoders() -> list[str]:
    """Registered decoder names; the index of a name is its decoder number in reference 003."""
    return DECODERS.names()


def build_decoder(
    name: str | Plugin, shape: tuple[int, int, int], latent_dim: int, width: float = 1.0
) -> nn.Module:
    """Build decoder ``name`` (a registered name or a plug-in); its forward maps z (B, D) to pixel
    parameters (B, C, H, W). A plug-in is built as ``Class(shape=, latent_dim=, width=, **kwargs)``,
    the arguments the built-ins get (``docs/plugins.md``)."""
    shape, latent_dim, width = check_shape(shape), check_latent_dim(latent_dim), check_width(width)
    if isinstance(name, Plugin):
        return plugin_module(name, "decoder", shape=shape, latent_dim=latent_dim, width=width)
    return DECODERS.get(name).build(shape, latent_dim, width)


def plugin_module(plugin: Plugin, kind: str, **protocol: object) -> nn.Module:
    """A plug-in built with the protocol's arguments; it must be a ``torch.nn.Module`` (its parameters
    are trained, saved and moved to the device with the rest of the VAE)."""
    module = plugin.build(kind, **protocol)
    if not isinstance(module, nn.Module):
        raise PluginError(f"{plugin.describe(kind)}: must build a torch.nn.Module, got a {type(module).__name__}")
    return module
