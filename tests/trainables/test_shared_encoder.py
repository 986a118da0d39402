"""The shared-encoder decoder bandit (reference 003): pulls, regret on validation, checkpoints, Ray Tune."""
from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from trainables.checkpoint import RECONSTRUCTIONS_PNG, SAMPLES_PNG, STATE_FILE
from trainables.data import DatasetSplits, steps_per_epoch
from trainables.policies import Policy, build_policy
from trainables.shared_encoder.checkpoint import (
    CONFIG_FILE,
    load_shared_model,
    load_state,
    save_state,
)
from trainables.shared_encoder.loop import (
    SharedEncoderProgress,
    epoch_metrics,
    step_regret,
    train_shared_epoch,
    validation_batch,
)
from trainables.shared_encoder.model import SharedEncoderVAE, build_shared_model
from trainables.spec import DataSpec, SharedEncoderSpec
from trainables.train_loop import NonFiniteLossError

HEADS = ("mlp_small", "deconv_2x2", "linear_deconv_selu")
SPEC = SharedEncoderSpec(
    data=DataSpec(name="digits"), decoders=HEADS, latent_dim=4, width=0.125, policy="uniform",
    epochs=3, batch_size=100, lr=3e-3, eval_every=5, eval_batch_size=100,
)


class Run:
    """Everything one trial's loop holds, built the way the trainable builds it."""

    def __init__(self, spec: SharedEncoderSpec, data: DatasetSplits, policy: Policy | None = None, init_seed: int | None = None) -> None:
        torch.manual_seed(spec.seed if init_seed is None else init_seed)
        self.spec, self.data = spec, data
        self.model = build_shared_model(spec, data.shape)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=spec.lr)
        self.policy = policy or build_policy(spec.policy, len(spec.decoders), seed=spec.seed, **spec.policy_params)
        self.generator = torch.Generator().manual_seed(spec.seed)
        self.progress = SharedEncoderProgress.start(len(spec.decoders))
        self.val_batch = validation_batch(data, spec.eval_batch_size)

    def epochs(self, n: int) -> list[SharedEncoderProgress]:
        history = []
        for _ in range(n):
            self.progress = train_shared_epoch(
                self.model, self.optimizer, self.policy, self.data, self.spec, self.progress, self.val_batch,
                generator=self.generator,
            )
            history.append(self.progress)
        return history


class AlwaysFirst(Policy):
    """Always pulls head 0: what a bandit does when training batches alone favour it."""

    name = "always_first"

    def _choose(self) -> int:
        return 0


class ValidationOracle(Policy):
    """Pulls the head with the lowest validation distortion, scored exactly as the loop scores."""

    name = "validation_oracle"

    def attach(self, model: SharedEncoderVAE, val_batch: torch.Tensor, seed: int) -> ValidationOracle:
        self.model, self.val_batch, self.seed = model, val_batch, seed
        return self

    def _choose(self) -> int:
        generator = torch.Generator().manual_seed(self.seed)
        scores = self.model.head_val_distortion(self.val_batch, generator)
        return min(range(len(scores)), key=scores.__getitem__)


def test_uniform_pulls_sum_to_the_steps_in_equal_shares(digits) -> None:
    run = Run(SPEC, digits)
    progress = run.epochs(2)[-1]
    steps = 2 * steps_per_epoch(digits.train.shape[0], SPEC.batch_size)
    assert progress.step == sum(progress.pulls) == len(progress.arm_history) == steps
    assert max(progress.pulls) - min(progress.pulls) <= 1
    assert progress.pulls == run.policy.pulls
    assert progress.epoch == 2


def test_greedy_without_exploration_lets_one_head_dominate(digits) -> None:
    spec = replace(SPEC, policy="epsilon_greedy", policy_params_by_name={"epsilon_greedy": {"epsilon": 0.0}})
    progress = Run(spec, digits).epochs(2)[-1]
    assert progress.arm_history[: len(HEADS)] == [0, 1, 2]  # every head is tried once first
    assert max(progress.pulls) >= 0.8 * progress.step


def test_validation_distortion_is_finite_and_falls_for_trained_heads(digits) -> None:
    first, _, last = Run(SPEC, digits).epochs(3)
    assert len(first.val_distortion) == len(HEADS)
    assert all(math.isfinite(v) and v > 0 for v in first.val_distortion + last.val_distortion)
    for before, after in zip(first.val_distortion, last.val_distortion):
        assert after < before - 1.0  # uniform: every head trained; nats per 8×8 image


def test_regret_is_non_negative_and_cumulative(digits) -> None:
    history = Run(replace(SPEC, policy="epsilon_greedy"), digits).epochs(2)
    regrets = history[-1].regret_history
    assert regrets[: SPEC.eval_every] == [0.0] * SPEC.eval_every  # before the first scoring
    assert all(r >= 0 for r in regrets) and sum(regrets) > 0
    assert history[-1].cumulative_regret == pytest.approx(sum(regrets))
    assert history[0].cumulative_regret <= history[1].cumulative_regret


def test_per_step_regret_is_measured_on_the_latest_validation_scores(digits) -> None:
    # eval_every beyond an epoch: scored only at epoch ends, so all of epoch 2 uses epoch 1's scores
    spec = replace(SPEC, policy="epsilon_greedy", eval_every=10**6)
    first, second = Run(spec, digits).epochs(2)
    n = first.step
    assert first.regret_history == [0.0] * n
    scores = first.val_distortion
    assert len(set(scores)) == len(HEADS)
    expected = [scores[arm] - min(scores) for arm in second.arm_history[n:]]
    assert second.regret_history[n:] == expected
    assert step_regret([], 1) == 0.0 and step_regret([3.0, 1.0], 0) == 2.0


def test_regret_is_zero_with_a_single_head(digits) -> None:
    spec = replace(SPEC, decoders=("mlp_small",), policy="epsilon_greedy")
    run = Run(spec, digits)
    progress = run.epochs(2)[-1]
    assert progress.cumulative_regret == 0.0 and progress.pulls == [progress.step]
    metrics = epoch_metrics(spec, progress, run.policy)
    assert metrics["head/mlp_small/pull_share"] == 1.0 and metrics["bandit/val_best_head"] == 0


def test_regret_is_zero_when_the_validation_best_head_is_always_pulled(digits) -> None:
    spec = replace(SPEC, eval_every=1)  # scores refreshed after every step: the oracle sees the same
    run = Run(spec, digits)
    run.policy = ValidationOracle(len(HEADS)).attach(run.model, run.val_batch, spec.seed)
    progress = run.epochs(1)[-1]
    assert progress.cumulative_regret == 0.0
    assert len(set(progress.val_distortion)) == len(HEADS)  # the heads do differ: zero is earned


def test_regret_is_judged_on_validation_not_on_training_batches(digits) -> None:
    # Train on blank images, validate on digits: head 0 (the only one trained) is the best on
    # every training batch and learns "all pixels off", which is worse on digits than an
    # untrained head; a regret on training rewards would be 0, the validation regret is not.
    blank = DatasetSplits(name="blank", train=torch.zeros(1000, 1, 8, 8), val=digits.val, test=digits.test, binarize="none")
    spec = replace(SPEC, decoders=("mlp_small", "mlp_large"), eval_every=2, batch_size=50, lr=1e-2)
    run = Run(spec, blank, policy=AlwaysFirst(2))
    first, second = run.epochs(2)
    metrics = epoch_metrics(spec, second, run.policy)
    assert second.train_distortion < 1.0  # head 0 reconstructs its training batches almost perfectly
    assert metrics["bandit/best_head"] == 0 and metrics["bandit/val_best_head"] == 1
    assert all(r > 0 for r in second.regret_history[first.step :])


def test_checkpoint_round_trip_continues_identically(digits, tmp_path: Path) -> None:
    spec = replace(SPEC, policy="epsilon_greedy", policy_params_by_name={"epsilon_greedy": {"epsilon": 0.5}})  # the policy's RNG matters
    run = Run(spec, digits)
    run.epochs(1)
    save_state(tmp_path, run.model, run.optimizer, run.policy, run.progress, run.generator, spec=spec)
    straight = run.epochs(1)[-1]

    resumed = Run(spec, digits, init_seed=123)  # other weights, RNGs elsewhere: all must be restored
    torch.manual_seed(999)
    resumed.progress = load_state(tmp_path, resumed.model, resumed.optimizer, resumed.policy, resumed.generator)
    assert resumed.progress.epoch == 1
    again = resumed.epochs(1)[-1]
    assert again.arm_history == straight.arm_history
    assert again.train_loss == straight.train_loss
    assert again.val_distortion == straight.val_distortion
    assert resumed.policy.state_dict() == run.policy.state_dict()
    assert {STATE_FILE, CONFIG_FILE} <= {p.name for p in tmp_path.iterdir()}
    blob = torch.load(tmp_path / STATE_FILE, weights_only=True)  # no pickled objects in the checkpoint
    assert isinstance(blob["policy"], str) and isinstance(blob["progress"], str)  # JSON strings
    model = load_shared_model(tmp_path)
    assert model.decoder_names == HEADS and not model.training


def test_epoch_metrics_name_every_head(digits) -> None:
    run = Run(SPEC, digits)
    progress = run.epochs(1)[-1]
    metrics = epoch_metrics(SPEC, progress, run.policy)
    assert _REPORTED_KEYS <= set(metrics)
    assert metrics["val/distortion"] == min(progress.val_distortion)
    assert sum(metrics[f"head/{n}/pull_share"] for n in HEADS) == pytest.approx(1.0)
    assert metrics["regret/mean"] == pytest.approx(metrics["regret/cumulative"] / metrics["step"])


def test_a_non_finite_loss_stops_the_trial(digits) -> None:
    broken = DatasetSplits(name="nan", train=torch.full((50, 1, 8, 8), math.nan), val=digits.val, test=digits.test, binarize="none")
    with pytest.raises(NonFiniteLossError, match="non-finite"):
        Run(SPEC, broken).epochs(1)


_REPORTED_KEYS = {
    "epoch", "step", "regret/cumulative", "regret/mean", "bandit/best_head", "bandit/val_best_head", "val/distortion",
    *(f"head/{n}/{what}" for n in HEADS for what in ("pull_share", "pulls", "val_distortion")),
}


# ----------------------------------------------------------------------------- Ray Tune


@pytest.mark.integration
def test_trainable_runs_a_policy_grid_in_ray_tune(tmp_path: Path, ray_local) -> None:
    from ray import tune

    from trainables.ray_trainables import train_shared_encoder

    class Statuses(tune.Callback):
        def __init__(self) -> None:
            self.final: dict[str, str] = {}

        def on_experiment_end(self, trials, **info):  # noqa: ANN001 (Tune's signature)
            self.final = {trial.config["policy"]: trial.status for trial in trials}

    spec = SharedEncoderSpec(data=DataSpec(name="digits"), decoders=HEADS, latent_dim=4, width=0.125, epochs=2,
                             batch_size=256, eval_every=3, eval_batch_size=100)
    statuses = Statuses()
    tuner = tune.Tuner(
        tune.with_parameters(train_shared_encoder, spec=spec),
        param_space={"policy": tune.grid_search(["uniform", "epsilon_greedy"]), "dataset": "digits", "seed": 0},
        tune_config=tune.TuneConfig(metric="regret/cumulative", mode="min"),
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="shared", callbacks=[statuses], verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    assert statuses.final == {"uniform": "TERMINATED", "epsilon_greedy": "TERMINATED"}
    for result in results:
        metrics = result.metrics
        assert _REPORTED_KEYS <= set(metrics)
        assert metrics["epoch"] == 2 and sum(metrics[f"head/{n}/pulls"] for n in HEADS) == metrics["step"]
        with result.checkpoint.as_directory() as directory:
            names = {p.name for p in Path(directory).iterdir()}
        assert {STATE_FILE, CONFIG_FILE, RECONSTRUCTIONS_PNG, SAMPLES_PNG} <= names


def test_a_plugin_head_trains_and_checkpoints_beside_the_builtins(digits, tmp_path: Path) -> None:
    from tests.plugin_files import forget, write_module
    from trainables.registry import Plugin

    module = write_module(tmp_path / "mods")
    try:
        tiny = Plugin(path=f"{module}:TinyDecoder", kwargs={"hidden": 8}, name="tiny", search_path=str(tmp_path / "mods"))
        spec = replace(SPEC, decoders=("mlp_small", tiny), epochs=1)
        run = Run(spec, digits)
        progress = run.epochs(1)[-1]
        metrics = epoch_metrics(spec, progress, run.policy)
        assert metrics["head/tiny/pulls"] > 0 and math.isfinite(metrics["head/tiny/val_distortion"])
        (tmp_path / "ckpt").mkdir()
        save_state(tmp_path / "ckpt", run.model, run.optimizer, run.policy, run.progress, run.generator, spec=spec)
        model = load_shared_model(tmp_path / "ckpt")
        assert model.decoder_names == ("mlp_small", "tiny")
        assert torch.equal(model.heads[1].net[0].weight, run.model.heads[1].net[0].weight)
    finally:
        forget(tmp_path / "mods")
