"""The checkpoint format and the final test evaluation (``trainables.checkpoint``,
``trainables.final_eval``) on the 8×8 digits (no Ray)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from trainables.checkpoint import CONFIG_FILE, STATE_FILE, TrainState, load_checkpoint, load_model, save_checkpoint
from trainables.final_eval import evaluate_test_set, final_test_metrics
from trainables.spec import DataSpec, LossSchedule, NLLSpec, TrialSpec
from trainables.train_loop import train_epoch
from trainables.vae import ModelSpec, VAEConfig, build_vae

SPEC = TrialSpec(
    data=DataSpec(name="digits", binarize="dynamic"),
    model=ModelSpec(encoder="mlp", decoder="mlp_small", latent_dim=4, width=0.25),
    schedule=LossSchedule(name="linear", beta=1.0, params={"warmup_fraction": 0.5}),
    epochs=3, batch_size=64, lr=3e-3,
)


def _model(digits, latent_dim: int = 4):
    torch.manual_seed(0)
    return build_vae(VAEConfig(shape=digits.shape, latent_dim=latent_dim, encoder="mlp", decoder="mlp_small", width=0.25))


def _epoch(model, opt, digits, schedule=LossSchedule(), step=0, total=100, generator=None):
    return train_epoch(model, opt, digits.train, batch_size=64, schedule=schedule, step=step, total_steps=total,
                       binarize=digits.binarize, generator=generator or torch.Generator().manual_seed(0))


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
    metrics = final_test_metrics(str(tmp_path), SPEC, NLLSpec(k=50, chunk_size=16, max_examples=40))
    assert metrics["test/nll_k"] == 50
    # the importance-sampled bound is tighter than the ELBO (up to Monte Carlo noise)
    assert metrics["test/nll"] <= metrics["test/nelbo"] + 0.5
    direct = evaluate_test_set(model.eval(), digits, NLLSpec(k=50, chunk_size=16, max_examples=40), eval_batch_size=500, seed=0)
    assert math.isclose(direct["test/nll"], metrics["test/nll"], rel_tol=1e-4)
