"""The shared-encoder decoder bandit: the multi-armed-bandit VAE of seed 003 (Abecidan), no Ray.

One convolutional encoder q(z|x) feeds K candidate decoder heads (the bandit's arms), one
likelihood and the N(0, I) prior (Kingma & Welling 2014). For every minibatch a policy picks ONE
head; that head's β-VAE loss (distortion + β·rate, Higgins et al. 2017) trains the encoder and
that head only, and the reward is −(the head's distortion on that training batch), the seed's
−BCE. The seed judged arms by training batches alone; here every ``eval_every`` steps (and at
every epoch end) all heads are also scored without gradient on one fixed validation batch, so
that regret is measured against validation quality:

    regret_t = val_distortion[chosen_t] − min_k val_distortion[k]   (latest scores; 0 before any)

All heads are scored on the *same* z samples (one encoder pass, one fixed-seed draw), a paired
comparison: the differences between heads are not blurred by sampling noise.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainables.data import DatasetSplits, binarize_batch, minibatch_indices
from trainables.decoders import available_decoders, build_decoder
from trainables.encoders import Posterior, build_encoder, check_shape
from trainables.gaussian import reparameterize
from trainables.likelihoods import build_likelihood
from trainables.objectives import vae_loss
from trainables.policies import Policy, build_policy
from trainables.priors import build_prior
from trainables.schedules import KLWeight
from trainables.training import NonFiniteLossError, steps_per_epoch
from trainables.trial import STATE_FILE, DataSpec
from trainables.vae import VAEOutput

SEED_DECODERS: tuple[str, ...] = ("mlp_small", "mlp_large", "deconv_2x2", "deconv_4x4", "linear_deconv_selu")
CONFIG_FILE = "shared_encoder.json"  # not vae_config.json: trial.load_model must not mistake it for a VAE
_DATASET_KEY = "dataset"  # the one override whose name differs from its field (data.name)


def _check_number(name: str, value: Any, *, integer: bool, minimum: float, strict: bool) -> None:
    """An int (or real) knob >= ``minimum`` (> when ``strict``); bools are config mistakes."""
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > minimum if strict else value >= minimum)
    if not ok:
        kind = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} {'>' if strict else '>='} {minimum}, got {name}={value!r}")


@dataclass(frozen=True)
class SharedEncoderSpec:
    """One shared-encoder trial: the data, the K heads, the policy and the training knobs."""

    data: DataSpec
    decoders: tuple[str, ...] = SEED_DECODERS
    encoder: str = "conv"
    latent_dim: int = 16
    width: float = 0.25
    likelihood: str = "bernoulli"
    policy: str = "epsilon_greedy"
    # Empty = the policy's own defaults; ε-greedy's default ε = 0.3 is the seed's.
    policy_params: dict[str, Any] = field(default_factory=dict)
    epochs: int = 5
    batch_size: int = 100
    lr: float = 1e-3
    beta: float = 1.0
    eval_every: int = 20
    eval_batch_size: int = 500
    seed: int = 0  # model init, batch order, the policy's coin flips (a sampled "seed" overrides it)
    data_seed: int = 0  # the train/val split: the same for every trial of a search

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoders", tuple(self.decoders))
        object.__setattr__(self, "policy_params", dict(self.policy_params))  # not the caller's dict
        if not self.decoders or len(set(self.decoders)) != len(self.decoders):
            raise ValueError(f"decoders must be a non-empty list of distinct names, got decoders={list(self.decoders)}")
        unknown = [name for name in self.decoders if name not in available_decoders()]
        if unknown:
            raise ValueError(f"unknown decoder(s) {unknown}; valid names: {available_decoders()}")
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size", "latent_dim"):
            _check_number(name, getattr(self, name), integer=True, minimum=0, strict=True)
        _check_number("lr", self.lr, integer=False, minimum=0, strict=True)
        _check_number("beta", self.beta, integer=False, minimum=0, strict=False)
        # The policy validates its own name and knobs; a budget of K pulls is the least it accepts.
        build_policy(self.policy, len(self.decoders), budget=len(self.decoders), seed=0, **self.policy_params)

    @classmethod
    def from_dicts(cls, base: Mapping[str, Any], overrides: Mapping[str, Any] | None = None) -> SharedEncoderSpec:
        """``base``: {"seed", "data": DataSpec fields, "shared_encoder": the other fields, optionally
        "policy_params_by_name": {policy: params}}; ``overrides``: Tune's sampled config, keys
        "dataset" (→ data.name), "policy", "policy_params", "seed" or any other field name."""
        overrides = dict(overrides or {})
        settings = dict(base.get("shared_encoder", {}))
        by_name = dict(settings.pop("policy_params_by_name", {}))
        data = dict(base.get("data", {}))
        if _DATASET_KEY in overrides:
            data["name"] = overrides.pop(_DATASET_KEY)
        base_policy = settings.get("policy", cls.policy)
        policy = overrides.get("policy", base_policy)
        if "policy_params" not in overrides:
            # Params written for one policy are meaningless (and rejected) for another.
            same = settings.get("policy_params", {}) if policy == base_policy else {}
            overrides["policy_params"] = dict(by_name.get(policy, same))
        fields = {f.name for f in dataclasses.fields(cls)} - {"data", "data_seed"}
        unknown = sorted((set(settings) | set(overrides)) - fields)
        if unknown:
            raise ValueError(f"unknown shared_encoder key(s) {unknown}; valid keys: {sorted(fields | {_DATASET_KEY})}")
        merged = {**settings, **overrides}
        seed = int(base.get("seed", 0))
        return cls(data=DataSpec(**data), **{**merged, "seed": int(merged.get("seed", seed)), "data_seed": seed})

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decoders"] = list(self.decoders)  # JSON has no tuples
        return d


@dataclass
class HeadScores:
    distortion: list[float]  # per head: mean −log p(x|z) on the batch, nats per example
    rate: float  # mean KL(q(z|x) ‖ p(z)): the shared encoder's, the same for every head


class SharedEncoderVAE(nn.Module):
    """One encoder, ``len(decoders)`` heads (an ``nn.ModuleList``), one likelihood, the N(0, I) prior."""

    def __init__(
        self, shape: Sequence[int], decoders: Sequence[str], *, encoder: str = "conv", latent_dim: int = 16,
        width: float = 0.25, likelihood: str = "bernoulli",
    ) -> None:
        super().__init__()
        self.shape = check_shape(shape)
        self.decoder_names = tuple(decoders)
        self.settings = {"encoder": encoder, "latent_dim": latent_dim, "width": width, "likelihood": likelihood}
        self.encoder = build_encoder(encoder, self.shape, latent_dim, width)
        self.heads = nn.ModuleList(build_decoder(name, self.shape, latent_dim, width) for name in self.decoder_names)
        self.likelihood = build_likelihood(likelihood, self.shape)
        self.prior = build_prior("standard_normal", latent_dim)

    def config_dict(self) -> dict[str, Any]:
        """The constructor's arguments as JSON values: enough to rebuild the model."""
        return {"shape": list(self.shape), "decoders": list(self.decoder_names), **self.settings}

    def _check_head(self, k: int) -> None:
        if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k < len(self.heads):
            raise ValueError(f"head index must be an int in [0, {len(self.heads)}), got {k=}")

    def encode(self, x: torch.Tensor) -> Posterior:  # (B, C, H, W) -> Posterior of (B, D)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"x must have shape (B, *{self.shape}), got x.shape={tuple(x.shape)}")
        return self.encoder(x)

    def head_output(self, x: torch.Tensor, k: int, generator: torch.Generator | None = None) -> VAEOutput:
        """The ELBO pieces of head ``k`` for one reparameterised z; x: (B, C, H, W)."""
        self._check_head(k)
        posterior = self.encode(x)
        z = reparameterize(posterior.mu, posterior.logvar, generator)  # (B, D)
        params = self.heads[k](z)  # (B, C, H, W)
        return VAEOutput(
            params=params, mu=posterior.mu, logvar=posterior.logvar, z=z,
            log_px_z=self.likelihood.log_prob(x, params),  # (B,)
            kl_per_dim=self.prior.kl(posterior.mu, posterior.logvar),  # (B, D)
        )

    @torch.no_grad()
    def head_scores(self, x: torch.Tensor, generator: torch.Generator | None = None) -> HeadScores:
        """Every head's mean −log p(x|z) on x, all on the same z, in eval mode (BatchNorm uses
        and keeps its running statistics); the module's mode is restored afterwards."""
        was_training = self.training
        self.eval()
        try:
            posterior = self.encode(x)
            z = reparameterize(posterior.mu, posterior.logvar, generator)  # (B, D), shared by every head
            nll = [-self.likelihood.log_prob(x, head(z)).double().mean() for head in self.heads]  # K × ()
            rate = self.prior.kl(posterior.mu, posterior.logvar).double().sum(1).mean()
            values = torch.stack([*nll, rate]).tolist()  # one host sync for all heads
        finally:
            self.train(was_training)
        return HeadScores(distortion=values[:-1], rate=values[-1])

    def head_val_distortion(self, x: torch.Tensor, generator: torch.Generator | None = None) -> list[float]:
        """Per head, the mean −log p(x|z) on x (no gradient, eval mode)."""
        return self.head_scores(x, generator).distortion

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, k: int) -> torch.Tensor:
        """Head ``k``'s mean image for z = E_q[z]: (B, C, H, W) -> (B, C, H, W) in [0, 1]."""
        self._check_head(k)
        return self.likelihood.mean(self.heads[k](self.encode(x).mu))


def build_shared_model(spec: SharedEncoderSpec, shape: Sequence[int]) -> SharedEncoderVAE:
    return SharedEncoderVAE(
        shape, spec.decoders, encoder=spec.encoder, latent_dim=spec.latent_dim, width=spec.width,
        likelihood=spec.likelihood,
    )


@dataclass
class SharedEncoderProgress:
    """What the loop has done so far (JSON-serialisable; goes into checkpoints)."""

    step: int  # minibatches (= pulls) so far
    epoch: int  # epochs completed
    pulls: list[int]  # per head
    cumulative_regret: float
    val_distortion: list[float]  # per head, the latest validation scores ([] before the first)
    val_rate: float = 0.0  # the encoder's rate on the validation batch at the latest scoring
    arm_history: list[int] = field(default_factory=list)  # the head chosen at every step
    regret_history: list[float] = field(default_factory=list)  # the regret of every step
    train_loss: float = 0.0  # means over the last epoch's steps (of whichever head trained)
    train_distortion: float = 0.0
    train_rate: float = 0.0
    seconds: float = 0.0  # wall time of the last epoch

    @classmethod
    def start(cls, n_heads: int) -> SharedEncoderProgress:
        return cls(step=0, epoch=0, pulls=[0] * n_heads, cumulative_regret=0.0, val_distortion=[])

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SharedEncoderProgress:
        return cls(**d)


def step_regret(val_distortion: Sequence[float], arm: int) -> float:
    """val_distortion[arm] − min_k val_distortion[k]; 0 before any validation scoring."""
    return val_distortion[arm] - min(val_distortion) if val_distortion else 0.0


def validation_batch(data: DatasetSplits, size: int) -> torch.Tensor:
    """The fixed validation batch every head is scored on: the first ``size`` of data.val."""
    return data.val[:size]  # (min(size, N_val), C, H, W)


def _score(model: SharedEncoderVAE, progress: SharedEncoderProgress, val_batch: torch.Tensor, seed: int) -> None:
    # A fresh generator with the same seed: every scoring uses the same noise, so a change in a
    # head's score is a change in the head, and the global RNG (training) is left untouched.
    generator = torch.Generator(device=val_batch.device).manual_seed(seed)
    scores = model.head_scores(val_batch, generator)
    progress.val_distortion, progress.val_rate = scores.distortion, scores.rate


def train_shared_epoch(
    model: SharedEncoderVAE, optimizer: torch.optim.Optimizer, policy: Policy, data: DatasetSplits,
    spec: SharedEncoderSpec, progress: SharedEncoderProgress, val_batch: torch.Tensor,
    generator: torch.Generator | None = None,
) -> SharedEncoderProgress:
    """One pass over data.train, one policy pull per minibatch; returns the updated copy of
    ``progress``. ``generator`` (CPU) orders the batches; z and dynamic binarisation use the global RNG."""
    start = time.perf_counter()
    p = copy.deepcopy(progress)  # the caller's progress stays as it was
    weight = KLWeight(beta=float(spec.beta))
    stats: list[torch.Tensor] = []  # loss, distortion, rate per step, reduced once at the end
    model.train()
    for idx in minibatch_indices(data.train.shape[0], spec.batch_size, generator=generator, device=data.train.device):
        arm = policy.select()
        regret = step_regret(p.val_distortion, arm)  # judged by the scores known when choosing
        x = binarize_batch(data.train[idx], data.binarize)  # (B, C, H, W)
        out = model.head_output(x, arm)
        terms = vae_loss(out.log_px_z, out.kl_per_dim, weight)
        optimizer.zero_grad(set_to_none=True)  # None grads: Adam skips the heads not chosen
        terms.loss.backward()
        optimizer.step()
        reward = -terms.distortion.item()  # the policy needs it before the next choice: one sync per step
        if not math.isfinite(reward):
            raise NonFiniteLossError(f"non-finite distortion {-reward} of head {model.decoder_names[arm]!r} at step {p.step}; lower lr")
        policy.update(arm, reward)
        stats += (terms.loss.detach(), terms.distortion.detach(), terms.rate.detach())
        p.step, p.pulls[arm] = p.step + 1, p.pulls[arm] + 1
        p.arm_history.append(arm)
        p.regret_history.append(regret)
        p.cumulative_regret += regret
        if p.step % spec.eval_every == 0:
            _score(model, p, val_batch, spec.seed)
    if p.step % spec.eval_every != 0:  # the reported scores are always this epoch's final ones
        _score(model, p, val_batch, spec.seed)
    means = torch.stack(stats).double().view(-1, 3).mean(0).tolist() if stats else [0.0] * 3
    if not all(math.isfinite(m) for m in means):
        raise NonFiniteLossError(f"non-finite training loss in epoch {p.epoch + 1}: loss, distortion, rate = {means}; lower lr")
    p.train_loss, p.train_distortion, p.train_rate = means
    p.epoch += 1
    p.seconds = time.perf_counter() - start
    return p


def total_steps(spec: SharedEncoderSpec, n_train: int) -> int:
    """Pulls in the whole trial: the budget handed to the policy."""
    return spec.epochs * steps_per_epoch(n_train, spec.batch_size)


def epoch_metrics(spec: SharedEncoderSpec, progress: SharedEncoderProgress, policy: Policy) -> dict[str, float]:
    """The per-epoch report: regret, the bandit's and the validation's best head, per-head stats."""
    val = progress.val_distortion
    val_best = min(range(len(val)), key=val.__getitem__) if val else 0
    best = policy.best_arm()
    metrics: dict[str, float] = {
        "epoch": progress.epoch,
        "step": progress.step,
        "regret/cumulative": progress.cumulative_regret,
        "regret/mean": progress.cumulative_regret / max(progress.step, 1),
        "bandit/best_head": best,
        "bandit/val_best_head": val_best,
        "bandit/agrees": float(best == val_best),
        "bandit/active_heads": len(policy.active),
        "val/distortion": val[val_best] if val else math.nan,
        "val/rate": progress.val_rate,
        "val/nelbo": (val[val_best] + progress.val_rate) if val else math.nan,  # the best head's, on the batch
        "train/loss": progress.train_loss,
        "train/distortion": progress.train_distortion,
        "train/rate": progress.train_rate,
        "time/epoch_seconds": progress.seconds,
    }
    for k, name in enumerate(spec.decoders):
        metrics[f"head/{name}/pulls"] = progress.pulls[k]
        metrics[f"head/{name}/pull_share"] = progress.pulls[k] / max(progress.step, 1)
        metrics[f"head/{name}/val_distortion"] = val[k] if val else math.nan
    return metrics


def save_state(
    directory: str | Path, model: SharedEncoderVAE, optimizer: torch.optim.Optimizer, policy: Policy,
    progress: SharedEncoderProgress, generator: torch.Generator, spec: SharedEncoderSpec | None = None,
) -> None:
    """``state.pt`` (tensors, ints and JSON strings only: loadable with ``weights_only=True``)
    and ``shared_encoder.json`` (the model's config, and the spec when given)."""
    directory = Path(directory)
    torch.save(
        {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "policy": json.dumps(policy.state_dict()),
            "progress": json.dumps(progress.to_dict()),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "batch_rng": generator.get_state(),
        },
        directory / STATE_FILE,
    )
    config = {"model": model.config_dict(), "spec": spec.to_dict() if spec is not None else None}
    (directory / CONFIG_FILE).write_text(json.dumps(config, indent=2))


def load_state(
    directory: str | Path, model: SharedEncoderVAE, optimizer: torch.optim.Optimizer | None = None,
    policy: Policy | None = None, generator: torch.Generator | None = None,
) -> SharedEncoderProgress:
    """Restore in place whatever is given (the RNGs with ``generator``); returns the progress."""
    blob = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(blob["model"])
    if optimizer is not None:
        optimizer.load_state_dict(blob["optimizer"])
    if policy is not None:
        policy.load_state_dict(json.loads(blob["policy"]))
    if generator is not None:
        generator.set_state(blob["batch_rng"])
        torch.set_rng_state(blob["torch_rng"])
        if torch.cuda.is_available() and blob["cuda_rng"]:
            torch.cuda.set_rng_state_all(blob["cuda_rng"])
    return SharedEncoderProgress.from_dict(json.loads(blob["progress"]))


def load_shared_model(directory: str | Path, device: str | torch.device = "cpu") -> SharedEncoderVAE:
    """A trained shared-encoder model from a checkpoint directory (no pickle is executed)."""
    config = dict(json.loads((Path(directory) / CONFIG_FILE).read_text())["model"])
    model = SharedEncoderVAE(config.pop("shape"), config.pop("decoders"), **config)
    load_state(directory, model)
    return model.to(device).eval()
