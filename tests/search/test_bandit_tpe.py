"""bandit_tpe: the UCB rule alone, then the searcher driven directly (no Ray cluster, no trials run)."""
from __future__ import annotations

import logging
import math
import pickle
from pathlib import Path

import pytest
from optuna.trial import TrialState
from ray import tune
from ray.tune.search import ConcurrencyLimiter

from search.bandit.searcher import BanditTPESearcher
from search.bandit.ucb import ArmStats
from search.config import SearchSpace

METRIC = "val/nelbo"

SPACE = {  # like tests/search/test_space.py's SPACE, with a third decoder and a wider β range
    "beta": {"low": 0.01, "high": 100.0, "log": True},
    "latent_dim": [4, 8, 16],
    "lr": {"low": 1e-4, "high": 1e-2, "log": True},
    "decoder": ["mlp_small", "deconv_2x2", "mlp_large"],
    "schedule": {
        "constant": {},
        "linear": {"warmup_fraction": {"low": 0.1, "high": 0.5}},
        "cyclical": {"n_cycles": [2, 4], "ratio": 0.5},
        "free_bits": {"lam": {"low": 0.1, "high": 1.0}},
    },
}
BASE = {"mlp_small": 3.0, "deconv_2x2": 0.0, "mlp_large": 2.0}  # deconv_2x2 is clearly best
SCHEDULE_COST = {"constant": 0.2, "linear": 0.0, "cyclical": 0.1, "free_bits": 0.3}


def _space(**overrides: object) -> SearchSpace:
    return SearchSpace.model_validate({**SPACE, **overrides})


def _objective(config: dict) -> float:
    """Synthetic loss, optimum 0 at deconv_2x2, β = 1, lr = 1e-3, linear schedule."""
    return (
        BASE[config["decoder"]]
        + math.log10(config["beta"]) ** 2
        + (math.log10(config["lr"]) + 3.0) ** 2
        + SCHEDULE_COST[config["schedule"]]
    )


def _searcher(seed: int = 0, mode: str = "min", **kwargs: object) -> BanditTPESearcher:
    return BanditTPESearcher(_space(), metric=METRIC, mode=mode, seed=seed, n_startup_trials=3, **kwargs)


def _cycle(searcher: BanditTPESearcher, trial_id: str, sign: float = 1.0) -> dict:
    config = searcher.suggest(trial_id)
    searcher.on_trial_complete(trial_id, {METRIC: sign * _objective(config), "training_iteration": 1})
    return config


# --- the selection rule ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_decoder_gets_most_trials_and_the_optimum_is_approached(mode: str) -> None:
    sign = 1.0 if mode == "min" else -1.0  # mode max: maximise the negated loss
    searcher = _searcher(mode=mode)
    configs = [_cycle(searcher, f"t{i}", sign) for i in range(40)]

    for config in configs:
        assert {"decoder", "beta", "latent_dim", "lr", "schedule"} <= set(config)
        assert 0.01 <= config["beta"] <= 100.0 and config["latent_dim"] in (4, 8, 16)
        schedule_keys = {k for k in config if k.startswith("schedule.")}
        assert all(k.startswith(f"schedule.{config['schedule']}.") for k in schedule_keys), config
        if config["schedule"] == "linear":
            assert 0.1 <= config["schedule.linear.warmup_fraction"] <= 0.5
        if config["schedule"] == "cyclical":
            assert config["schedule.cyclical.ratio"] == 0.5 and config["schedule.cyclical.n_cycles"] in (2, 4)

    stats = {s.arm: s for s in searcher.arm_stats()}
    assert sum(s.trials for s in stats.values()) == 40
    assert sum(s.completed for s in stats.values()) == 40
    assert stats["deconv_2x2"].trials > 40 / 3 + 6, stats  # well above an even split
    assert stats["deconv_2x2"].trials == max(s.trials for s in stats.values())
    best_loss = min(sign * s.best for s in stats.values())
    assert best_loss < 0.35, stats  # optimum 0; a random config averages ~1.8 on the best arm
    assert stats["deconv_2x2"].best == sign * best_loss  # best reported in the metric's own units


def test_max_mode_allocates_like_min_mode() -> None:
    """Maximising the negated loss is the same search: same arms, same parameters."""
    on_min, on_max = _searcher(mode="min"), _searcher(mode="max")
    assert [_cycle(on_min, f"t{i}") for i in range(15)] == [_cycle(on_max, f"t{i}", -1.0) for i in range(15)]


def test_each_arm_has_its_own_seeded_study() -> None:
    assert _cycle(_searcher(seed=3), "t0") == _cycle(_searcher(seed=3), "t0")
    assert _cycle(_searcher(seed=3), "t0") != _cycle(_searcher(seed=4), "t0")
    searcher = _searcher()
    configs = [_cycle(searcher, f"t{i}") for i in range(3)]
    first = [c["decoder"] for c in configs]
    assert sorted(first) == sorted(SPACE["decoder"])  # untried arms first, each once
    # in a seeded order, not the config's: the list's order says nothing about quality
    orders = {tuple(c["decoder"] for c in (_cycle(s, f"t{i}") for i in range(3)))
              for s in (_searcher(seed=k) for k in range(6))}
    assert len(orders) > 1, orders
    for study in searcher.studies.values():
        assert len(study.trials) == 1
        assert "decoder" not in study.trials[0].params  # the bandit, not TPE, picks the decoder


def test_early_stopped_trial_is_told_complete_with_its_last_value() -> None:
    searcher = _searcher()
    config = searcher.suggest("t0")
    for step, value in enumerate([9.0, 7.0, 6.5], start=1):
        searcher.on_trial_result("t0", {METRIC: value, "training_iteration": step})
    # ASHA stopped it: Tune passes the last result to on_trial_complete
    searcher.on_trial_complete("t0", {METRIC: 6.5, "training_iteration": 3})
    study = searcher.studies[config["decoder"]]
    assert study.trials[-1].state == TrialState.COMPLETE
    assert study.trials[-1].value == 6.5
    assert study.trials[-1].intermediate_values == {1: 9.0, 2: 7.0, 3: 6.5}
    stats = {s.arm: s for s in searcher.arm_stats()}
    assert stats[config["decoder"]] == ArmStats(arm=config["decoder"], trials=1, completed=1, best=6.5)


def test_error_fails_missing_value_prunes_and_nan_fails() -> None:
    searcher = _searcher()
    configs = {i: searcher.suggest(i) for i in ("err", "none", "reported")}  # one per arm
    told = {}

    def complete(trial_id: str, result: dict | None = None, error: bool = False) -> None:
        searcher.on_trial_complete(trial_id, result, error=error)
        told[trial_id] = searcher.studies[configs[trial_id]["decoder"]].trials[-1]

    complete("err", {METRIC: 3.0, "training_iteration": 2}, error=True)
    complete("none")
    searcher.on_trial_result("reported", {METRIC: 4.0, "training_iteration": 1})
    complete("reported", {"training_iteration": 1})  # no metric in the final result
    for bad in ("nan", "inf"):  # suggested one at a time, each to the next untold arm
        configs[bad] = searcher.suggest(bad)
        complete(bad, {METRIC: float(bad), "training_iteration": 1})

    assert told["err"].state == TrialState.FAIL and told["err"].value is None
    assert told["none"].state == TrialState.PRUNED and told["none"].value is None
    # PRUNED after an intermediate report: Optuna keeps the last value, and the arm counts it
    assert told["reported"].state == TrialState.PRUNED and told["reported"].value == 4.0
    assert told["nan"].state == TrialState.FAIL and told["inf"].state == TrialState.FAIL
    # the arms without a value (q = 1) get the next trials: "err"'s and "none"'s, not "reported"'s
    assert {configs[i]["decoder"] for i in ("nan", "inf")} == {configs[i]["decoder"] for i in ("err", "none")}
    stats = {s.arm: s for s in searcher.arm_stats()}
    failed, pruned, reported = (stats[configs[i]["decoder"]] for i in ("err", "none", "reported"))
    assert (failed.trials, pruned.trials, reported.trials) == (2, 2, 1)
    assert (failed.completed, pruned.completed, reported.completed) == (0, 0, 1) and reported.best == 4.0


def test_concurrency_limiter_caps_trials_in_flight() -> None:
    limited = ConcurrencyLimiter(_searcher(), max_concurrent=2)
    got = [limited.suggest(f"t{i}") for i in range(4)]
    assert got[0] is not None and got[1] is not None
    assert got[2] is None and got[3] is None
    assert got[0]["decoder"] != got[1]["decoder"]  # in-flight trials count, so arms are spread
    limited.on_trial_complete("t0", {METRIC: 1.0, "training_iteration": 1})
    assert limited.suggest("t4") is not None


def test_save_restore_continues_exactly(tmp_path: Path) -> None:
    original = _searcher(seed=1)
    for i in range(12):
        _cycle(original, f"t{i}")
    in_flight = original.suggest("t12")  # a trial running at checkpoint time
    original.on_trial_result("t12", {METRIC: 5.0, "training_iteration": 1})
    path = str(tmp_path / "searcher.pkl")
    original.save(path)

    restored = BanditTPESearcher(_space(), metric=METRIC, mode="min", seed=99)  # state comes from the file
    restored.restore(path)
    assert restored.arm_stats() == original.arm_stats()
    for searcher in (original, restored):
        searcher.on_trial_complete("t12", {METRIC: _objective(in_flight), "training_iteration": 2})
    ahead = [_cycle(original, f"n{i}") for i in range(5)]
    assert [_cycle(restored, f"n{i}") for i in range(5)] == ahead
    assert restored.arm_stats() == original.arm_stats()
    assert len({c["decoder"] for c in ahead} | {c["beta"] for c in ahead}) > 2  # not a trivial sequence


def test_pickle_round_trip() -> None:
    searcher = _searcher()
    for i in range(6):
        _cycle(searcher, f"t{i}")
    searcher.suggest("t6")
    clone = pickle.loads(pickle.dumps(searcher))
    assert clone.arm_stats() == searcher.arm_stats()
    clone.on_trial_complete("t6", {METRIC: 1.0, "training_iteration": 1})  # in-flight trial survives
    assert clone.suggest("t7") is not None


def test_metric_and_mode_can_come_from_tune() -> None:
    searcher = BanditTPESearcher(_space())
    with pytest.raises(RuntimeError, match="metric"):
        searcher.suggest("t0")
    assert searcher.set_search_properties(METRIC, "min", {"train": {"epochs": 1}}) is True
    assert searcher.metric == METRIC and searcher.mode == "min"
    assert searcher.suggest("t0")["decoder"] in SPACE["decoder"]
    with pytest.raises(ValueError, match="mode"):
        searcher.set_search_properties(METRIC, "max", {})  # studies already minimise
    # a Tune search space in param_space is not ours to sample: False lets Tune raise its error
    assert searcher.set_search_properties(METRIC, "min", {"beta": tune.uniform(0.1, 1.0)}) is False


@pytest.mark.parametrize("decoder", ["mlp_small", ["mlp_small"], None])
def test_needs_a_list_of_decoders(decoder: object) -> None:
    with pytest.raises(ValueError, match="list of decoders"):
        BanditTPESearcher(_space(decoder=decoder), metric=METRIC, mode="min")


def test_bad_arguments_raise() -> None:
    with pytest.raises(ValueError, match="distinct"):
        BanditTPESearcher(_space(decoder=["mlp_small", "mlp_small"]))
    with pytest.raises(ValueError, match="exploration"):
        BanditTPESearcher(_space(), exploration=-0.5)
    with pytest.raises(ValueError, match="mode"):
        BanditTPESearcher(_space(), metric=METRIC, mode="minimize")
    with pytest.raises(ValueError, match="arm_comparison"):
        BanditTPESearcher(_space(), arm_comparison="final")


def test_unknown_trial_is_ignored_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    searcher = _searcher()
    _cycle(searcher, "t0")
    before = searcher.arm_stats()
    with caplog.at_level(logging.WARNING, logger="search.bandit.searcher"):
        searcher.on_trial_complete("nobody", {METRIC: 1.0, "training_iteration": 1})
        searcher.on_trial_complete("t0", {METRIC: 0.5, "training_iteration": 1})  # told twice
        searcher.on_trial_result("nobody", {METRIC: 1.0, "training_iteration": 1})
    assert searcher.arm_stats() == before
    messages = [r.getMessage() for r in caplog.records]
    assert any("unknown trial nobody" in m for m in messages), messages
    assert any("already finished trial t0" in m for m in messages), messages


def test_arms_are_compared_at_equal_training_not_by_their_longest_trial() -> None:
    """An arm whose trial ran longest (ASHA's first trial) must not win on epochs alone."""
    searcher = _searcher(exploration=0.0)
    ids = {}
    for name in ("a", "b", "c"):
        ids[name] = searcher.suggest(name)["decoder"]
    curves = {"a": [300.0, 220.0, 150.0], "b": [250.0, 210.0], "c": [280.0]}  # b is best at every epoch it shares
    for name, values in curves.items():
        for step, value in enumerate(values, start=1):
            searcher.on_trial_result(name, {METRIC: value, "training_iteration": step})
        searcher.on_trial_complete(name, {METRIC: values[-1], "training_iteration": len(values)})
    assert {s.arm: s.best for s in searcher.arm_stats()}[ids["a"]] == 150.0  # a's final value is the lowest
    assert searcher.suggest("next")["decoder"] == ids["b"]  # but b beats a at epoch 2 and c at epoch 1


@pytest.mark.parametrize(("rule", "winner"), [("pairwise", "deep"), ("common_step", "early")])
def test_an_arm_cut_at_the_first_rung_does_not_hold_every_comparison_there(rule: str, winner: str) -> None:
    """ASHA cut the "cut" arm's trial at epoch 1. The "early" arm leads at epoch 1, the "deep" arm
    at epoch 3, where both went on. The one-step rule compares all three at epoch 1 (the deepest
    epoch every arm reached) and picks "early"; pairwise, "deep" beats "early" where both went."""
    searcher = _searcher(exploration=0.0, arm_comparison=rule)
    ids = {name: searcher.suggest(name)["decoder"] for name in ("cut", "early", "deep")}
    curves = {"cut": [130.0], "early": [90.0, 80.0, 40.0], "deep": [120.0, 70.0, 30.0]}
    for name, values in curves.items():
        for step, value in enumerate(values, start=1):
            searcher.on_trial_result(name, {METRIC: value, "training_iteration": step})
        searcher.on_trial_complete(name, {METRIC: values[-1], "training_iteration": len(values)})
    assert searcher.suggest("next")["decoder"] == ids[winner]


def test_a_state_saved_before_pairwise_comparison_keeps_its_rule(tmp_path: Path) -> None:
    old = _searcher(arm_comparison="common_step")
    for i in range(3):
        _cycle(old, f"t{i}")
    del old._arm_comparison
    path = str(tmp_path / "old.pkl")
    old.save(path)
    restored = _searcher()
    restored.restore(path)
    assert restored._arm_comparison == "common_step"
    _cycle(restored, "t3")
    assert sum(s.trials for s in restored.arm_stats()) == 4


def test_restores_a_state_saved_before_equal_fidelity(tmp_path: Path) -> None:
    """A searcher checkpoint written by an earlier version (no per-epoch curves) still resumes."""
    old = _searcher()
    for i in range(4):
        _cycle(old, f"t{i}")
    del old._arms.curves, old._arms.first
    path = str(tmp_path / "old.pkl")
    old.save(path)
    restored = _searcher(seed=5)
    restored.restore(path)
    assert restored.arm_stats() == old.arm_stats()
    _cycle(restored, "t4")  # suggests and learns without error
    assert sum(s.trials for s in restored.arm_stats()) == 5


# --- pooled_trials: an arm's first trials from a study pooled over every arm -------------------------


def test_pooled_study_proposes_an_arms_first_trials_and_learns_from_every_arm() -> None:
    k = 2
    searcher = _searcher(seed=2, pooled_trials=k)
    pooled_by_arm: dict[str, int] = {name: 0 for name in SPACE["decoder"]}
    for i in range(24):
        config = searcher.suggest(f"t{i}")
        entry = searcher._arms.live[f"t{i}"]
        # the arm's own finished trials decide which study proposes: pooled below k, its own from k on
        assert entry.pooled == (searcher._arms.completed[entry.arm] < k)
        pooled_by_arm[config["decoder"]] += entry.pooled
        searcher.on_trial_complete(f"t{i}", {METRIC: _objective(config), "training_iteration": 1})
    assert all(n == k for n in pooled_by_arm.values()), pooled_by_arm
    pooled = searcher.pooled_study
    assert pooled is not None and len(pooled.trials) == 24             # every finished trial, each arm's own too
    assert "decoder" not in pooled.trials[0].params
    for name, study in searcher.studies.items():
        stats = {s.arm: s for s in searcher.arm_stats()}
        assert len(study.trials) == stats[name].trials                   # its pooled trials copied in
        assert all(t.state == TrialState.COMPLETE for t in study.trials)
    values = sorted(t.value for t in pooled.trials)
    assert values == sorted(t.value for s in searcher.studies.values() for t in s.trials)


def test_pooled_trials_zero_is_the_per_arm_searcher_and_only_complete_trials_are_shared() -> None:
    assert _searcher(pooled_trials=0).pooled_study is None
    assert [_cycle(_searcher(seed=3, pooled_trials=0), f"t{i}") for i in range(1)] == \
        [_cycle(_searcher(seed=3), f"t{i}") for i in range(1)]
    searcher = _searcher(pooled_trials=5)
    searcher.suggest("t0")
    searcher.on_trial_complete("t0", error=True)          # a crash: FAIL, learnt by neither study
    searcher.suggest("t1")
    searcher.on_trial_complete("t1", None)                # no result: PRUNED, not copied
    assert [t.state for t in searcher.pooled_study.trials] == [TrialState.FAIL, TrialState.PRUNED]
    assert sum(len(s.trials) for s in searcher.studies.values()) == 0
    with pytest.raises(ValueError, match="pooled_trials"):
        _searcher(pooled_trials=-1)


def test_pooled_searcher_saves_restores_and_reads_an_older_state(tmp_path: Path) -> None:
    original = _searcher(seed=1, pooled_trials=3)
    for i in range(8):
        _cycle(original, f"t{i}")
    original.suggest("t8")                                 # in flight, from the pooled study or its own
    path = str(tmp_path / "searcher.pkl")
    original.save(path)
    restored = _searcher(seed=9)
    restored.restore(path)
    for searcher in (original, restored):
        searcher.on_trial_complete("t8", {METRIC: 1.0, "training_iteration": 1})
    assert [_cycle(restored, f"n{i}") for i in range(4)] == [_cycle(original, f"n{i}") for i in range(4)]

    old = _searcher()                                      # saved before pooling existed
    _cycle(old, "t0")
    old.suggest("t1")
    del old._arms.pooled, old._arms.pooled_trials
    for entry in old._arms.live.values():
        del entry.__dict__["pooled"]
    old.save(path)
    restored = _searcher(seed=5, pooled_trials=4)
    restored.restore(path)
    assert restored.pooled_study is None
    restored.on_trial_complete("t1", {METRIC: 2.0, "training_iteration": 1})
    _cycle(restored, "t2")
    assert sum(s.trials for s in restored.arm_stats()) == 3
