"""The β-conditioned VAE: at a fixed β it is the plain β-VAE (same weights, batch and noise give the
same loss and the same training step), and a short training on the digits gives a curve whose rate
falls as β grows."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from trainables.beta_conditioned import BetaConditionedObjective, BetaConditionedVAE, conditioned_loss, curve_metrics
from trainables.beta_conditioning import CURVE_LOSS, BetaConditioning, curve_points, point_key
from trainables.checkpoint import TrainState, load_model, save_checkpoint
from trainables.data import DatasetSplits
from trainables.objectives import vae_loss
from trainables.plugins import probe_model
from trainables.registry import Plugin, PluginError
from trainables.schedules import KLWeight
from trainables.spec import DataSpec, LossSchedule, ObjectiveSpec, TrialSpec
from trainables.train_loop import train_epoch
from trainables.vae import VAE, ModelSpec, VAEConfig, build_vae

RANGE = BetaConditioning(low=0.1, high=10.0, grid=5)


def _pair(digits: DatasetSplits) -> tuple[VAE, BetaConditionedVAE]:
    """A plain VAE and a β-conditioned one holding the plain one's weights (its FiLM untrained)."""
    config = VAEConfig(shape=digits.shape, latent_dim=4, encoder="mlp", decoder="mlp_small", width=0.25)
    torch.manual_seed(0)
    plain = build_vae(config)
    torch.manual_seed(1)   # other initial weights: the copy below is what makes them equal
    conditioned = build_vae(dataclasses.replace(config, beta_conditioned=RANGE))
    assert isinstance(conditioned, BetaConditionedVAE)
    missing, unexpected = conditioned.load_state_dict(plain.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith(("embed.", "encoder_film.", "decoder_film.")) for k in missing)
    return plain, conditioned


@pytest.mark.parametrize("beta", [0.1, 0.7, 1.0, 6.0])
def test_at_a_fixed_beta_the_loss_is_the_plain_beta_vae_loss(digits: DatasetSplits, beta: float) -> None:
    plain, conditioned = _pair(digits)
    x = digits.train[:32]
    torch.manual_seed(7)   # the same reparameterisation noise for both
    out = plain(x)
    expected = vae_loss(out.log_px_z, out.kl_per_dim, KLWeight(beta=beta))
    torch.manual_seed(7)
    out_c = conditioned(x, beta=torch.full((32,), beta))
    got = conditioned_loss(out_c.log_px_z, out_c.kl_per_dim, torch.full((32,), beta))
    assert torch.equal(out_c.log_px_z, out.log_px_z) and torch.equal(out_c.kl_per_dim, out.kl_per_dim)
    assert torch.equal(got.distortion, expected.distortion) and torch.equal(got.rate, expected.rate)
    # mean(D_i + β R_i) against mean(D) + β mean(R): the same number, summed in another order
    assert got.loss.item() == pytest.approx(expected.loss.item(), rel=1e-6)


def test_at_a_fixed_beta_one_training_step_is_the_plain_models_step(digits: DatasetSplits) -> None:
    plain, conditioned = _pair(digits)
    x, beta = digits.train[:64], 2.0
    opt_p = torch.optim.Adam(plain.parameters(), lr=1e-2)
    opt_c = torch.optim.Adam(conditioned.parameters(), lr=1e-2)
    torch.manual_seed(3)
    out = plain(x)
    vae_loss(out.log_px_z, out.kl_per_dim, KLWeight(beta=beta)).loss.backward()
    torch.manual_seed(3)
    out_c = conditioned(x, beta=beta)
    conditioned_loss(out_c.log_px_z, out_c.kl_per_dim, torch.full((64,), beta)).loss.backward()
    opt_p.step()
    opt_c.step()
    after = conditioned.state_dict()
    for name, value in plain.state_dict().items():
        torch.testing.assert_close(after[name], value, rtol=1e-5, atol=1e-6, msg=name)


@pytest.fixture(scope="module")
def trained(digits: DatasetSplits) -> BetaConditionedVAE:
    """A toy β-conditioned VAE trained on the digits for a few seconds (β per example from 0.1..10)."""
    torch.manual_seed(0)
    model = build_vae(VAEConfig(shape=digits.shape, latent_dim=8, encoder="mlp", decoder="mlp_small", width=0.25,
                                beta_conditioned=RANGE))
    assert isinstance(model, BetaConditionedVAE)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    objective, rng = BetaConditionedObjective(RANGE), torch.Generator().manual_seed(0)
    epochs, step = 40, 0
    for _ in range(epochs):
        stats = train_epoch(model, opt, digits.train, batch_size=64, schedule=LossSchedule(), step=step,
                            total_steps=epochs * 30, binarize=digits.binarize, generator=rng, objective=objective)
        step += stats.steps
    return model.eval()


def test_the_curve_of_a_trained_model_has_rate_falling_as_beta_grows(trained: BetaConditionedVAE,
                                                                      digits: DatasetSplits) -> None:
    metrics = curve_metrics(trained, digits.val, seed=0)
    points = curve_points(metrics)
    assert [b for b, _, _ in points] == pytest.approx(RANGE.betas(), rel=1e-3)   # named with 4 digits
    rates = [r for _, r, _ in points]
    distortions = [d for _, _, d in points]
    assert all(a >= b for a, b in zip(rates, rates[1:])), rates
    assert rates[0] > 3 * rates[-1] + 1.0, rates            # the range spans a real curve, not one point
    assert distortions[0] < distortions[-1], distortions    # what the rate buys
    grid_loss = [d + b * r for b, r, d in points]
    assert metrics[CURVE_LOSS] == pytest.approx(sum(grid_loss) / len(grid_loss), rel=1e-4)   # β rounded in the names


def test_calls_that_name_no_beta_run_at_the_models_beta(trained: BetaConditionedVAE, digits: DatasetSplits) -> None:
    x = digits.val[:16]
    assert trained.beta == RANGE.reference_beta == 1.0
    with trained.at_beta(0.1):
        low = trained.encode(x)
    assert trained.beta == 1.0
    torch.testing.assert_close(low.mu, trained.encode(x, beta=0.1).mu)
    assert not torch.allclose(low.mu, trained.encode(x).mu)   # trained: β changes the posterior


def test_a_checkpoint_loads_back_as_the_same_beta_conditioned_model(trained: BetaConditionedVAE,
                                                                     digits: DatasetSplits, tmp_path) -> None:
    save_checkpoint(tmp_path, trained, torch.optim.Adam(trained.parameters()), TrainState(1, 1), torch.Generator())
    loaded = load_model(tmp_path)
    assert isinstance(loaded, BetaConditionedVAE) and loaded.config == trained.config
    assert curve_metrics(loaded, digits.val, seed=0) == curve_metrics(trained, digits.val, seed=0)


def test_the_range_grid_sampling_and_metric_names() -> None:
    assert RANGE.betas()[0] == pytest.approx(0.1) and RANGE.betas()[-1] == pytest.approx(10.0)
    assert RANGE.betas()[2] == pytest.approx(1.0)      # log-spaced
    torch.manual_seed(0)
    b = RANGE.sample(10_000)
    assert 0.1 <= b.min() and b.max() <= 10.0
    assert (b < 1.0).float().mean().item() == pytest.approx(0.5, abs=0.03)   # log-uniform: half below √(low·high)
    assert BetaConditioning(low=2.0, high=8.0).reference_beta == 2.0
    metrics = {point_key(0.1, "rate"): 3.0, point_key(0.1, "distortion"): 20.0, point_key(10.0, "rate"): 0.5,
               point_key(10.0, "distortion"): 30.0, "val/rate": 1.0, point_key(1.0, "rate"): 2.0}
    assert curve_points(metrics) == [(0.1, 3.0, 20.0), (10.0, 0.5, 30.0)]   # a point needs both
    assert curve_points({"val/rate": 1.0}) == []
    with pytest.raises(ValueError, match="low < high"):
        BetaConditioning(low=1.0, high=1.0)
    with pytest.raises(ValueError, match="grid must be an int >= 2"):
        BetaConditioning(grid=1)


def _spec(**changes: object) -> TrialSpec:
    spec = TrialSpec(data=DataSpec(name="digits"), model=ModelSpec(encoder="mlp", latent_dim=4, width=0.25,
                                                                   beta_conditioned=RANGE), epochs=1)
    return dataclasses.replace(spec, **changes)


@pytest.mark.parametrize(("changes", "message"), [
    ({"schedule": LossSchedule(beta=2.0)}, "train.beta .or a searched search.space.beta. must stay 1"),
    ({"schedule": LossSchedule(name="capacity")}, "no capacity schedule"),
    ({"schedule": LossSchedule(free_bits=0.5)}, "set train.free_bits: 0"),
    ({"objective": ObjectiveSpec(name="iwae")}, "set train.objective: elbo"),
])
def test_settings_a_beta_conditioned_trial_cannot_take_are_refused(changes: dict, message: str) -> None:
    _spec().check()
    with pytest.raises(ValueError, match=message) as err:
        _spec(**changes).check()
    assert "drop model.beta_conditioned" in str(err.value)


def _config(plugs: tuple[str, str], cls: str, **kwargs: object) -> VAEConfig:
    module, directory = plugs
    return VAEConfig(shape=(1, 8, 8), latent_dim=4, decoder="mlp_small", width=0.25, beta_conditioned=RANGE,
                     encoder=Plugin(path=f"{module}:{cls}", kwargs=dict(kwargs), search_path=directory))


def _plugin_model(plugs: tuple[str, str], cls: str) -> BetaConditionedVAE:
    torch.manual_seed(0)
    model = build_vae(_config(plugs, cls))
    assert isinstance(model, BetaConditionedVAE)
    return model


def test_a_plug_in_encoder_with_feature_dim_and_modulate_is_conditioned_on_beta(plugs: tuple[str, str]) -> None:
    model = _plugin_model(plugs, "ModulatedEncoder")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        plain = model.encoder(x)                     # no modulate: the plug-in alone
        low, high = model.encode(x, beta=0.1), model.encode(x, beta=10.0)
        assert torch.equal(low.mu, plain.mu) and torch.equal(high.logvar, plain.logvar)   # zero-initialised FiLM
        torch.nn.init.normal_(model.encoder_film.proj.weight)                           # as if trained
        low, high = model.encode(x, beta=0.1), model.encode(x, beta=10.0)
    assert not torch.allclose(low.mu, high.mu)      # modulate reached the plug-in's features
    probe_model(model.config)                       # what `vaesearch validate` runs passes


def test_a_plug_in_encoder_without_the_hook_is_refused_naming_what_it_lacks(plugs: tuple[str, str]) -> None:
    with pytest.raises(PluginError) as err:
        _plugin_model(plugs, "TinyEncoder")
    message = str(err.value)
    assert "TinyEncoder" in message and "an int attribute feature_dim > 0 (got None)" in message
    assert "a forward(x, modulate=None) argument" in message and "use model.encoder mlp or conv" in message


def test_a_plug_in_encoder_declaring_the_wrong_feature_dim_fails_the_probe(plugs: tuple[str, str]) -> None:
    with pytest.raises(PluginError, match=r"ModulatedEncoder.*forward raised RuntimeError.*β-conditioned"):
        probe_model(_config(plugs, "ModulatedEncoder", wrong=True))


def test_a_plug_in_decoder_is_accepted() -> None:
    plugin = Plugin(path="tests.plugin_files:Whatever")
    assert ModelSpec(decoder=plugin, beta_conditioned=RANGE).decoder == plugin


def test_the_conditioned_loss_weights_each_example_by_its_own_beta() -> None:
    log_px_z = torch.tensor([-10.0, -20.0])
    kl = torch.tensor([[1.0, 1.0], [3.0, 0.0]])
    terms = conditioned_loss(log_px_z, kl, torch.tensor([0.5, 2.0]))
    assert terms.loss.item() == pytest.approx(((10 + 0.5 * 2) + (20 + 2.0 * 3)) / 2)
    assert terms.rate.item() == pytest.approx(2.5) and terms.distortion.item() == pytest.approx(15.0)
    assert math.isfinite(terms.loss.item())
