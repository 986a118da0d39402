"""The Ray Tune function trainables: a VAE trial and a shared-encoder bandit trial.

Each gets its typed spec from the driver (``tune.with_parameters``) and Tune's sampled values as
``config``; every epoch it trains, evaluates and calls ``tune.report(metrics, checkpoint=...)``.
A checkpoint at every report is what lets a scheduler pause the trial and Tune restart it
elsewhere from ``tune.get_checkpoint()``, making exactly the choices it would have made.
Images (reconstructions, prior samples) are written into the checkpoint directory, so the
driver can log them to MLflow without the workers knowing where MLflow is.
"""
from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import torch
from ray import tune

from trainables.beta_conditioned import BetaConditionedObjective, BetaConditionedVAE, curve_metrics
from trainables.checkpoint import (
    PRIOR_JSON,
    PSEUDO_INPUTS_PNG,
    RECONSTRUCTIONS_PNG,
    SAMPLES_PNG,
    TrainState,
    load_checkpoint,
    save_checkpoint,
)
from trainables.data import DatasetSplits, steps_per_epoch
from trainables.device import pick_device
from trainables.divergence import check_divergence, marginal_nll
from trainables.final_eval import MAX_ROWS_PER_CALL, evaluate_test_set
from trainables.images import reconstruction_pairs, save_png
from trainables.metrics import evaluate, importance_sampled_nll
from trainables.policies import build_policy
from trainables.priors import VampPrior
from trainables.shared_encoder.checkpoint import load_state, save_state
from trainables.shared_encoder.loop import (
    SharedEncoderProgress,
    epoch_metrics,
    total_steps,
    train_shared_epoch,
    validation_batch,
)
from trainables.shared_encoder.model import SharedEncoderVAE, build_shared_model
from trainables.spec import SharedEncoderSpec, TrialSpec
from trainables.train_loop import train_epoch
from trainables.vae import VAE, build_vae

N_HEAD_IMAGES = 8  # images per row of the shared-encoder's per-head grids


@dataclass
class StartedTrial:
    """A VAE trial ready for its first epoch."""

    data: DatasetSplits
    model: VAE
    optimizer: torch.optim.Optimizer
    total_steps: int


def start_trial(spec: TrialSpec, device: torch.device | str = "cpu") -> StartedTrial:
    """Everything a trial does before it trains: the spec's rules first (a setting that cannot run
    fails here, before any data is read: ``TrialSpec.check``, what ``vaesearch validate`` runs
    too), then the data, the schedule over the real number of steps, the model and the optimiser."""
    spec.check()
    torch.manual_seed(spec.seed)
    data = spec.data.load(seed=spec.data_seed).to(device)
    total = spec.epochs * steps_per_epoch(data.train.shape[0], spec.batch_size)
    spec.schedule.check(total)
    model = build_vae(spec.vae_config(data.shape)).to(device)
    # The VampPrior's "init: data" picks its pseudo-inputs among the training images (a checkpoint
    # restored afterwards overwrites them); its own generator leaves the global RNG stream alone.
    model.prior.init_from_data(data.train, generator=torch.Generator().manual_seed(spec.seed))
    return StartedTrial(data, model, torch.optim.Adam(model.parameters(), lr=spec.lr), total)


def train_vae(config: Mapping[str, Any], spec: TrialSpec) -> None:
    """Ray Tune entry point; ``config`` = sampled hyperparameters, ``spec`` = the fixed settings."""
    spec = spec.with_overrides(config)
    started = start_trial(spec, pick_device())
    data, model, optimizer, total = started.data, started.model, started.optimizer, started.total_steps
    batch_rng = torch.Generator().manual_seed(spec.seed)
    state = TrainState(epoch=0, step=0)

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = load_checkpoint(directory, model, optimizer, batch_rng)

    baseline = marginal_nll(model.likelihood, data.train, data.val)
    fixed_images = data.val[: spec.n_images // 2]
    conditioning = spec.model.beta_conditioned   # set: one β per example, the curve evaluated per epoch
    objective = BetaConditionedObjective(conditioning) if conditioning is not None else spec.objective
    for epoch in range(state.epoch, spec.epochs):
        stats = train_epoch(
            model, optimizer, data.train, batch_size=spec.batch_size, schedule=spec.schedule,
            step=state.step, total_steps=total, binarize=data.binarize, generator=batch_rng,
            grad_clip=spec.grad_clip, objective=objective,
        )
        state = TrainState(epoch=epoch + 1, step=state.step + stats.steps)
        metrics: dict[str, Any] = {**stats.as_metrics(), **validation_metrics(model, data, spec)}
        metrics["epoch"] = state.epoch
        check_divergence(metrics["val/nelbo"], baseline, state.epoch, spec.epochs)
        if state.epoch == spec.epochs and spec.test_nll is not None:
            metrics.update(evaluate_test_set(model, data, spec.test_nll, eval_batch_size=spec.eval_batch_size, seed=spec.seed))
        with tempfile.TemporaryDirectory() as directory:
            save_checkpoint(directory, model, optimizer, state, batch_rng)
            write_images(model, fixed_images, directory, n_samples=spec.n_images, seed=spec.seed)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def validation_metrics(model: VAE, data: DatasetSplits, spec: TrialSpec) -> dict[str, float]:
    """``val/``: the ELBO terms, active units and ELBO surgery (β = 1, comparable across trials),
    plus ``val/iwae`` (the negative k-sample bound at the training k) for an IWAE trial. A β-conditioned
    model: ``val/`` at its reference β (1 clipped into its range), and its curve (``rd/``: the rate and
    distortion at each grid β, ``trainables.beta_conditioned.curve_metrics``)."""
    model.eval()
    metrics = evaluate(model, data.val, batch_size=spec.eval_batch_size).as_metrics("val")
    if isinstance(model, BetaConditionedVAE):
        metrics.update(curve_metrics(model, data.val, batch_size=spec.eval_batch_size, seed=spec.seed))
    if spec.objective.name == "iwae":
        k = spec.objective.k
        batch = max(1, min(data.val.shape[0], MAX_ROWS_PER_CALL // k))
        generator = torch.Generator(device=data.val.device).manual_seed(spec.seed)
        metrics["val/iwae"] = importance_sampled_nll(model, data.val, k=k, batch_size=batch, chunk_size=k,
                                                     generator=generator)
    return metrics


def train_shared_encoder(config: Mapping[str, Any], spec: SharedEncoderSpec) -> None:
    """Ray Tune entry point of one shared-encoder trial; ``config`` = Tune's grid values
    (``dataset``, ``policy``, ``seed``), ``spec`` = the fixed settings."""
    spec = spec.with_overrides(config)
    device = pick_device()
    torch.manual_seed(spec.seed)
    data = spec.data.load(seed=spec.data_seed).to(device)
    model = build_shared_model(spec, data.shape).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=spec.lr)
    budget = total_steps(spec, data.train.shape[0])
    policy = build_policy(spec.policy, len(spec.decoders), budget=budget, seed=spec.seed, **spec.policy_params)
    batch_rng = torch.Generator().manual_seed(spec.seed)
    progress = SharedEncoderProgress.start(len(spec.decoders))

    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            progress = load_state(directory, model, optimizer, policy, batch_rng)

    val_batch = validation_batch(data, spec.eval_batch_size)  # (≤ eval_batch_size, C, H, W)
    for _ in range(progress.epoch, spec.epochs):
        progress = train_shared_epoch(model, optimizer, policy, data, spec, progress, val_batch, generator=batch_rng)
        metrics = epoch_metrics(spec, progress, policy)
        with tempfile.TemporaryDirectory() as directory:
            save_state(directory, model, optimizer, policy, progress, batch_rng, spec=spec)
            write_head_images(model, val_batch[:N_HEAD_IMAGES], directory, seed=spec.seed)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def write_images(model: VAE, originals: torch.Tensor, directory: str | Path, *, n_samples: int, seed: int) -> None:
    """Reconstructions (original rows above their reconstructions) and prior samples, as PNG."""
    model.eval()
    cols = max(1, math.ceil(math.sqrt(2 * originals.shape[0])))
    pairs = reconstruction_pairs(originals, model.reconstruct(originals), cols)
    save_png(pairs, Path(directory) / RECONSTRUCTIONS_PNG, nrow=cols, row_labels=["input", "recon"])
    generator = torch.Generator(device=originals.device).manual_seed(seed)
    save_png(model.sample(n_samples, generator=generator), Path(directory) / SAMPLES_PNG)
    write_prior_artifacts(model, directory)


def write_prior_artifacts(model: VAE, directory: str | Path) -> None:
    """A learnt prior's picture for MLflow: the VampPrior's pseudo-inputs as an image grid, and
    the prior's summary as JSON (mixture weights, component means and scales)."""
    if isinstance(model.prior, VampPrior):
        with torch.no_grad():
            save_png(model.prior.pseudo_inputs(), Path(directory) / PSEUDO_INPUTS_PNG)
    summary = model.prior.summary()
    if summary is not None:
        (Path(directory) / PRIOR_JSON).write_text(json.dumps(summary))


def write_head_images(model: SharedEncoderVAE, originals: torch.Tensor, directory: str | Path, *, seed: int) -> None:
    """Reconstructions (the originals' row, then one row per head) and prior samples (one row
    per head, the same z for every head, so rows differ only by decoder)."""
    was_training = model.training
    model.eval()  # BatchNorm on running statistics, and no update of them
    try:
        n = originals.shape[0]
        rows = [originals] + [model.reconstruct(originals, k) for k in range(len(model.heads))]
        save_png(torch.cat(rows), Path(directory) / RECONSTRUCTIONS_PNG, nrow=n,
                 row_labels=["input", *model.decoder_names])
        generator = torch.Generator(device=originals.device).manual_seed(seed)
        z = model.prior.sample(n, device=originals.device, generator=generator)  # (n, D)
        with torch.no_grad():
            samples = [model.likelihood.mean(head(z)) for head in model.heads]  # K × (n, C, H, W)
        save_png(torch.cat(samples), Path(directory) / SAMPLES_PNG, nrow=n, row_labels=list(model.decoder_names))
    finally:
        model.train(was_training)
