"""Config validation: every kind of bad value gives a message naming the key, the value and what is allowed."""
from __future__ import annotations

from pathlib import Path

import pytest

from search.cli import main
from search.config import ConfigError, FloatRange, IntRange, load_config, parse_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path: Path) -> None:
    config = load_config(path)
    assert config.search.num_samples >= 1


def test_defaults_fill_every_section() -> None:
    config = parse_config({})
    assert config.data.name == "mnist5k"
    assert config.search.metric == "val/nelbo" and config.search.mode == "min"
    assert config.tracking.uri.startswith("sqlite:///")


def test_space_types_are_parsed() -> None:
    config = parse_config(
        {"search": {"space": {"beta": {"low": 0.1, "high": 2, "log": True}, "latent_dim": {"low": 2, "high": 64},
                              "decoder": ["mlp_small", "deconv_2x2"], "lr": 0.001}}}
    )
    space = config.search.space
    assert isinstance(space.beta, FloatRange) and space.beta.log
    assert isinstance(space.latent_dim, IntRange)
    assert space.decoder == ["mlp_small", "deconv_2x2"]
    assert space.lr == 0.001


def _error(data: dict) -> str:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return str(info.value)


def test_unknown_top_level_key_lists_allowed_keys() -> None:
    msg = _error({"trian": {"epochs": 3}})
    assert "trian" in msg and "unknown key" in msg
    assert "train" in msg and "search" in msg


def test_unknown_nested_key_lists_the_section_keys() -> None:
    msg = _error({"train": {"epoch": 3}})
    assert "train.epoch" in msg and "epochs" in msg and "batch_size" in msg


def test_unknown_decoder_lists_registered_decoders() -> None:
    msg = _error({"model": {"decoder": "resnet"}})
    assert "model.decoder" in msg and "'resnet'" in msg
    for name in ("mlp_small", "mlp_large", "deconv_2x2", "deconv_4x4", "linear_deconv_selu"):
        assert name in msg


def test_unknown_decoder_in_space() -> None:
    msg = _error({"search": {"space": {"decoder": ["mlp_small", "vit"]}}})
    assert "search.space.decoder" in msg and "'vit'" in msg and "deconv_2x2" in msg


def test_unknown_dataset() -> None:
    msg = _error({"data": {"name": "imagenet"}})
    assert "data.name" in msg and "imagenet" in msg and "mnist5k" in msg and "cifar10" in msg


def test_bad_literal_names_allowed_values() -> None:
    msg = _error({"data": {"binarize": "sometimes"}})
    assert "data.binarize" in msg and "sometimes" in msg and "dynamic" in msg and "static" in msg


def test_out_of_range_number() -> None:
    msg = _error({"train": {"epochs": 0}})
    assert "train.epochs" in msg and "greater than or equal to 1" in msg and "got 0" in msg


def test_wrong_type() -> None:
    msg = _error({"train": {"batch_size": "big"}})
    assert "train.batch_size" in msg and "'big'" in msg


def test_reversed_range() -> None:
    msg = _error({"search": {"space": {"beta": {"low": 4.0, "high": 0.5}}}})
    assert "search.space.beta" in msg and "low < high" in msg


def test_log_range_needs_positive_low() -> None:
    msg = _error({"search": {"space": {"lr": {"low": 0.0, "high": 0.1, "log": True}}}})
    assert "search.space.lr" in msg and "low > 0" in msg


def test_unknown_schedule_and_schedule_param() -> None:
    msg = _error({"search": {"space": {"schedule": {"exponential": {}}}}})
    assert "exponential" in msg and "cyclical" in msg and "free_bits" in msg
    msg = _error({"search": {"space": {"schedule": {"cyclical": {"cycles": [2, 4]}}}}})
    assert "'cycles'" in msg and "n_cycles" in msg and "ratio" in msg


def test_fixed_schedule_param_checked() -> None:
    msg = _error({"train": {"schedule": {"name": "linear", "params": {"warmup": 0.2}}}})
    assert "warmup" in msg and "warmup_fraction" in msg


def test_mode_must_be_min() -> None:
    msg = _error({"search": {"mode": "max"}})
    assert "search.mode" in msg and "'max'" in msg


def test_empty_categorical_rejected() -> None:
    msg = _error({"search": {"space": {"latent_dim": []}}})
    assert "latent_dim" in msg and "empty" in msg


def test_fractional_gpu_above_one_rejected() -> None:
    msg = _error({"resources": {"gpu": 1.5}})
    assert "resources.gpu" in msg and "1.5" in msg


def test_several_errors_reported_together() -> None:
    msg = _error({"train": {"epochs": -1, "lr": 0}, "data": {"binarize": "x"}})
    assert "train.epochs" in msg and "train.lr" in msg and "data.binarize" in msg


def test_load_config_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: {epochs: zero}\n")
    with pytest.raises(ConfigError) as info:
        load_config(bad)
    assert str(bad) in str(info.value) and "train.epochs" in str(info.value)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    evil = tmp_path / "evil.yaml"
    evil.write_text("name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(evil)


def test_cli_validate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(CONFIGS / "quickstart.yaml")]) == 0
    assert "OK" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: {decoder: resnet}\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "model.decoder" in err and "mlp_small" in err


def test_priors_and_objectives_in_the_config_and_the_space() -> None:
    config = parse_config({
        "model": {"prior": "vampprior", "prior_params": {"n_components": 20, "init": "data"}},
        "train": {"objective": "iwae"},
        "search": {"space": {"prior": ["standard_normal", "mog"],
                             "objective": {"elbo": {}, "iwae": {"k": {"low": 2, "high": 50.0, "log": True}}}}},
    })
    assert config.model.prior_params == {"n_components": 20, "init": "data"}
    assert config.train.objective.name == "iwae" and config.train.objective.params == {}
    assert config.search.space.prior == {"standard_normal": {}, "mog": {}}  # a list: each with its defaults
    assert config.search.space.objective["iwae"]["k"] == IntRange(low=2, high=50, log=True)  # k is an integer
    assert parse_config({"train": {"objective": {"name": "iwae", "params": {"k": 10}}}}).train.objective.params == {"k": 10}


@pytest.mark.parametrize(("data", "message"), [
    ({"model": {"prior": "vamp"}}, "model.prior: unknown prior 'vamp'; valid names: ['standard_normal', 'mog', 'vampprior']"),
    ({"model": {"prior": "mog", "prior_params": {"init": "data"}}}, "prior 'mog' has no parameter 'init'; allowed: n_components"),
    ({"train": {"objective": "iwea"}}, "unknown objective 'iwea'"),
    ({"train": {"objective": {"name": "iwae", "params": {"n": 3}}}}, "objective 'iwae' has no parameter 'n'; allowed: k"),
    ({"search": {"space": {"prior": {"vampprior": {"k": [1, 2]}}}}}, "prior 'vampprior' has no parameter 'k'"),
    ({"search": {"space": {"objective": []}}}, "give at least one objective name"),
])
def test_bad_priors_and_objectives_are_named(data: dict, message: str) -> None:
    assert message in _error(data)


def test_shared_encoder_mode_refuses_a_learnt_prior_and_iwae() -> None:
    from search.roles import BANDIT_SHARED_ENCODER
    from search.runnable import check_runnable

    config = parse_config({"data": {"name": "digits"}, "model": {"prior": "mog"}, "train": {"objective": "iwae"},
                           "bandit": {"mode": "shared_encoder"}})
    with pytest.raises(ConfigError) as info:
        check_runnable(config, BANDIT_SHARED_ENCODER)
    assert "model.prior='mog': the shared-encoder mode trains with the N(0, I) prior only" in str(info.value)
    assert "train.objective='iwae': the shared-encoder mode trains with the ELBO only" in str(info.value)
    check_runnable(parse_config({"data": {"name": "digits"}, "bandit": {"mode": "shared_encoder"}}), BANDIT_SHARED_ENCODER)


BETA_CONDITIONED = {"data": {"name": "digits"}, "model": {"encoder": "mlp", "beta_conditioned": {"low": 0.2, "high": 5}},
                    "search": {"objective": "rate_distortion", "space": {"latent_dim": [2, 4]}}}


def test_beta_conditioned_model_in_the_config_and_the_trial_spec() -> None:
    from search.searchers import objectives
    from search.trial_specs import trial_spec
    from trainables.beta_conditioning import CURVE_LOSS, BetaConditioning

    config = parse_config(BETA_CONDITIONED)
    assert trial_spec(config).model.beta_conditioned == BetaConditioning(low=0.2, high=5.0, grid=8)
    assert objectives(config) == (CURVE_LOSS, "min")   # one score per trial's curve
    on = parse_config({**BETA_CONDITIONED, "model": {"encoder": "mlp", "beta_conditioned": True}})
    assert on.model.beta_conditioned is not None and on.model.beta_conditioned.high == 10.0
    assert parse_config({"model": {"beta_conditioned": False}}).model.beta_conditioned is None


@pytest.mark.parametrize(("change", "message"), [
    ({"search": {"space": {"beta": [0.5, 1.0]}, "objective": "rate_distortion"}},
     "search.space.beta: a β-conditioned model (model.beta_conditioned) learns every β from low to high in one "
     "trial; remove search.space.beta"),
    ({"search": {"space": {"latent_dim": [2, 4]}}},
     "model.beta_conditioned traces a rate–distortion curve per trial, which only the rate–distortion search reads: "
     "set search.objective: rate_distortion"),
    ({"model": {"beta_conditioned": {"low": 3, "high": 1}}}, "model.beta_conditioned needs low < high"),
    ({"model": {"beta_conditioned": {"grid": 1}}}, "model.beta_conditioned.grid"),
    ({"model": {"beta_conditioned": {"lo": 1}}}, "model.beta_conditioned.lo: unknown key; allowed keys here: low, high, grid"),
])
def test_beta_conditioned_settings_that_cannot_work_are_named(change: dict, message: str) -> None:
    assert message in _error({**BETA_CONDITIONED, **change})


@pytest.mark.parametrize(("change", "message"), [
    ({"train": {"beta": 2.0}}, "train.beta (or a searched search.space.beta) must stay 1"),
    ({"train": {"objective": "iwae"}}, "set train.objective: elbo, or drop model.beta_conditioned"),
    ({"search": {"objective": "rate_distortion", "space": {"latent_dim": [2, 4], "schedule": {"capacity": {}}}}},
     "search.space.schedule='capacity': a trial with it could not start: model.beta_conditioned has no capacity schedule"),
])
def test_validate_refuses_what_a_beta_conditioned_trial_cannot_train(change: dict, message: str) -> None:
    from search.runnable import check_runnable

    with pytest.raises(ConfigError) as info:
        check_runnable(parse_config({**BETA_CONDITIONED, **change}))
    assert message in str(info.value)


def test_the_bandit_modes_refuse_a_beta_conditioned_model() -> None:
    from search.roles import BANDIT_ALLOCATION
    from search.runnable import check_runnable

    with pytest.raises(ConfigError, match="model.beta_conditioned: the bandit modes rank decoders by one metric"):
        check_runnable(parse_config({**BETA_CONDITIONED, "bandit": {"arms": ["mlp_small", "deconv_2x2"]}}),
                       BANDIT_ALLOCATION)


def test_bandit_arm_comparison_defaults_to_pairwise_and_names_its_choices() -> None:
    assert parse_config({}).search.arm_comparison == "pairwise"
    assert parse_config({"search": {"arm_comparison": "common_step"}}).search.arm_comparison == "common_step"
    msg = _error({"search": {"arm_comparison": "final"}})
    assert "search.arm_comparison" in msg and "pairwise" in msg and "common_step" in msg
