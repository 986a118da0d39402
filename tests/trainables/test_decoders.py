from __future__ import annotations

import pickle

import pytest
import torch
from torch import nn

from trainables.decoders import (
    DECODER_DESCRIPTIONS,
    available_decoders,
    build_decoder,
    upsampling_strides,
)
from trainables.vae import VAEConfig, build_vae

SHAPES = [(1, 8, 8), (1, 28, 28), (1, 32, 32), (3, 32, 32)]
DECODERS = ["mlp_small", "mlp_large", "deconv_2x2", "deconv_4x4", "linear_deconv_selu"]


def _n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_registered_names_in_seed_order() -> None:
    assert available_decoders() == DECODERS
    assert list(DECODER_DESCRIPTIONS) == DECODERS
    assert all(isinstance(d, str) and d and "\n" not in d for d in DECODER_DESCRIPTIONS.values())


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("latent_dim", [2, 16])
def test_output_matches_the_image_shape(
    name: str, shape: tuple[int, int, int], latent_dim: int
) -> None:
    torch.manual_seed(0)
    decoder = build_decoder(name, shape, latent_dim, width=0.125)
    out = decoder(torch.randn(4, latent_dim))
    assert out.shape == (4, *shape)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", DECODERS)
@pytest.mark.parametrize("encoder", ["conv", "mlp"])
@pytest.mark.parametrize("shape", SHAPES)
def test_one_training_step_reaches_every_decoder_parameter(
    name: str, encoder: str, shape: tuple[int, int, int]
) -> None:
    torch.manual_seed(0)
    config = VAEConfig(shape=shape, latent_dim=16, encoder=encoder, decoder=name, width=0.125)
    vae = build_vae(config)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-3)
    x = (torch.rand(4, *shape) > 0.5).float()
    gen = torch.Generator().manual_seed(1)

    out = vae(x, generator=gen)
    loss = -(out.log_px_z - out.kl_per_dim.sum(-1)).mean()
    opt.zero_grad()
    loss.backward()
    assert torch.isfinite(loss)
    for pname, p in vae.decoder.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname
    before = [p.detach().clone() for p in vae.decoder.parameters()]
    opt.step()
    assert all(not torch.equal(b, p) for b, p in zip(before, vae.decoder.parameters()))
    assert torch.isfinite(vae(x, generator=gen).log_px_z).all()


@pytest.mark.parametrize(
    ("start", "target", "n_layers", "expected"),
    [
        (2, 8, 4, [2, 2, 1, 1]),  # 8x8 from 2x2: two doublings, the rest size-preserving
        (2, 32, 4, [2, 2, 2, 2]),
        (2, 28, 4, [2, 2, 2, 2]),  # reaches 32, then the decoder crops
        (4, 8, 3, [2, 1, 1]),
        (4, 64, 3, [2, 2, 2, 2]),  # channel list too short: an extra doubling is appended
    ],
)
def test_upsampling_plan(start: int, target: int, n_layers: int, expected: list[int]) -> None:
    assert upsampling_strides(start, target, n_layers) == expected


@pytest.mark.parametrize("name", ["deconv_2x2", "deconv_4x4", "linear_deconv_selu"])
def test_deconv_decoders_also_fit_sizes_outside_the_seed(name: str) -> None:
    for shape in [(1, 10, 10), (2, 64, 64)]:
        assert build_decoder(name, shape, 3, width=0.05)(torch.randn(2, 3)).shape == (2, *shape)


def test_cropping_keeps_the_center() -> None:
    # 28x28 from a 32x32 map: a decoder for 32 and one for 28 with the same weights differ
    # only by the 2-pixel border that the crop removes.
    torch.manual_seed(0)
    d32 = build_decoder("deconv_4x4", (1, 32, 32), 4, width=0.125).eval()
    d28 = build_decoder("deconv_4x4", (1, 28, 28), 4, width=0.125).eval()
    d28.load_state_dict(d32.state_dict())
    z = torch.randn(3, 4)
    assert torch.allclose(d28(z), d32(z)[..., 2:30, 2:30])


def test_linear_deconv_selu_sees_z_through_a_half_size_bottleneck() -> None:
    # Reference 003's arm 4 passes z through a linear latent -> latent // 2 layer first, so the
    # Jacobian of its output w.r.t. z has rank <= latent // 2; the other arms are full rank.
    torch.manual_seed(0)
    z = torch.randn(1, 8, dtype=torch.float64)
    ranks = {}
    for name in ["linear_deconv_selu", "deconv_2x2"]:
        decoder = build_decoder(name, (1, 8, 8), 8, width=0.125).double().eval()
        jac = torch.autograd.functional.jacobian(lambda v: decoder(v).flatten(), z)  # (64, 1, 8)
        ranks[name] = int(torch.linalg.matrix_rank(jac.reshape(64, 8)))
    assert ranks == {"linear_deconv_selu": 4, "deconv_2x2": 8}
    latent_1 = build_decoder("linear_deconv_selu", (1, 8, 8), 1, width=0.125)  # max(1, 1 // 2)
    assert latent_1(torch.randn(2, 1)).shape == (2, 1, 8, 8)


@pytest.mark.parametrize("name", DECODERS)
def test_width_scales_parameters_with_a_floor(name: str) -> None:
    full = _n_params(build_decoder(name, (1, 28, 28), 16, width=1.0))
    quarter = _n_params(build_decoder(name, (1, 28, 28), 16, width=0.25))
    assert quarter < full / 2
    tiny = build_decoder(name, (1, 28, 28), 16, width=1e-6)  # every layer floored to 4
    assert tiny(torch.randn(2, 16)).shape == (2, 1, 28, 28)


def test_seed_widths_at_width_one() -> None:
    # The reference's sizes survive the adaptation: first hidden layers / projected channels.
    mlp_large = build_decoder("mlp_large", (1, 32, 32), 16)
    linears = [m for m in mlp_large.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [256, 512, 1024, 1024]
    deconv = build_decoder("deconv_2x2", (1, 32, 32), 16)
    convs = [m for m in deconv.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert [m.in_channels for m in convs] == [1024, 512, 256, 128]
    selu = build_decoder("linear_deconv_selu", (3, 32, 32), 16)
    assert sum(isinstance(m, nn.SELU) for m in selu.modules()) == 5
    assert not any(isinstance(m, nn.BatchNorm2d) for m in selu.modules())


@pytest.mark.parametrize("name", DECODERS)
def test_decoders_pickle(name: str) -> None:
    torch.manual_seed(0)
    decoder = build_decoder(name, (1, 28, 28), 4, width=0.125).eval()
    z = torch.randn(3, 4)
    assert torch.equal(pickle.loads(pickle.dumps(decoder))(z), decoder(z))


def test_unknown_name_lists_valid_names() -> None:
    match = r"unknown decoder 'pixelcnn'.*'mlp_small'.*'linear_deconv_selu'"
    with pytest.raises(ValueError, match=match):
        build_decoder("pixelcnn", (1, 28, 28), 16)


def test_bad_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="width"):
        build_decoder("mlp_small", (1, 28, 28), 16, width=0)
    with pytest.raises(ValueError, match="shape"):
        build_decoder("deconv_2x2", (1, 28, 30), 16)
    with pytest.raises(ValueError, match="latent_dim"):
        build_decoder("deconv_2x2", (1, 28, 28), 0)
