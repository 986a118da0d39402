"""The training loop, the trial spec and the checkpoint format, on the 8×8 digits (no Ray)."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from trainables.data import load_dataset
from trainables.trial import (
    CONFIG_FILE,
    STATE_FILE,
    NLLSpec,
    TrainState,
    TrialSpec,
    final_test_metrics,
    load_checkpoint,
    load_model,
    save_checkpoint,
    evaluate_test_set,
)
from trainables.training import LossSchedule, NonFiniteLossError, steps_per_epoch, train_epoch
from trainables.vae import VAEConfig, build_vae

BASE = {
    "seed": 0,
    "data": {"name": "digits", "binarize": "dynamic"},
    "model": {"encoder": "mlp", "decoder": "mlp_small", "latent_dim": 4, "width": 0.25},
    "train": {"epochs": 3, "batch_size": 64, "lr": 3e-3, "beta": 1.0, "schedule": {"name": "linear", "params": {"warmup_fraction": 0.5}}},
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", binarize="dynamic", seed=0)


def _model(digits, latent_dim: int = 4):
    torch.manual_seed(0)
    return build_vae(VAEConfig(shape=digits.shape, latent_dim=latent_dim, encoder="mlp", decoder="mlp_small", width=0.25))


def _epoch(model, opt, digits, schedule=LossSchedule(), step=0, total=100, generator=None):
    return train_epoch(model, opt, digits.train, batch_size=64, schedule=schedule, step=step, total_steps=total,
                       binarize=digits.binarize, generator=generator or torch.Generator().manual_seed(0))


def test_training_reduces_the_loss(digits) -> None:
    model = _model(digits)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = _epoch(model, opt, digits)
    for _ in range(3):
        last = _epoch(model, opt, digits)
    assert last.loss < first.loss - 1.0
    assert first.steps == steps_per_epoch(digits.train.shape[0], 64)
    assert math.isclose(last.loss, last.distortion + last.rate, rel_tol=1e-5)  # beta = 1, constant


def test_schedule_beta_is_applied_per_step(digits) -> None:
    model = _model(digits)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    n = steps_per_epoch(digits.train.shape[0], 64)
    stats = _epoch(model, opt, digits, LossSchedule(name="linear", beta=2.0, params={"warmup_fraction": 1.0}), step=0, total=n)
    expected = sum(2.0 * min(1.0, t / n) for t in range(n)) / n  # mean of the linear ramp over this epoch
    assert math.isclose(stats.beta, expected, rel_tol=1e-6)


def test_nonfinite_loss_raises_a_clear_error(digits) -> None:
    model = _model(digits)
    opt = torch.optim.SGD(model.parameters(), lr=1e30)  # diverges within the epoch
    with pytest.raises(NonFiniteLossError, match="non-finite training loss"):
        for _ in range(3):
            _epoch(model, opt, digits)


def test_trial_spec_merges_base_and_sampled_config() -> None:
    spec = TrialSpec.from_dicts(BASE, {"beta": 0.5, "latent_dim": 8, "decoder": "deconv_2x2", "lr": 1e-4,
                                       "schedule": "cyclical", "schedule.cyclical.n_cycles": 2})
    assert spec.model == {"encoder": "mlp", "decoder": "deconv_2x2", "latent_dim": 8, "width": 0.25}
    assert spec.schedule == LossSchedule(name="cyclical", beta=0.5, params={"n_cycles": 2}, free_bits=0.0)
    assert spec.lr == 1e-4 and spec.epochs == 3 and spec.batch_size == 64
    # no override: the base schedule and its params stay
    spec = TrialSpec.from_dicts(BASE, {})
    assert spec.schedule.name == "linear" and spec.schedule.params == {"warmup_fraction": 0.5}
    assert spec.vae_config((1, 8, 8)).latent_dim == 4


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path: Path, digits) -> None:
    model = _model(digits)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(5)
    _epoch(model, opt, digits, generator=gen)
    save_checkpoint(tmp_path, model, opt, TrainState(epoch=1, step=23), gen)
    assert (tmp_path / STATE_FILE).is_file() and (tmp_path / CONFIG_FILE).is_file()
    after_a = _epoch(model, opt, digits, generator=gen)  # continue from the saved point

    model_b = _model(digits)
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)
    gen_b = torch.Generator()
    state = load_checkpoint(tmp_path, model_b, opt_b, gen_b)
    assert state == TrainState(epoch=1, step=23)
    after_b = _epoch(model_b, opt_b, digits, generator=gen_b)
    assert math.isclose(after_a.loss, after_b.loss, rel_tol=1e-5)  # resumed training is the same training


def test_checkpoint_is_weights_only(tmp_path: Path, digits) -> None:
    model = _model(digits)
    opt = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path, model, opt, TrainState(1, 1), torch.Generator())
    blob = torch.load(tmp_path / STATE_FILE, weights_only=True)  # must not need pickle of code
    assert set(blob) >= {"model", "optimizer", "epoch", "step"}
    loaded = load_model(tmp_path)
    x = digits.val[:8]
    model.eval()
    assert torch.allclose(loaded.encode(x).mu, model.encode(x).mu)


def test_final_test_metrics_from_a_checkpoint_directory(tmp_path: Path, digits) -> None:
    model = _model(digits)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        _epoch(model, opt, digits)
    save_checkpoint(tmp_path, model, opt, TrainState(2, 2), torch.Generator())
    metrics = final_test_metrics(str(tmp_path), BASE, {"k": 50, "chunk_size": 16, "max_examples": 40})
    assert metrics["test/nll_k"] == 50
    # the importance-sampled bound is tighter than the ELBO (up to Monte Carlo noise)
    assert metrics["test/nll"] <= metrics["test/nelbo"] + 0.5
    direct = evaluate_test_set(model.eval(), digits, NLLSpec(k=50, chunk_size=16, max_examples=40), eval_batch_size=500, seed=0)
    assert math.isclose(direct["test/nll"], metrics["test/nll"], rel_tol=1e-4)
