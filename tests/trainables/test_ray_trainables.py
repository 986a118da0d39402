"""The Ray Tune function trainable in real Ray Tune: reports, checkpoints, pause and resume."""
from __future__ import annotations

from pathlib import Path

import pytest
from ray import tune
from ray.tune.schedulers import FIFOScheduler, TrialScheduler

from trainables.checkpoint import (
    CONFIG_FILE,
    RECONSTRUCTIONS_PNG,
    SAMPLES_PNG,
    STATE_FILE,
)
from trainables.ray_trainables import train_vae
from trainables.spec import DataSpec, NLLSpec, TrialSpec
from trainables.vae import ModelSpec

pytestmark = pytest.mark.integration

SPEC = TrialSpec(
    data=DataSpec(name="digits", binarize="dynamic"),
    model=ModelSpec(encoder="mlp", decoder="mlp_small", latent_dim=4, width=0.125),
    epochs=3, batch_size=256, lr=3e-3, n_images=8,
    test_nll=NLLSpec(k=10, chunk_size=5, max_examples=20),
)


class PauseOnce(FIFOScheduler):
    """Pauses every trial once after its first epoch, as the decoder-bandit scheduler will."""

    def __init__(self) -> None:
        super().__init__()
        self.paused: set[str] = set()

    def on_trial_result(self, tune_controller, trial, result):  # noqa: ANN001 (Tune's signature)
        if trial.trial_id not in self.paused and result["epoch"] == 1:
            self.paused.add(trial.trial_id)
            return TrialScheduler.PAUSE
        return TrialScheduler.CONTINUE


class Epochs(tune.Callback):
    def __init__(self) -> None:
        self.seen: dict[str, list[int]] = {}

    def on_trial_result(self, iteration, trials, trial, result, **info):  # noqa: ANN001
        self.seen.setdefault(trial.trial_id, []).append(result["epoch"])


def test_paused_trials_resume_from_their_checkpoint(tmp_path: Path, ray_local) -> None:
    scheduler, epochs = PauseOnce(), Epochs()
    tuner = tune.Tuner(
        tune.with_parameters(train_vae, spec=SPEC),
        param_space={"beta": tune.grid_search([0.5, 2.0])},
        tune_config=tune.TuneConfig(metric="val/nelbo", mode="min", scheduler=scheduler, max_concurrent_trials=1,
                                    reuse_actors=True),  # a paused trial resumes in a kept worker: faster
        run_config=tune.RunConfig(storage_path=str(tmp_path), name="pause", callbacks=[epochs], verbose=0),
    )
    results = tuner.fit()
    assert not results.errors
    assert len(scheduler.paused) == 2
    # a resumed trial continues at epoch 2: no epoch is trained or reported twice
    assert sorted(epochs.seen.values()) == [[1, 2, 3], [1, 2, 3]]
    for result in results:
        assert result.metrics["epoch"] == 3
        assert result.metrics["val/nelbo"] == pytest.approx(result.metrics["val/distortion"] + result.metrics["val/rate"])
        assert result.metrics["test/nll"] > 0 and result.metrics["test/nll_k"] == 10  # test_nll set: end-of-trial NLL
        with result.checkpoint.as_directory() as directory:
            names = {p.name for p in Path(directory).iterdir()}
        assert {STATE_FILE, CONFIG_FILE, RECONSTRUCTIONS_PNG, SAMPLES_PNG} <= names
