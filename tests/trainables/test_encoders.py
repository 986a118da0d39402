from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from trainables.encoders import (
    LOGVAR_MAX,
    LOGVAR_MIN,
    Posterior,
    available_encoders,
    build_encoder,
)

SHAPES = [(1, 8, 8), (1, 28, 28), (1, 32, 32), (3, 32, 32)]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registered_names() -> None:
    assert available_encoders() == ["mlp", "conv"]


@pytest.mark.parametrize("name", ["mlp", "conv"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("latent_dim", [2, 16])
def test_posterior_shapes(name: str, shape: tuple[int, int, int], latent_dim: int) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name, shape, latent_dim, width=0.125)
    post = encoder(torch.rand(4, *shape))
    assert isinstance(post, Posterior)
    assert post.mu.shape == (4, latent_dim)
    assert post.logvar.shape == (4, latent_dim)
    assert torch.isfinite(post.mu).all() and torch.isfinite(post.logvar).all()


@pytest.mark.parametrize(("size", "stages"), [(8, 2), (28, 3), (32, 4)])
def test_conv_encoder_stops_before_the_map_drops_below_2x2(size: int, stages: int) -> None:
    encoder = build_encoder("conv", (1, size, size), 4, width=0.125)
    convs = [m for m in encoder.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == stages
    assert all(m.stride == (2, 2) for m in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in encoder.modules()) == stages


def test_logvar_is_clamped_so_exp_cannot_overflow() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("mlp", (1, 8, 8), 16, width=0.125)
    x = torch.rand(8, 1, 8, 8) * 1e5  # drives the linear head far outside any sane range
    post = encoder(x)
    assert post.mu.abs().max() > 100  # the same head without a clamp is extreme
    assert post.logvar.min() >= LOGVAR_MIN and post.logvar.max() <= LOGVAR_MAX
    assert torch.isfinite(torch.exp(post.logvar)).all()
    # the clamp is soft: the head still gets a gradient back towards the range
    post.logvar.sum().backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_width_scales_the_network_with_a_floor(name: str) -> None:
    full = _n_params(build_encoder(name, (1, 28, 28), 16, width=1.0))
    half = _n_params(build_encoder(name, (1, 28, 28), 16, width=0.5))
    assert half < full / 2
    tiny = build_encoder(name, (1, 28, 28), 16, width=1e-6)  # every layer floored to 4 units
    assert tiny(torch.rand(2, 1, 28, 28)).mu.shape == (2, 16)


@pytest.mark.parametrize("name", ["mlp", "conv"])
def test_gradients_reach_every_parameter(name: str) -> None:
    torch.manual_seed(0)
    encoder = build_encoder(name, (3, 32, 32), 8, width=0.125)
    post = encoder(torch.rand(4, 3, 32, 32))
    (post.mu.pow(2).sum() + post.logvar.sum()).backward()
    for pname, p in encoder.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, pname


def test_encoder_pickles() -> None:
    torch.manual_seed(0)
    encoder = build_encoder("conv", (1, 28, 28), 4, width=0.125).eval()
    x = torch.rand(3, 1, 28, 28)
    clone = pickle.loads(pickle.dumps(encoder))
    assert torch.equal(clone(x).mu, encoder(x).mu)


def test_unknown_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match=r"unknown encoder 'resnet'.*'mlp'.*'conv'"):
        build_encoder("resnet", (1, 28, 28), 16)


@pytest.mark.parametrize("width", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_width_is_rejected(width: float) -> None:
    with pytest.raises(ValueError, match="width"):
        build_encoder("mlp", (1, 28, 28), 16, width=width)


@pytest.mark.parametrize("shape", [(1, 28, 32), (1, 4, 4), (28, 28), (0, 8, 8), (1, 8.0, 8)])
def test_bad_shape_is_rejected(shape: tuple) -> None:
    with pytest.raises(ValueError, match="shape"):
        build_encoder("conv", shape, 16)  # type: ignore[arg-type]


@pytest.mark.parametrize("latent_dim", [0, -3, 2.5, True])
def test_bad_latent_dim_is_rejected(latent_dim: object) -> None:
    with pytest.raises(ValueError, match="latent_dim"):
        build_encoder("conv", (1, 28, 28), latent_dim)  # type: ignore[arg-type]
