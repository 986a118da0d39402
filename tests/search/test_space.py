"""The define-by-run space through real Optuna and Ray Tune's OptunaSearch (no trials are run)."""
from __future__ import annotations

import math

import optuna
import pytest

from search.config import parse_config
from search.searchers import make_searcher
from search.space import define_by_run
from search.trial_specs import trial_spec

SPACE = {
    "beta": {"low": 0.25, "high": 4.0, "log": True},
    "latent_dim": [4, 8, 16],
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "decoder": ["mlp_small", "deconv_2x2"],
    "schedule": {
        "constant": {},
        "linear": {"warmup_fraction": {"low": 0.1, "high": 0.5}},
        "cyclical": {"n_cycles": [2, 4], "ratio": 0.5},
        "free_bits": {"lam": {"low": 0.1, "high": 1.0}},
    },
}


def _config(algorithm: str = "optuna", seed: int = 0, space: dict | None = None):
    return parse_config({"seed": seed, "search": {"algorithm": algorithm, "space": space or SPACE, "max_concurrent": 4}})


def _suggestions(algorithm: str, seed: int, n: int) -> list[dict]:
    searcher = make_searcher(_config(algorithm, seed))
    out = []
    for i in range(n):  # complete each trial so the concurrency limit never blocks
        out.append(searcher.suggest(f"t{i}"))
        searcher.on_trial_complete(f"t{i}", {"val/nelbo": float(i % 5), "training_iteration": 1})
    return out


def test_conditional_parameters_appear_only_with_their_schedule() -> None:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    fn = define_by_run(_config().search.space)
    seen = set()
    for _ in range(40):
        trial = study.ask()
        fixed = fn(trial)
        params = {**trial.params, **fixed}
        name = params["schedule"]
        seen.add(name)
        schedule_keys = {k for k in params if k.startswith("schedule.")}
        assert all(k.startswith(f"schedule.{name}.") for k in schedule_keys), (name, schedule_keys)
        if name == "linear":
            assert 0.1 <= params["schedule.linear.warmup_fraction"] <= 0.5
        if name == "cyclical":
            assert fixed["schedule.cyclical.ratio"] == 0.5  # fixed values are returned, not suggested
            assert "schedule.cyclical.ratio" not in trial.params
        study.tell(trial, 1.0)
    assert seen == {"constant", "linear", "cyclical", "free_bits"}


def test_ranges_and_choices_respected() -> None:
    for config in _suggestions("random", 3, 30):
        assert 0.25 <= config["beta"] <= 4.0
        assert config["latent_dim"] in (4, 8, 16)
        assert 1e-4 <= config["lr"] <= 1e-2
        assert config["decoder"] in ("mlp_small", "deconv_2x2")


def test_beta_is_sampled_log_uniformly() -> None:
    betas = [c["beta"] for c in _suggestions("random", 0, 200)]
    below_one = sum(b < 1.0 for b in betas) / len(betas)
    # log-uniform on [1/4, 4]: P(beta < 1) = 1/2; uniform would give 0.2
    assert 0.38 < below_one < 0.62


def test_seeded_suggestions_are_reproducible() -> None:
    assert _suggestions("optuna", 7, 5) == _suggestions("optuna", 7, 5)
    assert _suggestions("optuna", 7, 5) != _suggestions("optuna", 8, 5)


def test_concurrency_limiter_caps_trials_in_flight() -> None:
    searcher = make_searcher(_config())
    got = [searcher.suggest(f"t{i}") for i in range(6)]
    assert all(g is not None for g in got[:4])
    assert got[4] is None and got[5] is None  # max_concurrent = 4
    searcher.on_trial_complete("t0", {"val/nelbo": 100.0, "training_iteration": 1})
    assert searcher.suggest("t6") is not None


def test_tpe_uses_results() -> None:
    """After its startup trials, TPE proposes β near the region that scored best."""
    config = parse_config({"seed": 0, "search": {"n_startup_trials": 8, "max_concurrent": 1,
                                                  "space": {"beta": {"low": 0.01, "high": 100.0, "log": True}}}})
    searcher = make_searcher(config)
    late = []
    for i in range(40):
        cfg = searcher.suggest(f"t{i}")
        value = (math.log10(cfg["beta"]) - 1.0) ** 2  # best at beta = 10
        searcher.on_trial_complete(f"t{i}", {"val/nelbo": value, "training_iteration": 1})
        if i >= 30:
            late.append(abs(math.log10(cfg["beta"]) - 1.0))
    assert sum(late) / len(late) < 0.5  # random would average ~1.0 decades away


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_suggestions_parse_into_trial_specs(seed: int) -> None:
    """What the searcher proposes is what the trainable understands: every sampled key lands in
    the trial spec (an unknown key would raise)."""
    base = trial_spec(parse_config({"model": {"latent_dim": 2}}))
    for config in _suggestions("random", seed, 12):
        spec = base.with_overrides(config)
        assert spec.model.latent_dim == config["latent_dim"]
        assert spec.model.decoder == config["decoder"]
        assert spec.lr == config["lr"] and spec.schedule.beta == config["beta"]
        if config["schedule"] == "free_bits":
            assert spec.schedule.name == "constant" and spec.schedule.free_bits == config["schedule.free_bits.lam"]
        else:
            assert spec.schedule.name == config["schedule"]
        if config["schedule"] == "linear":
            assert spec.schedule.params == {"warmup_fraction": config["schedule.linear.warmup_fraction"]}
        if config["schedule"] == "cyclical":
            assert spec.schedule.params == {"n_cycles": config["schedule.cyclical.n_cycles"], "ratio": 0.5}


def test_searcher_pickles_for_experiment_checkpoints() -> None:
    """Tune pickles the searcher into its experiment state; a closure would break resume."""
    import pickle

    searcher = make_searcher(_config())
    searcher.suggest("t0")
    clone = pickle.loads(pickle.dumps(searcher))
    assert clone.suggest("t1") is not None



def test_prior_and_objective_params_appear_only_with_their_choice() -> None:
    space = {"prior": {"standard_normal": {}, "vampprior": {"n_components": [10, 50], "init": ["random", "data"]}},
             "objective": {"elbo": {}, "iwae": {"k": {"low": 2, "high": 20}}}}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    fn = define_by_run(_config(space=space).search.space)
    seen = set()
    for _ in range(30):
        trial = study.ask()
        fixed = fn(trial)
        params = {**trial.params, **fixed}
        seen.add((params["prior"], params["objective"]))
        assert ("prior.vampprior.n_components" in params) == (params["prior"] == "vampprior")
        assert ("objective.iwae.k" in params) == (params["objective"] == "iwae")
        if params["objective"] == "iwae":
            assert isinstance(params["objective.iwae.k"], int) and 2 <= params["objective.iwae.k"] <= 20
        spec = trial_spec(_config(space=space)).with_overrides(params)  # every key lands in the trial spec
        assert spec.model.prior == params["prior"] and spec.objective.name == params["objective"]
        study.tell(trial, 1.0)
    assert len(seen) == 4
