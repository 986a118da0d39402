"""The test-set evaluation of a trained VAE: importance-sampled NLL (Burda et al. 2015) and the
test ELBO terms, at the end of a trial or, for the best trial, after the search."""
from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import torch

from trainables.checkpoint import load_model
from trainables.data import DatasetSplits
from trainables.device import pick_device
from trainables.metrics import evaluate, importance_sampled_nll
from trainables.spec import NLLSpec, TrialSpec
from trainables.vae import VAE

MAX_ROWS_PER_CALL = 4096  # decoder rows per call in the importance-sampled NLL


def evaluate_test_set(model: VAE, data: DatasetSplits, spec: NLLSpec, *, eval_batch_size: int, seed: int) -> dict[str, float]:
    """``test/nll`` by importance sampling, plus the test ELBO terms."""
    test = data.test if spec.max_examples is None else data.test[: spec.max_examples]
    generator = torch.Generator(device=test.device).manual_seed(seed)
    result = evaluate(model, test, batch_size=eval_batch_size)
    # One decoder call sees batch × chunk rows: bound it so memory does not grow with the chunk size.
    batch = max(1, min(test.shape[0], MAX_ROWS_PER_CALL // spec.chunk_size))
    nll = importance_sampled_nll(model, test, k=spec.k, batch_size=batch, chunk_size=spec.chunk_size, generator=generator)
    return {**result.as_metrics(prefix="test"), "test/nll": nll, "test/nll_k": float(spec.k)}


def final_test_metrics(checkpoint: Any, spec: TrialSpec, nll: NLLSpec) -> dict[str, float]:
    """Test metrics of a finished trial's checkpoint: anything with ``as_directory()`` (a Tune
    ``Checkpoint``, which may live on remote storage) or a local directory path. ``spec`` gives
    the data (and its split seed) the trial was trained on."""
    device = pick_device()
    context = checkpoint.as_directory() if hasattr(checkpoint, "as_directory") else nullcontext(checkpoint)
    with context as directory:
        model = load_model(directory, device)
    data = spec.data.load(seed=spec.data_seed).to(device)
    return evaluate_test_set(model, data, nll, eval_batch_size=spec.eval_batch_size, seed=spec.seed)
