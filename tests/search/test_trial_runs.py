"""Child runs' names, effective params and the stopped-early tag (pure, no MLflow)."""
from __future__ import annotations

from search.config import parse_config
from search.trial_runs import STOPPED_BY_TAG, TrialRunStyle, config_path, run_name, searched_paths, trial_number


def test_a_run_name_says_what_the_trial_is() -> None:
    config = {"decoder": "deconv_4x4", "beta": 0.5123, "latent_dim": 32, "schedule": "cyclical",
              "schedule.cyclical.ratio": 0.4}
    assert run_name("54ae423b_00007", config) == "t07 deconv_4x4 β=0.512 z=32 cyclical"
    assert run_name("54ae423b_00012", {"lr": 0.0003}) == "t12 lr=0.0003"
    assert run_name("odd", {"policy": "ucb", "seed": 3}) == "odd seed=3 ucb"
    assert trial_number("abc_00003") == 3 and trial_number("abc") is None
    assert trial_number("5f3e9a01", "4_beta=0.5,decoder=mlp") == 4   # a searcher's trial: its tag
    assert run_name("5f3e9a01", {"decoder": "mlp"}, "4_decoder=mlp") == "t04 mlp"


def test_sampled_keys_map_to_their_config_paths() -> None:
    assert config_path("beta") == "train.beta" and config_path("decoder") == "model.decoder"
    assert config_path("schedule.linear.warmup_fraction") == "train.schedule.params.warmup_fraction"
    assert searched_paths(["decoder", "schedule"]) == {"model.decoder", "train.schedule.name", "train.schedule.params"}


def test_params_are_the_effective_config_with_the_sampled_values_over_it() -> None:
    config = parse_config({"model": {"encoder": "mlp", "width": 0.5},
                           "train": {"epochs": 3, "schedule": {"name": "linear", "params": {"warmup_fraction": 0.5}}},
                           "final_eval": {"test_nll_k": 20}})
    style = TrialRunStyle.of(config, planned_epochs=3, stopped_by="asha")
    same = style.params({"beta": 0.3})
    assert same["model.encoder"] == "mlp" and same["model.width"] == 0.5 and "model.likelihood" in same
    assert same["train.beta"] == same["beta"] == 0.3 and same["train.schedule.params.warmup_fraction"] == 0.5
    assert same["final_eval.test_nll_k"] == 20
    other = style.params({"schedule": "cyclical", "schedule.cyclical.ratio": 0.25})
    assert other["train.schedule.name"] == "cyclical" and other["train.schedule.params.ratio"] == 0.25
    assert "train.schedule.params.warmup_fraction" not in other   # the base schedule's param does not apply


def test_only_a_trial_that_ended_before_its_planned_epochs_is_tagged() -> None:
    style = TrialRunStyle(planned_epochs=4, stopped_by="bandit")
    assert style.end_tags(1) == {STOPPED_BY_TAG: "bandit"}
    assert style.end_tags(4) == {} and style.end_tags(-1) == {}
    assert TrialRunStyle().end_tags(1) == {}
