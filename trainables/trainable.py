"""The Ray Tune function trainable: build a VAE from the trial's config, train, report, checkpoint.

Every epoch: train (β_t from the schedule), evaluate on validation, then
``tune.report(metrics, checkpoint=...)``: a checkpoint at every report is what lets a
scheduler pause the trial and Tune restart it elsewhere (``tune.get_checkpoint()`` on resume).
Images (reconstructions, prior samples) are written into the checkpoint directory, so the
driver can log them to MLflow without the workers knowing where MLflow is.
"""
from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from ray import tune

from trainables.images import reconstruction_pairs, save_png
from trainables.metrics import evaluate
from trainables.trial import (
    RECONSTRUCTIONS_PNG,
    SAMPLES_PNG,
    TrainState,
    TrialSpec,
    load_checkpoint,
    save_checkpoint,
    evaluate_test_set,
)
from trainables.training import steps_per_epoch, train_epoch
from trainables.vae import VAE, build_vae


def pick_device() -> torch.device:
    """CUDA when Ray gave this trial a GPU (Ray sets CUDA_VISIBLE_DEVICES per trial), else CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def train_vae(config: Mapping[str, Any], base: Mapping[str, Any]) -> None:
    """Ray Tune entry point; ``config`` = sampled hyperparameters, ``base`` = the fixed settings."""
    spec = TrialSpec.from_dicts(base, config)
    device = pick_device()
    torch.manual_seed(spec.seed)
    data = spec.data.load(seed=spec.data_seed).to(device)
    model = build_vae(spec.vae_config(data.shape)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    batch_rng = torch.Generator().manual_seed(spec.seed)
    state = TrainState(epoch=0, step=0)

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory, model, optimizer, batch_rng)

    total_steps = spec.epochs * steps_per_epoch(data.train.shape[0], spec.batch_size)
    fixed_images = data.val[: spec.n_images // 2]
    for epoch in range(state.epoch, spec.epochs):
        stats = train_epoch(
            model, optimizer, data.train, batch_size=spec.batch_size, schedule=spec.schedule,
            step=state.step, total_steps=total_steps, binarize=data.binarize, generator=batch_rng,
            grad_clip=spec.grad_clip,
        )
        state = TrainState(epoch=epoch + 1, step=state.step + stats.steps)
        metrics: dict[str, Any] = {**stats.as_metrics(), **evaluate(model, data.val, batch_size=spec.eval_batch_size).as_metrics("val")}
        metrics["epoch"] = state.epoch
        last = state.epoch == spec.epochs
        if last and spec.test_nll is not None:
            metrics.update(evaluate_test_set(model, data, spec.test_nll, eval_batch_size=spec.eval_batch_size, seed=spec.seed))
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(directory, model, optimizer, state, batch_rng)
            write_images(model, fixed_images, directory, n_samples=spec.n_images, seed=spec.seed)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def write_images(model: VAE, originals: torch.Tensor, directory: str | Path, *, n_samples: int, seed: int) -> None:
    """Reconstructions (original rows above their reconstructions) and prior samples, as PNG."""
    model.eval()
    cols = max(1, math.ceil(math.sqrt(2 * originals.shape[0])))
    pairs = reconstruction_pairs(originals, model.reconstruct(originals), cols)
    save_png(pairs, Path(directory) / RECONSTRUCTIONS_PNG, nrow=cols)
    generator = torch.Generator(device=originals.device).manual_seed(seed)
    save_png(model.sample(n_samples, generator=generator), Path(directory) / SAMPLES_PNG)
