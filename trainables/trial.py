"""A trial's settings, its checkpoint format and the final test evaluation (no Ray here).

The search driver sends a plain ``base`` mapping (the fixed part of the config) and Ray Tune
sends the sampled hyperparameters; :meth:`TrialSpec.from_dicts` turns both into one typed
object on arrival, so no bare dict travels further. Checkpoints are a directory with
``state.pt`` (read with ``torch.load(..., weights_only=True)``: a checkpoint on a shared volume
must not be able to run code) and ``vae_config.json``.
"""
from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch

from trainables.data import DatasetSplits, load_dataset
from trainables.metrics import evaluate, importance_sampled_nll
from trainables.training import LossSchedule
from trainables.vae import VAE, VAEConfig, build_vae

STATE_FILE = "state.pt"
CONFIG_FILE = "vae_config.json"
RECONSTRUCTIONS_PNG = "reconstructions.png"
SAMPLES_PNG = "samples.png"
FREE_BITS_SCHEDULE = "free_bits"
MAX_ROWS_PER_CALL = 4096  # decoder rows per call in the importance-sampled NLL

# Sampled keys Tune may override, and where they land.
_MODEL_KEYS = ("latent_dim", "decoder", "encoder", "width")
_TRAIN_KEYS = ("beta", "lr", "free_bits", "batch_size")
SCHEDULE_KEY = "schedule"
SCHEDULE_PARAM_PREFIX = "schedule."


@dataclass(frozen=True)
class DataSpec:
    name: str = "mnist5k"
    root: str | None = None
    binarize: str = "dynamic"
    resize: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    download: bool = True
    max_train: int | None = None

    def load(self, seed: int) -> DatasetSplits:
        return load_dataset(
            self.name, root=self.root, binarize=self.binarize, resize=self.resize,
            val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=seed,
            download=self.download, max_train=self.max_train,
        )


@dataclass(frozen=True)
class NLLSpec:
    k: int = 5000
    chunk_size: int = 500
    max_examples: int | None = None


@dataclass(frozen=True)
class TrialSpec:
    data: DataSpec
    model: dict[str, Any]           # VAEConfig fields except ``shape`` (known once the data is loaded)
    schedule: LossSchedule
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    grad_clip: float | None = None
    eval_batch_size: int = 500
    n_images: int = 64
    seed: int = 0                          # model init, batch order, sampling (a sampled "seed" overrides it)
    data_seed: int = 0                     # the train/val/test split: the same for every trial of a search
    test_nll: NLLSpec | None = None   # set: compute test/nll at the end of this trial
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dicts(cls, base: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> TrialSpec:
        """``base``: {"seed", "data", "model", "train", "test_nll"}; ``overrides``: Tune's sampled config."""
        overrides = dict(overrides or {})
        train = dict(base.get("train", {}))
        model = dict(base.get("model", {}))
        for key in _MODEL_KEYS:
            if key in overrides:
                model[key] = overrides.pop(key)
        for key in _TRAIN_KEYS:
            if key in overrides:
                train[key] = overrides.pop(key)
        schedule_cfg = dict(train.pop("schedule", {"name": "constant", "params": {}}))
        name = overrides.pop(SCHEDULE_KEY, schedule_cfg.get("name", "constant"))
        params = dict(schedule_cfg.get("params", {})) if name == schedule_cfg.get("name") else {}
        prefix = f"{SCHEDULE_PARAM_PREFIX}{name}."
        for key in [k for k in overrides if k.startswith(SCHEDULE_PARAM_PREFIX)]:
            value = overrides.pop(key)
            if key.startswith(prefix):
                params[key[len(prefix):]] = value
        free_bits = float(train.pop("free_bits", 0.0))
        if name == FREE_BITS_SCHEDULE:  # constant β with the free-bits rate
            name, free_bits = "constant", float(params.pop("lam", free_bits or 0.5))
        schedule = LossSchedule(name=name, beta=float(train.pop("beta", 1.0)), params=params, free_bits=free_bits)
        test = base.get("test_nll")
        return cls(
            data=DataSpec(**base.get("data", {})),
            model=model,
            schedule=schedule,
            test_nll=NLLSpec(**test) if test else None,
            seed=int(overrides.pop("seed", base.get("seed", 0))),
            data_seed=int(base.get("seed", 0)),
            extra=overrides,
            **{k: train[k] for k in ("epochs", "batch_size", "lr", "grad_clip", "eval_batch_size", "n_images") if k in train},
        )

    def vae_config(self, shape: tuple[int, int, int]) -> VAEConfig:
        return VAEConfig(shape=shape, **self.model)


@dataclass
class TrainState:
    epoch: int      # epochs completed
    step: int       # optimiser steps completed


def save_checkpoint(
    directory: str | Path, model: VAE, optimizer: torch.optim.Optimizer, state: TrainState,
    generator: torch.Generator,
) -> None:
    directory = Path(directory)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "epoch": state.epoch,
            "step": state.step,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "batch_rng": generator.get_state(),
        },
        directory / STATE_FILE,
    )
    (directory / CONFIG_FILE).write_text(json.dumps(model.config.to_dict(), indent=2))


def load_checkpoint(
    directory: str | Path, model: VAE, optimizer: torch.optim.Optimizer | None, generator: torch.Generator | None,
) -> TrainState:
    """Restore weights (and optimiser / RNG state when given) in place; returns the progress made."""
    blob = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(blob["model"])
    if optimizer is not None:
        optimizer.load_state_dict(blob["optimizer"])
    if generator is not None:
        generator.set_state(blob["batch_rng"])
        torch.set_rng_state(blob["torch_rng"])
        if torch.cuda.is_available() and blob["cuda_rng"]:
            torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return TrainState(epoch=int(blob["epoch"]), step=int(blob["step"]))


def load_model(directory: str | Path, device: str | torch.device = "cpu") -> VAE:
    """A trained VAE from a checkpoint directory (weights only; no pickle is executed)."""
    directory = Path(directory)
    config = VAEConfig.from_dict(json.loads((directory / CONFIG_FILE).read_text()))
    model = build_vae(config)
    load_checkpoint(directory, model, None, None)
    return model.to(device).eval()


def evaluate_test_set(model: VAE, data: DatasetSplits, spec: NLLSpec, *, eval_batch_size: int, seed: int) -> dict[str, float]:
    """``test/nll`` by importance sampling, plus the test ELBO terms."""
    test = data.test if spec.max_examples is None else data.test[: spec.max_examples]
    generator = torch.Generator(device=test.device).manual_seed(seed)
    result = evaluate(model, test, batch_size=eval_batch_size)
    # One decoder call sees batch × chunk rows: bound it so memory does not grow with the chunk size.
    batch = max(1, min(test.shape[0], MAX_ROWS_PER_CALL // spec.chunk_size))
    nll = importance_sampled_nll(model, test, k=spec.k, batch_size=batch, chunk_size=spec.chunk_size, generator=generator)
    return {**result.as_metrics(prefix="test"), "test/nll": nll, "test/nll_k": float(spec.k)}


def final_test_metrics(checkpoint: Any, base: Mapping[str, Any], test_nll: Mapping[str, Any]) -> dict[str, float]:
    """Test metrics of a finished trial's checkpoint: anything with ``as_directory()`` (a Tune
    ``Checkpoint``, which may live on remote storage) or a local directory path."""
    spec = TrialSpec.from_dicts(base)
    device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
    context = checkpoint.as_directory() if hasattr(checkpoint, "as_directory") else nullcontext(checkpoint)
    with context as directory:
        model = load_model(directory, device)
    data = spec.data.load(seed=spec.data_seed).to(device)
    return evaluate_test_set(model, data, NLLSpec(**test_nll), eval_batch_size=spec.eval_batch_size, seed=spec.seed)
