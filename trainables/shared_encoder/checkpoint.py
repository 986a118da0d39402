"""The shared-encoder checkpoint: ``state.pt`` (tensors, ints and JSON strings only: loadable
with ``weights_only=True``) and ``shared_encoder.json`` (the model's config and the spec)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from trainables.checkpoint import load_training_state, save_training_state
from trainables.policies import Policy
from trainables.shared_encoder.loop import SharedEncoderProgress
from trainables.shared_encoder.model import SharedEncoderVAE
from trainables.spec import SharedEncoderSpec

CONFIG_FILE = "shared_encoder.json"  # not vae_config.json: checkpoint.load_model must not mistake it for a VAE


def save_state(
    directory: str | Path, model: SharedEncoderVAE, optimizer: torch.optim.Optimizer, policy: Policy,
    progress: SharedEncoderProgress, generator: torch.Generator, spec: SharedEncoderSpec | None = None,
) -> None:
    """``state.pt`` (tensors, ints and JSON strings only: loadable with ``weights_only=True``)
    and ``shared_encoder.json`` (the model's config, and the spec when given)."""
    directory = Path(directory)
    save_training_state(directory, model, optimizer, generator, policy=json.dumps(policy.state_dict()),
                        progress=json.dumps(progress.to_dict()))
    config = {"model": model.config_dict(), "spec": spec.to_dict() if spec is not None else None}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def load_state(
    directory: str | Path, model: SharedEncoderVAE, optimizer: torch.optim.Optimizer | None = None,
    policy: Policy | None = None, generator: torch.Generator | None = None,
) -> SharedEncoderProgress:
    """Restore in place whatever is given (the RNGs with ``generator``); returns the progress."""
    blob = load_training_state(Path(directory), model, optimizer, generator)
    if policy is not None:
        policy.load_state_dict(json.loads(blob["policy"]))
    return SharedEncoderProgress.from_dict(json.loads(blob["progress"]))


def load_shared_model(directory: str | Path, device: str | torch.device = "cpu") -> SharedEncoderVAE:
    """A trained shared-encoder model from a checkpoint directory (no pickle is executed)."""
    config = dict(json.loads((Path(directory) / CONFIG_FILE).read_text())["model"])
    model = SharedEncoderVAE(config.pop("shape"), config.pop("decoders"), **config)
    load_state(directory, model)
    return model.to(device).eval()
