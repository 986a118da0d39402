"""The config -> trial spec handoff (``search/trial_specs.py``): one place, nothing lost, no drift."""
from __future__ import annotations

import dataclasses

import pytest

from search.config import DataConfig, ModelConfig, parse_config
from search.trial_specs import nll_spec, shared_encoder_spec, trial_spec
from trainables.spec import DataSpec, LossSchedule, NLLSpec, SharedEncoderSpec, TrialSpec
from trainables.vae import ModelSpec


@pytest.mark.parametrize(("section", "spec"), [(DataConfig, DataSpec), (ModelConfig, ModelSpec)])
def test_config_sections_and_specs_have_the_same_fields_and_defaults(section: type, spec: type) -> None:
    """A key added to one side only would be silently dropped (or never settable). ``search_path`` is
    the driver's finding (where a callable's module is), not a setting."""
    fields = {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
              for f in dataclasses.fields(spec) if f.name != "search_path"}
    assert set(section.model_fields) == set(fields)
    assert section().model_dump() == fields


def test_the_default_config_gives_the_default_trial() -> None:
    assert trial_spec(parse_config({})) == TrialSpec()


def test_every_setting_reaches_the_trial_spec() -> None:
    config = parse_config({
        "seed": 7,
        "data": {"name": "digits", "binarize": "static", "max_train": 100},
        "model": {"encoder": "mlp", "decoder": "deconv_2x2", "latent_dim": 4, "width": 0.5},
        "train": {"epochs": 3, "batch_size": 32, "lr": 0.01, "beta": 2.0, "free_bits": 0.1, "grad_clip": 5.0,
                  "eval_batch_size": 50, "n_images": 16, "schedule": {"name": "linear", "params": {"warmup_fraction": 0.2}}},
        "final_eval": {"trials": "all", "test_nll_k": 20, "chunk_size": 10, "max_examples": 30},
    })
    spec = trial_spec(config)
    assert spec.data == DataSpec(name="digits", binarize="static", max_train=100)
    assert spec.model == ModelSpec(encoder="mlp", decoder="deconv_2x2", latent_dim=4, width=0.5)
    assert spec.schedule == LossSchedule(name="linear", beta=2.0, params={"warmup_fraction": 0.2}, free_bits=0.1)
    assert (spec.epochs, spec.batch_size, spec.lr, spec.grad_clip, spec.eval_batch_size, spec.n_images) == (
        3, 32, 0.01, 5.0, 50, 16)
    assert spec.seed == spec.data_seed == 7
    assert spec.test_nll == nll_spec(config) == NLLSpec(k=20, chunk_size=10, max_examples=30)
    assert trial_spec(config, epochs=12).epochs == 12  # the bandit allocation's whole budget
    best_only = parse_config({"final_eval": {"trials": "best"}})
    assert trial_spec(best_only).test_nll is None  # the best trial gets it after the search instead


def test_free_bits_schedule_in_the_config_is_constant_beta_with_free_bits() -> None:
    spec = trial_spec(parse_config({"train": {"beta": 0.5, "schedule": {"name": "free_bits", "params": {"lam": 0.3}}}}))
    assert spec.schedule == LossSchedule(name="constant", beta=0.5, params={}, free_bits=0.3)


def test_shared_encoder_spec_from_the_bandit_section() -> None:
    config = parse_config({
        "seed": 3, "data": {"name": "digits"}, "model": {"latent_dim": 4, "width": 0.125},
        "train": {"batch_size": 64, "lr": 0.002, "beta": 0.5},
        "bandit": {"mode": "shared_encoder", "arms": ["mlp_small", "deconv_2x2"], "shared_encoder": {
            "policies": ["ucb1", "epsilon_greedy"], "policy_params": {"epsilon_greedy": {"epsilon": 0.1}},
            "epochs": 2, "eval_every": 5, "eval_batch_size": 50}},
    })
    spec = shared_encoder_spec(config)
    assert spec == SharedEncoderSpec(
        data=DataSpec(name="digits"), decoders=("mlp_small", "deconv_2x2"), latent_dim=4, width=0.125,
        policy="ucb1", policy_params_by_name={"epsilon_greedy": {"epsilon": 0.1}}, epochs=2, batch_size=64,
        lr=0.002, beta=0.5, eval_every=5, eval_batch_size=50, seed=3, data_seed=3)
    assert spec.with_overrides({"policy": "epsilon_greedy"}).policy_params == {"epsilon": 0.1}
