"""The hypervolume bandit: the reward alone (hand-computed), UCB on rewards in [0, 1], then
``BanditTPESearcher`` with two objectives driven directly (no Ray cluster, no trials run), and the
config that selects it."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
from optuna.trial import TrialState
from ray.tune.search import ConcurrencyLimiter

from search.bandit.hypervolume import hypervolume_rewards
from search.bandit.searcher import BanditTPESearcher
from search.bandit.ucb import ucb_pick
from search.config import ConfigError, SearchSpace, parse_config
from search.pareto import hypervolume, reference_point
from search.searchers import make_searcher

RD = ["val/rate", "val/distortion"]
SPACE = {"beta": {"low": 0.1, "high": 10.0, "log": True}, "latent_dim": [4, 8],
         "decoder": ["mlp_small", "deconv_2x2", "mlp_large"]}


# --- the reward --------------------------------------------------------------------------------------

def test_reward_is_each_arms_exclusive_share_of_the_hypervolume_hand_computed() -> None:
    # reference (5, 5). A holds the two ends of the front, B its middle, C one point B dominates.
    a, b, c = [(1.0, 4.0), (4.0, 1.0)], [(2.0, 2.0)], [(3.0, 3.0)]
    # HV(all) = (5-1)(5-4) + (5-2)(4-2) + (5-4)(2-1) = 4 + 6 + 1 = 11
    # without A: (2,2) alone = 3 * 3 = 9      -> A's share (11 - 9) / 11 = 2/11
    # without B: (1,4), (3,3), (4,1) = 4*1 + 2*(4-3) + 1*(3-1) = 8 -> B's share 3/11
    # without C: 11 (it is dominated)        -> 0
    assert hypervolume([*a, *b, *c], (5, 5)) == 11
    assert hypervolume_rewards([a, b, c], (5, 5)) == pytest.approx([2 / 11, 3 / 11, 0.0])
    # an arm holding the whole front keeps only what C's dominated point does not cover: (11 - 2*2) / 11
    assert hypervolume_rewards([a + b, c, []], (5, 5)) == pytest.approx([7 / 11, 0.0, 0.0])
    assert hypervolume_rewards([a + b + c, []], (5, 5)) == [1.0, 0.0]   # every point: all of it; no points: 0


def test_reward_uses_the_running_reference_point_of_the_points_seen() -> None:
    arms = [[(1.0, 4.0), (4.0, 1.0)], [(2.0, 2.0)], [(3.0, 3.0)]]
    ref = reference_point([p for arm in arms for p in arm])
    assert hypervolume_rewards(arms) == pytest.approx(hypervolume_rewards(arms, ref))
    assert hypervolume_rewards([[], []]) == [0.0, 0.0]   # nothing finished: no reward yet
    assert hypervolume_rewards([[(1.0, 1.0)], []]) == [1.0, 0.0]
    # points outside the reference box add nothing: no area, no reward
    assert hypervolume_rewards([[(9.0, 9.0)]], (5, 5)) == [0.0]


def test_ucb_pick_on_rewards_in_unit_interval() -> None:
    assert ucb_pick([0.0, 0.0, 0.0], [0, 1, 0], 1.0, first=[1, 2, 0]) == 2   # untried arms first, in order
    assert ucb_pick([0.9, 0.0], [5, 5], 1.0) == 0                             # equal counts: the reward decides
    assert ucb_pick([0.9, 0.0], [50, 2], 1.0) == 1                            # rarely tried: the bonus wins
    assert ucb_pick([0.2, 0.2], [3, 3], 0.0) == 0                             # ties: lowest index
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        ucb_pick([1.5, 0.0], [1, 1], 1.0)
    with pytest.raises(ValueError, match="one reward"):
        ucb_pick([0.5], [1, 1], 1.0)
    with pytest.raises(ValueError, match="exploration"):
        ucb_pick([0.5, 0.5], [1, 1], -1.0)


# --- the searcher with two objectives ----------------------------------------------------------------

def _searcher(seed: int = 0, **kwargs: object) -> BanditTPESearcher:
    return BanditTPESearcher(SearchSpace.model_validate(SPACE), metric=list(RD), mode=["min", "min"], seed=seed,
                             n_startup_trials=3, **kwargs)


def _rd(config: dict) -> dict[str, float]:
    """A synthetic rate–distortion trade-off in β: mlp_small owns the low-rate end, mlp_large the
    high-rate end, and deconv_2x2 is worse than both everywhere (all its points are dominated)."""
    beta = config["beta"]
    rate, distortion = 10.0 / (1.0 + beta), 10.0 * beta / (1.0 + beta)
    shift = {"mlp_small": (0.0, 0.0) if beta >= 1 else (1.0, 1.0),
             "mlp_large": (0.0, 0.0) if beta < 1 else (1.0, 1.0),
             "deconv_2x2": (3.0, 3.0)}[config["decoder"]]
    return {RD[0]: rate + shift[0], RD[1]: distortion + shift[1], "training_iteration": 1}


def _cycle(searcher: BanditTPESearcher, trial_id: str) -> dict:
    config = searcher.suggest(trial_id)
    assert config is not None
    searcher.on_trial_complete(trial_id, _rd(config))
    return config


def test_studies_are_multi_objective_and_told_both_values() -> None:
    searcher = _searcher()
    config = _cycle(searcher, "t0")
    study = searcher.studies[config["decoder"]]
    assert len(study.directions) == 2
    told = study.trials[-1]
    assert told.state == TrialState.COMPLETE and told.values == [_rd(config)[m] for m in RD]
    assert "decoder" not in told.params   # the bandit picks the decoder
    searcher.on_trial_result("t1", {RD[0]: 1.0, "training_iteration": 1})   # unknown: ignored, no error
    config = searcher.suggest("t1")
    searcher.on_trial_result("t1", {**_rd(config), "training_iteration": 1})   # no report: not multi-objective
    assert searcher.studies[config["decoder"]].trials[-1].intermediate_values == {}


def test_dominated_arm_gets_reward_zero_and_fewer_trials() -> None:
    searcher = _searcher(seed=2)
    for i in range(45):
        _cycle(searcher, f"t{i}")
    stats = {s.arm: s for s in searcher.arm_stats()}
    assert stats["deconv_2x2"].reward == 0.0 and stats["deconv_2x2"].best is None
    assert stats["mlp_small"].reward > 0 and stats["mlp_large"].reward > 0
    assert sum(s.trials for s in stats.values()) == 45
    assert stats["deconv_2x2"].trials < min(stats["mlp_small"].trials, stats["mlp_large"].trials)
    # each arm's reward is its exclusive share of the front of every finished trial
    points = [[tuple(t.values) for t in searcher.studies[a].trials] for a in SPACE["decoder"]]
    assert [stats[a].reward for a in SPACE["decoder"]] == pytest.approx(hypervolume_rewards(points))


def test_tried_arm_without_a_finished_trial_gets_the_bonus_only() -> None:
    limited = ConcurrencyLimiter(_searcher(seed=1), max_concurrent=3)
    first = [limited.suggest(f"t{i}") for i in range(3)]   # one per arm, all in flight
    assert len({c["decoder"] for c in first}) == 3
    limited.on_trial_complete("t0", _rd(first[0]))
    # t0's arm holds the whole front (reward 1); the two in flight have reward 0 and the same bonus
    assert limited.suggest("t3")["decoder"] == first[0]["decoder"]


def test_failed_nan_and_missing_objectives() -> None:
    searcher = _searcher()
    configs = {i: searcher.suggest(i) for i in ("err", "none", "nan")}   # one per arm
    number = {i: searcher._arms.live[i].trial.number for i in configs}
    searcher.on_trial_complete("err", _rd(configs["err"]), error=True)
    searcher.on_trial_complete("none")
    searcher.on_trial_complete("nan", {RD[0]: float("nan"), RD[1]: 1.0, "training_iteration": 1})
    configs["half"] = searcher.suggest("half")
    number["half"] = searcher._arms.live["half"].trial.number
    searcher.on_trial_complete("half", {RD[0]: 1.0, "training_iteration": 1})   # distortion missing
    told = {i: searcher.studies[c["decoder"]].trials[number[i]] for i, c in configs.items()}
    assert told["err"].state == TrialState.FAIL and told["nan"].state == TrialState.FAIL
    assert told["none"].state == TrialState.PRUNED and told["none"].values is None
    assert told["half"].state == TrialState.FAIL
    assert all(s.completed == 0 and s.reward == 0.0 for s in searcher.arm_stats())
    searcher.on_trial_complete("none")   # a second completion is ignored
    assert _cycle(searcher, "ok") is not None   # the search goes on


def test_save_restore_continues_exactly(tmp_path: Path) -> None:
    original = _searcher(seed=4)
    for i in range(10):
        _cycle(original, f"t{i}")
    in_flight = original.suggest("t10")
    path = str(tmp_path / "searcher.pkl")
    original.save(path)
    restored = _searcher(seed=99)   # the state comes from the file
    restored.restore(path)
    assert restored.arm_stats() == original.arm_stats()
    for searcher in (original, restored):
        searcher.on_trial_complete("t10", _rd(in_flight))
    ahead = [_cycle(original, f"n{i}") for i in range(5)]
    assert [_cycle(restored, f"n{i}") for i in range(5)] == ahead
    assert restored.arm_stats() == original.arm_stats()


def test_restores_a_state_saved_before_the_hypervolume_bandit(tmp_path: Path) -> None:
    old = BanditTPESearcher(SearchSpace.model_validate(SPACE), metric="val/nelbo", mode="min", seed=0)
    old.suggest("t0")
    del old._arms.points   # as a searcher pickled before this field existed
    path = str(tmp_path / "old.pkl")
    old.save(path)
    restored = BanditTPESearcher(SearchSpace.model_validate(SPACE), metric="val/nelbo", mode="min")
    restored.restore(path)
    restored.on_trial_complete("t0", {"val/nelbo": 1.0, "training_iteration": 1})
    assert restored._arms.points == [[], [], []] and restored.suggest("t1") is not None


@pytest.mark.parametrize(("metric", "mode", "message"), [
    (RD, ["min", "max"], "minimises both"),
    (RD, ["min", "min", "min"], "minimises both"),
    (RD, "min", "one mode per metric"),
    ("val/rate", ["min", "min"], "one metric per mode"),
])
def test_bad_objectives_raise(metric: object, mode: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BanditTPESearcher(SearchSpace.model_validate(SPACE), metric=metric, mode=mode)  # type: ignore[arg-type]


def test_objectives_can_come_from_tune() -> None:
    searcher = BanditTPESearcher(SearchSpace.model_validate(SPACE))
    assert searcher.set_search_properties(list(RD), ["min", "min"], {})
    assert math.isfinite(_rd(_cycle(searcher, "t0"))[RD[0]])
    assert len(next(iter(s for s in searcher.studies.values() if s.trials)).directions) == 2


# --- the config --------------------------------------------------------------------------------------

def test_config_allows_bandit_tpe_with_rate_distortion_and_hands_it_both_objectives() -> None:
    config = parse_config({"search": {"algorithm": "bandit_tpe", "objective": "rate_distortion", "space": SPACE}})
    inner = make_searcher(config).searcher
    assert isinstance(inner, BanditTPESearcher)
    assert inner.metric == RD and inner.mode == ["min", "min"]
    # the mode hands Tune the searcher alone: Tune's own metric/mode stay unset (they take one)
    from search.modes.rate_distortion import RateDistortionMode

    tune_config = RateDistortionMode(config).tune_config(None)  # type: ignore[arg-type]
    assert isinstance(tune_config.search_alg.searcher, BanditTPESearcher)
    assert tune_config.metric is None and tune_config.mode is None


@pytest.mark.parametrize(("search", "message"), [
    ({"space": {**SPACE, "decoder": "mlp_small"}}, "give search.space.decoder a list of at least two decoders"),
    ({"space": {**SPACE, "decoder": ["mlp_small"]}}, "give search.space.decoder a list of at least two decoders"),
    ({"space": SPACE, "scheduler": {"name": "asha"}}, "scheduler 'asha' stops trials by one metric"),
])
def test_config_refuses_what_the_hypervolume_bandit_cannot_run(search: dict, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"search": {"algorithm": "bandit_tpe", "objective": "rate_distortion", **search}})
    assert message in str(info.value)


# --- the end of a rate–distortion search: the decoders' shares on the parent run ----------------------

def test_front_arm_stats_and_the_parent_run_record() -> None:
    from types import SimpleNamespace

    from search.modes.rate_distortion import _log_front_arms
    from search.modes.rd_points import TrialPoint
    from search.modes.search_arms import front_arm_stats

    # the hand-computed example above: mlp_small holds the ends, deconv_2x2 the middle, mlp_large a
    # dominated point and one failed trial
    trials = [("mlp_small", [(1.0, 4.0)]), ("mlp_small", [(4.0, 1.0)]), ("deconv_2x2", [(2.0, 2.0)]),
              ("mlp_large", [(3.0, 3.0)]), ("mlp_large", [])]
    stats = {s.arm: s for s in front_arm_stats(trials, SPACE["decoder"], (5.0, 5.0))}
    assert [(stats[a].trials, stats[a].completed) for a in SPACE["decoder"]] == [(2, 2), (1, 1), (2, 1)]
    assert [stats[a].reward for a in SPACE["decoder"]] == pytest.approx([2 / 11, 3 / 11, 0.0])

    logged: dict[str, object] = {}
    tracker = SimpleNamespace(log_metrics=logged.update, log_figure=lambda fig, name: logged.setdefault(name, fig),
                              log_table=lambda rows, name: logged.setdefault(name, rows))
    run = SimpleNamespace(config=parse_config({"search": {"algorithm": "bandit_tpe", "objective": "rate_distortion",
                                                          "space": SPACE}}), tracker=tracker)
    results = [SimpleNamespace(config={"decoder": d}, metrics={"trial_id": f"t{i}"} if own else {})
               for i, (d, own) in enumerate(trials)]
    per_trial = [[TrialPoint(f"t{i}", r, dd, None)] for i, (_, own) in enumerate(trials) for r, dd in own]
    _log_front_arms(run, results, per_trial, (5.0, 5.0))  # type: ignore[arg-type]
    assert logged["arm/mlp_small/trials"] == 2.0 and logged["arm/mlp_large/trials"] == 2.0
    assert logged["arm/deconv_2x2/front_share"] == pytest.approx(3 / 11) and logged["arm/mlp_large/front_share"] == 0
    assert "trials_per_arm.png" in logged and len(logged["arms.json"]) == 3  # type: ignore[arg-type]
