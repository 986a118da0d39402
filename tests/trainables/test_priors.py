"""The priors (``trainables.priors``) against ``torch.distributions``, and the VampPrior's wiring
into the VAE (its components are the VAE's own encoder's posteriors)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import Categorical, Independent, MixtureSameFamily, Normal

from trainables.gaussian import Posterior, diag_gaussian_log_prob
from trainables.priors import (
    MixtureOfGaussiansPrior,
    StandardNormalPrior,
    VampPrior,
    build_prior,
    per_dimension_kl,
    prior_parameters,
)
from trainables.vae import VAEConfig, build_vae

D = 3
SHAPE = (1, 8, 8)


def _reference(log_weights: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor) -> MixtureSameFamily:
    return MixtureSameFamily(Categorical(logits=log_weights), Independent(Normal(mu, torch.exp(0.5 * logvar)), 1))


def _points(n: int = 64, scale: float = 3.0) -> torch.Tensor:
    # Far points too: a mis-bracketed logsumexp (pythae's old bug) shows in the tails.
    return torch.randn((n, D), generator=torch.Generator().manual_seed(1)) * scale


def test_mog_log_prob_equals_mixture_same_family_on_random_parameters() -> None:
    torch.manual_seed(0)
    prior = MixtureOfGaussiansPrior(D, n_components=7)
    with torch.no_grad():
        prior.logits.normal_()
        prior.logvars.uniform_(-2.0, 1.0)
    z = _points()
    expected = _reference(prior.log_weights().detach(), prior.means.detach(), prior.logvars.detach()).log_prob(z)
    assert torch.allclose(prior.log_prob(z), expected, atol=1e-5)
    assert prior.log_prob(z.view(8, 8, D)).shape == (8, 8)  # any leading shape


class _LinearEncoder(nn.Module):
    """q(z|u) = N(W u, diag(exp(V u))): known posteriors of the pseudo-inputs."""

    def __init__(self, zero: bool = False) -> None:
        super().__init__()
        self.mu = nn.Linear(math.prod(SHAPE), D)
        self.logvar = nn.Linear(math.prod(SHAPE), D)
        if zero:
            for p in self.parameters():
                nn.init.zeros_(p)

    def forward(self, x: torch.Tensor) -> Posterior:
        flat = x.flatten(1)
        return Posterior(mu=self.mu(flat), logvar=self.logvar(flat))


def test_vampprior_log_prob_equals_the_uniform_mixture_of_its_encoder_posteriors() -> None:
    torch.manual_seed(0)
    encoder = _LinearEncoder()
    prior = VampPrior(D, SHAPE, encoder, n_components=5)
    with torch.no_grad():
        prior.pseudo.weight.uniform_(-0.5, 1.5)  # some squashed to the data range [0, 1]
        u = prior.pseudo.weight.T.clamp(0, 1)  # (K, C·H·W): the pseudo-inputs by hand
        post = encoder(u)
    assert torch.allclose(prior.pseudo_inputs().flatten(1), u)
    expected = _reference(torch.zeros(5), post.mu, post.logvar).log_prob(_points())
    assert torch.allclose(prior.log_prob(_points()), expected, atol=1e-5)


@pytest.mark.parametrize("name", ["mog", "vampprior"])
def test_one_standard_normal_component_is_the_standard_normal(name: str) -> None:
    if name == "mog":
        prior = MixtureOfGaussiansPrior(D, n_components=1)
        with torch.no_grad():
            prior.means.zero_()
    else:  # an encoder that maps every input to N(0, I)
        prior = VampPrior(D, SHAPE, _LinearEncoder(zero=True), n_components=1)
    z = _points()
    assert torch.allclose(prior.log_prob(z), StandardNormalPrior(D).log_prob(z), atol=1e-5)


def test_mixture_rate_is_the_monte_carlo_estimate_and_standard_normal_is_analytic() -> None:
    post = Posterior(mu=torch.randn(4, D), logvar=torch.randn(4, D) * 0.3)
    z = post.mu + torch.randn(4, D)
    mog = MixtureOfGaussiansPrior(D, n_components=3)
    assert torch.allclose(mog.rate(post, z), (diag_gaussian_log_prob(z, post.mu, post.logvar) - mog.log_prob(z))[:, None])
    std = StandardNormalPrior(D)
    assert std.rate(post, z).shape == (4, D) and torch.equal(std.rate(post, z), std.kl(post.mu, post.logvar))
    assert per_dimension_kl("standard_normal") and not per_dimension_kl("mog") and not per_dimension_kl("vampprior")


def test_mixture_samples_follow_the_mixture() -> None:
    prior = MixtureOfGaussiansPrior(1, n_components=2)
    with torch.no_grad():
        prior.means.copy_(torch.tensor([[-4.0], [4.0]]))
        prior.logvars.fill_(math.log(0.25))
        prior.logits.copy_(torch.tensor([0.0, math.log(3.0)]))  # weights 1/4, 3/4
    z = prior.sample(20_000, generator=torch.Generator().manual_seed(0))
    assert z.shape == (20_000, 1)
    assert (z > 0).float().mean().item() == pytest.approx(0.75, abs=0.015)
    assert z[z > 0].std().item() == pytest.approx(0.5, abs=0.02)


def _vamp_vae(encoder: str = "conv", **params: object):
    torch.manual_seed(0)
    return build_vae(VAEConfig(shape=SHAPE, latent_dim=D, encoder=encoder, decoder="mlp_small", width=0.25,
                               prior="vampprior", prior_params={"n_components": 6, **params}))


def test_vampprior_uses_the_vaes_own_encoder_and_saves_it_once() -> None:
    model = _vamp_vae()
    assert model.prior._encoder is model.encoder
    assert not any(k.startswith("prior._encoder") or k.startswith("prior.encoder") for k in model.state_dict())
    model.prior.log_prob(torch.randn(5, D)).sum().backward()  # the prior trains the encoder and the pseudo-inputs
    assert model.encoder.head.weight.grad.abs().sum() > 0 and model.prior.pseudo.weight.grad.abs().sum() > 0
    # a state dict round trip gives the same prior
    clone = _vamp_vae()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.01)
    clone.load_state_dict(model.state_dict())
    z = torch.randn(5, D)
    model.eval(), clone.eval()
    assert torch.allclose(clone.prior.log_prob(z), model.prior.log_prob(z))


def test_vampprior_leaves_the_encoders_batch_norm_statistics_alone() -> None:
    model = _vamp_vae("conv")
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" in k}
    model.prior.log_prob(torch.randn(5, D))
    assert model.encoder.training  # the encoder's mode is restored
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_vampprior_init_from_data_takes_distinct_training_images() -> None:
    images = torch.rand(40, *SHAPE)
    model = _vamp_vae(init="data")
    model.prior.init_from_data(images, generator=torch.Generator().manual_seed(0))
    u = model.prior.pseudo_inputs()  # (K, C, H, W)
    matches = [(images == u[k]).flatten(1).all(1).nonzero().flatten().tolist() for k in range(6)]
    assert all(len(m) == 1 for m in matches) and len({m[0] for m in matches}) == 6
    random_init = _vamp_vae()  # init random: the hook changes nothing
    weights = random_init.prior.pseudo.weight.clone()
    random_init.prior.init_from_data(images)
    assert torch.equal(weights, random_init.prior.pseudo.weight)
    with pytest.raises(ValueError, match="n_components <= the training images"):
        _vamp_vae(init="data").prior.init_from_data(images[:3])


def test_prior_parameters_and_their_errors() -> None:
    assert prior_parameters("vampprior") == {"n_components": 50, "init": "random"}
    assert prior_parameters("mog") == {"n_components": 10}
    assert prior_parameters("standard_normal") == {}
    with pytest.raises(ValueError, match=r"prior 'mog' has no parameter\(s\) \['init'\]"):
        build_prior("mog", D, params={"init": "data"})
    with pytest.raises(ValueError, match="n_components must be an int >= 1"):
        build_prior("mog", D, params={"n_components": 0})
    with pytest.raises(ValueError, match="init must be one of"):
        _vamp_vae(init="kmeans")
    with pytest.raises(ValueError, match="needs the VAE's encoder"):
        build_prior("vampprior", D)
    with pytest.raises(ValueError, match="has no parameter"):
        VAEConfig(shape=SHAPE, prior="standard_normal", prior_params={"n_components": 3})


def test_a_learnt_prior_is_written_beside_the_images_for_mlflow(tmp_path) -> None:
    """The VampPrior's pseudo-inputs as an image grid and its summary as JSON; a mixture of
    Gaussians' weights, means and scales as JSON; nothing extra for N(0, I). (The driver logs
    them to the child run: tests/search/test_run_integration.py.)"""
    import json

    from trainables.checkpoint import PRIOR_JSON, PSEUDO_INPUTS_PNG
    from trainables.ray_trainables import write_images

    for prior, params in (("vampprior", {"n_components": 4}), ("mog", {"n_components": 3}), ("standard_normal", {})):
        model = build_vae(VAEConfig(shape=SHAPE, latent_dim=2, encoder="mlp", decoder="mlp_small", width=0.125,
                                    prior=prior, prior_params=params))
        directory = tmp_path / prior
        directory.mkdir()
        write_images(model, torch.rand(4, *SHAPE), directory, n_samples=4, seed=0)
        assert (directory / PSEUDO_INPUTS_PNG).is_file() == (prior == "vampprior")
        if prior == "standard_normal":
            assert not (directory / PRIOR_JSON).exists()
            continue
        summary = json.loads((directory / PRIOR_JSON).read_text())
        if prior == "mog":
            assert summary["weights"] == pytest.approx([1 / 3] * 3) and len(summary["scales"]) == 3
        else:
            assert len(summary["component_means"]) == 4 and summary["init"] == "random"
