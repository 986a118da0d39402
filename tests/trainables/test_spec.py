"""The typed trial specs (``trainables.spec``): sampled values override them through one path."""
from __future__ import annotations

import pytest

from tests.trainables.small_vae import DIGITS_SPEC
from trainables.spec import (
    DataSpec,
    LossSchedule,
    ObjectiveSpec,
    SharedEncoderSpec,
    replace_path,
)
from trainables.vae import ModelSpec


def test_trial_spec_merges_base_and_sampled_config() -> None:
    spec = DIGITS_SPEC.with_overrides({"beta": 0.5, "latent_dim": 8, "decoder": "deconv_2x2", "lr": 1e-4,
                                "schedule": "cyclical", "schedule.cyclical.n_cycles": 2})
    assert spec.model == ModelSpec(encoder="mlp", decoder="deconv_2x2", latent_dim=8, width=0.25)
    assert spec.schedule == LossSchedule(name="cyclical", beta=0.5, params={"n_cycles": 2}, free_bits=0.0)
    assert spec.lr == 1e-4 and spec.epochs == 3 and spec.batch_size == 64
    # no override: the base schedule and its params stay
    spec = DIGITS_SPEC.with_overrides({})
    assert spec.schedule.name == "linear" and spec.schedule.params == {"warmup_fraction": 0.5}
    assert spec.vae_config((1, 8, 8)).latent_dim == 4


def test_dotted_paths_and_search_names_set_the_same_field() -> None:
    assert DIGITS_SPEC.with_overrides({"model.decoder": "deconv_4x4"}) == DIGITS_SPEC.with_overrides({"decoder": "deconv_4x4"})
    assert DIGITS_SPEC.with_overrides({"schedule.beta": 2.0}).schedule.beta == 2.0
    assert DIGITS_SPEC.with_overrides({"model.width": 0.5, "data.max_train": 100}).data.max_train == 100
    sampled = DIGITS_SPEC.with_overrides({"seed": 7})
    assert sampled.seed == 7 and sampled.data_seed == DIGITS_SPEC.data_seed  # the split stays the search's


def test_conditional_schedule_params_apply_only_to_the_chosen_schedule() -> None:
    spec = DIGITS_SPEC.with_overrides({"schedule": "constant", "schedule.linear.warmup_fraction": 0.9})
    assert spec.schedule.name == "constant" and spec.schedule.params == {}
    spec = DIGITS_SPEC.with_overrides({"schedule.linear.warmup_fraction": 0.9})  # the base schedule, new param
    assert spec.schedule.params == {"warmup_fraction": 0.9}


def test_free_bits_pseudo_schedule_is_constant_beta_with_free_bits() -> None:
    spec = DIGITS_SPEC.with_overrides({"schedule": "free_bits", "schedule.free_bits.lam": 0.2})
    assert spec.schedule == LossSchedule(name="constant", beta=1.0, params={}, free_bits=0.2)
    assert DIGITS_SPEC.with_overrides({"schedule": "free_bits"}).schedule.free_bits == 0.5  # λ's default


@pytest.mark.parametrize(("sampled", "message"), [
    ({"lerning_rate": 1.0}, r"unknown TrialSpec key 'lerning_rate'.*'lr'"),
    ({"decoder": "pixelcnn"}, r"unknown decoder 'pixelcnn'"),
    ({"schedule": "cosine"}, r"unknown schedule 'cosine'"),
    ({"schedule": "linear", "schedule.linear.warmup": 0.3}, r"'linear' has no parameter.*warmup_fraction"),
    ({"lr.x": 1.0}, r"TrialSpec.lr has no field 'x'"),
])
def test_unknown_sampled_keys_are_errors(sampled: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DIGITS_SPEC.with_overrides(sampled)


def test_replace_path_copies_and_leaves_the_original() -> None:
    copy = replace_path(DIGITS_SPEC, "model.latent_dim", 32)
    assert copy.model.latent_dim == 32 and DIGITS_SPEC.model.latent_dim == 4


SHARED = SharedEncoderSpec(
    data=DataSpec(name="mnist5k", binarize="static"), decoders=("mlp_small", "mlp_large"), policy="epsilon_greedy",
    policy_params_by_name={"epsilon_greedy": {"epsilon": 0.1}, "ucb1": {"c": 2.0}}, epochs=2, seed=3, data_seed=3,
)


def test_shared_encoder_spec_takes_the_grid_values() -> None:
    assert SHARED.policy_params == {"epsilon": 0.1} and SHARED.seed == SHARED.data_seed == 3
    spec = SHARED.with_overrides({"dataset": "digits", "policy": "thompson", "seed": 7})
    assert spec.data == DataSpec(name="digits", binarize="static")
    assert spec.policy == "thompson" and spec.policy_params == {}  # ε belongs to ε-greedy only
    assert spec.seed == 7 and spec.data_seed == 3  # the seed grid varies the model, not the split
    assert SHARED.with_overrides({"policy": "ucb1"}).policy_params == {"c": 2.0}


def test_shared_encoder_spec_refuses_bad_settings() -> None:
    with pytest.raises(ValueError, match="unknown SharedEncoderSpec key"):
        SHARED.with_overrides({"lerning_rate": 1.0})
    with pytest.raises(ValueError, match="unknown decoder"):
        SharedEncoderSpec(decoders=("mlp_tiny",))
    with pytest.raises(ValueError, match="ucb1.*epsilon"):
        SharedEncoderSpec(policy="ucb1", policy_params_by_name={"ucb1": {"epsilon": 0.3}})
    with pytest.raises(ValueError, match="eval_every"):
        SHARED.with_overrides({"eval_every": 0})


def test_prior_and_objective_are_chosen_with_their_conditional_params() -> None:
    spec = DIGITS_SPEC.with_overrides({"prior": "vampprior", "prior.vampprior.n_components": 7, "prior.mog.n_components": 3,
                                       "objective": "iwae", "objective.iwae.k": 4})
    assert spec.model.prior == "vampprior" and spec.model.prior_params == {"n_components": 7}
    assert spec.objective == ObjectiveSpec("iwae", {"k": 4}) and spec.objective.k == 4
    assert DIGITS_SPEC.objective.k == 1 and ObjectiveSpec("iwae").k == 5  # the ELBO; IWAE's default
    # a parameter of the kept prior alone; switching back drops the other prior's parameters
    assert spec.with_overrides({"prior.vampprior.init": "data"}).model.prior_params == {"n_components": 7, "init": "data"}
    assert spec.with_overrides({"prior": "standard_normal"}).model.prior_params == {}
    spec.check()


@pytest.mark.parametrize(("sampled", "message"), [
    ({"prior": "mog", "free_bits": 0.5}, r"free bits .* 'mog' prior's rate is a Monte Carlo estimate.*set train.free_bits: 0"),
    ({"objective": "iwae", "schedule": "free_bits"}, r"train.objective 'iwae' has no free bits"),
    ({"objective": "iwae", "schedule": "capacity"}, r"train.objective 'iwae' has no capacity schedule"),
    ({"prior": "vampprior", "prior.vampprior.init": "data"}, r"n_components=50 distinct training images, but there are 20"),
    ({"prior": "vampprior", "prior.vampprior.n_components": 0}, r"n_components must be an int >= 1"),
    ({"objective": "iwae", "objective.iwae.k": 0}, r"objective.iwae.k must be an int >= 1"),
    ({"objective": "iwea"}, r"unknown objective 'iwea'; valid names: \['elbo', 'iwae'\]"),
    ({"prior": "mog", "prior.mog.init": "data"}, r"prior 'mog' has no parameter"),
])
def test_combinations_a_trial_refuses(sampled: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        DIGITS_SPEC.with_overrides(sampled).check(n_train=20)
