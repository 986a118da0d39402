"""The checkpoint format of a VAE trial, and loading a trained model back (no Ray here).

A checkpoint is a directory with ``state.pt`` (weights, optimiser, progress and RNG states,
read with ``torch.load(..., weights_only=True)``: a checkpoint on a shared volume must not be
able to run code) and ``vae_config.json`` (the model's :class:`~trainables.vae.VAEConfig`).
The trainables also write the PNG images the driver logs to MLflow into it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from trainables.vae import VAE, VAEConfig, build_vae

STATE_FILE = "state.pt"
CONFIG_FILE = "vae_config.json"
RECONSTRUCTIONS_PNG = "reconstructions.png"
SAMPLES_PNG = "samples.png"
PSEUDO_INPUTS_PNG = "pseudo_inputs.png"  # the VampPrior's pseudo-inputs
PRIOR_JSON = "prior.json"  # a learnt prior's weights, component means and scales


@dataclass
class TrainState:
    epoch: int      # epochs completed
    step: int       # optimiser steps completed


def save_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        generator: torch.Generator, **extra: Any) -> None:
    """``state.pt``: weights, optimiser, the RNG states and ``extra`` (tensors, numbers, strings)."""
    blob = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), **rng_state(generator), **extra}
    torch.save(blob, path / STATE_FILE)


def load_training_state(path: Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer | None,
                        generator: torch.Generator | None) -> dict[str, Any]:
    """Restore weights (and the optimiser and RNGs when given) in place from ``state.pt``; returns
    the whole blob for the caller's own entries. ``weights_only=True``: no pickle is executed."""
    blob = torch.load(path / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(blob["model"])
    if optimizer is not None:
        optimizer.load_state_dict(blob["optimizer"])
    if generator is not None:
        restore_rng_state(blob, generator)
    return blob


def rng_state(generator: torch.Generator) -> dict[str, Any]:
    """The global torch RNGs (CPU and CUDA) and the batch-order ``generator``, as tensors."""
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "batch_rng": generator.get_state(),
    }


def restore_rng_state(blob: dict[str, Any], generator: torch.Generator) -> None:
    """Undo :func:`rng_state`: the resumed trial draws exactly what the uninterrupted one would."""
    generator.set_state(blob["batch_rng"])
    torch.set_rng_state(blob["torch_rng"])
    if torch.cuda.is_available() and blob["cuda_rng"]:
        torch.cuda.set_rng_state_all(blob["cuda_rng"])


def save_checkpoint(
    directory: str | Path, model: VAE, optimizer: torch.optim.Optimizer, state: TrainState,
    generator: torch.Generator,
) -> None:
    directory = Path(directory)
    save_training_state(directory, model, optimizer, generator, epoch=state.epoch, step=state.step)
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2))


def load_checkpoint(
    directory: str | Path, model: VAE, optimizer: torch.optim.Optimizer | None, generator: torch.Generator | None,
) -> TrainState:
    """Restore weights (and optimiser / RNG state when given) in place; returns the progress made."""
    blob = load_training_state(Path(directory), model, optimizer, generator)
    return TrainState(epoch=int(blob["epoch"]), step=int(blob["step"]))


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> VAE:
    """A trained VAE from a checkpoint directory (weights only; no pickle is executed)."""
    directory = Path(directory)
    config = VAEConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    model = build_vae(config)
    load_checkpoint(directory, model, None, None)
    return model.to(device).eval()
