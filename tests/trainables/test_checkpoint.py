"""The checkpoint format and the final test evaluation (``trainables.checkpoint``,
``trainables.final_eval``) on the 8×8 digits (no Ray)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from tests.trainables.small_vae import DIGITS_SPEC, one_epoch, small_vae
from trainables.checkpoint import (
    CONFIG_FILE,
    STATE_FILE,
    TrainState,
    load_checkpoint,
    load_model,
    save_checkpoint,
)
from trainables.final_eval import evaluate_test_set, final_test_metrics
from trainables.spec import NLLSpec


def test_checkpoint_round_trip_restores_weights_optimizer_and_rng(tmp_path: Path, digits) -> None:
    model = small_vae(digits)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    gen = torch.Generator().manual_seed(5)
    one_epoch(model, opt, digits, generator=gen)
    save_checkpoint(tmp_path, model, opt, TrainState(epoch=1, step=23), gen)
    assert (tmp_path / STATE_FILE).is_file() and (tmp_path / CONFIG_FILE).is_file()
    after_a = one_epoch(model, opt, digits, generator=gen)  # continue from the saved point

    model_b = small_vae(digits)
    opt_b = torch.optim.Adam(model_b.parameters(), lr=1e-3)
    gen_b = torch.Generator()
    state = load_checkpoint(tmp_path, model_b, opt_b, gen_b)
    assert state == TrainState(epoch=1, step=23)
    after_b = one_epoch(model_b, opt_b, digits, generator=gen_b)
    assert math.isclose(after_a.loss, after_b.loss, rel_tol=1e-5)  # resumed training is the same training


def test_checkpoint_is_weights_only(tmp_path: Path, digits) -> None:
    model = small_vae(digits)
    opt = torch.optim.Adam(model.parameters())
    save_checkpoint(tmp_path, model, opt, TrainState(1, 1), torch.Generator())
    blob = torch.load(tmp_path / STATE_FILE, weights_only=True)  # must not need pickle of code
    assert set(blob) >= {"model", "optimizer", "epoch", "step"}
    loaded = load_model(tmp_path)
    x = digits.val[:8]
    model.eval()
    assert torch.allclose(loaded.encode(x).mu, model.encode(x).mu)


def test_final_test_metrics_from_a_checkpoint_directory(tmp_path: Path, digits) -> None:
    model = small_vae(digits)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(2):
        one_epoch(model, opt, digits)
    save_checkpoint(tmp_path, model, opt, TrainState(2, 2), torch.Generator())
    metrics = final_test_metrics(str(tmp_path), DIGITS_SPEC, NLLSpec(k=50, chunk_size=16, max_examples=40))
    assert metrics["test/nll_k"] == 50
    # the importance-sampled bound is tighter than the ELBO (up to Monte Carlo noise)
    assert metrics["test/nll"] <= metrics["test/nelbo"] + 0.5
    direct = evaluate_test_set(model.eval(), digits, NLLSpec(k=50, chunk_size=16, max_examples=40), eval_batch_size=500, seed=0)
    assert math.isclose(direct["test/nll"], metrics["test/nll"], rel_tol=1e-4)
