"""The Ray Tune function trainable of the shared-encoder decoder bandit (seed 003's protocol).

One Tune trial = one dataset × one policy × one seed: one encoder, K decoder heads, a policy
choosing a head per minibatch (``trainables/shared_encoder.py`` does the work). Every epoch the
trial reports ``epoch_metrics`` with a checkpoint (weights, optimiser, policy, progress and RNG
states), so a scheduler can pause it and Tune can resume it elsewhere from
``tune.get_checkpoint()`` making exactly the choices it would have made. Per-head
reconstructions and prior samples go into the checkpoint directory as PNG for the driver to log.
"""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from ray import tune

from trainables.images import save_png
from trainables.policies import build_policy
from trainables.shared_encoder import (
    SharedEncoderProgress,
    SharedEncoderSpec,
    SharedEncoderVAE,
    build_shared_model,
    epoch_metrics,
    load_state,
    save_state,
    total_steps,
    train_shared_epoch,
    validation_batch,
)
from trainables.trainable import pick_device
from trainables.trial import RECONSTRUCTIONS_PNG, SAMPLES_PNG

N_IMAGES = 8  # images per row of the per-head grids


def train_shared_encoder(config: Mapping[str, Any], base: Mapping[str, Any]) -> None:
    """Ray Tune entry point; ``config`` = Tune's sampled keys (dataset, policy, seed, ...),
    ``base`` = the fixed settings (see ``SharedEncoderSpec.from_dicts``)."""
    spec = SharedEncoderSpec.from_dicts(base, config)
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
            write_head_images(model, val_batch[:N_IMAGES], directory, seed=spec.seed)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))


def write_head_images(model: SharedEncoderVAE, originals: torch.Tensor, directory: str | Path, *, seed: int) -> None:
    """Reconstructions (the originals' row, then one row per head) and prior samples (one row
    per head, the same z for every head, so rows differ only by decoder)."""
    was_training = model.training
    model.eval()  # BatchNorm on running statistics, and no update of them
    try:
        n = originals.shape[0]
        rows = [originals] + [model.reconstruct(originals, k) for k in range(len(model.heads))]
        save_png(torch.cat(rows), Path(directory) / RECONSTRUCTIONS_PNG, nrow=n)
        generator = torch.Generator(device=originals.device).manual_seed(seed)
        z = model.prior.sample(n, device=originals.device, generator=generator)  # (n, D)
        with torch.no_grad():
            samples = [model.likelihood.mean(head(z)) for head in model.heads]  # K × (n, C, H, W)
        save_png(torch.cat(samples), Path(directory) / SAMPLES_PNG, nrow=n)
    finally:
        model.train(was_training)
