"""The validated config -> the typed trial specs of ``trainables.spec``: the one place where a
config becomes what a trial receives (the driver hands the spec to the trainable as is)."""
from __future__ import annotations

from search.config import Config
from trainables.spec import DataSpec, LossSchedule, NLLSpec, ObjectiveSpec, SharedEncoderSpec, TrialSpec
from trainables.vae import ModelSpec


def data_spec(config: Config) -> DataSpec:
    return DataSpec(**config.data.model_dump())


def nll_spec(config: Config) -> NLLSpec:
    """The importance-sampled test NLL's settings (``final_eval``)."""
    fe = config.final_eval
    return NLLSpec(k=fe.test_nll_k, chunk_size=fe.chunk_size, max_examples=fe.max_examples)


def trial_spec(config: Config, *, epochs: int | None = None) -> TrialSpec:
    """Every VAE trial's fixed part; the searched keys override it per trial. ``epochs`` replaces
    ``train.epochs`` (the bandit allocation gives an arm up to the whole budget)."""
    train = config.train
    return TrialSpec(
        data=data_spec(config),
        model=ModelSpec(**config.model.model_dump()),
        schedule=LossSchedule(name=train.schedule.name, beta=train.beta, params=dict(train.schedule.params),
                              free_bits=train.free_bits),
        objective=ObjectiveSpec(name=train.objective.name, params=dict(train.objective.params)),
        epochs=train.epochs if epochs is None else epochs,
        batch_size=train.batch_size,
        lr=train.lr,
        grad_clip=train.grad_clip,
        eval_batch_size=train.eval_batch_size,
        n_images=train.n_images,
        seed=config.seed,
        data_seed=config.seed,
        test_nll=nll_spec(config) if config.final_eval.trials == "all" else None,
    )


def shared_encoder_spec(config: Config) -> SharedEncoderSpec:
    """Every shared-encoder trial's fixed part; Tune's grid sets ``dataset``, ``policy`` and ``seed``."""
    se, model = config.bandit.shared_encoder, config.model
    return SharedEncoderSpec(
        data=data_spec(config),
        decoders=tuple(config.bandit.arms),
        encoder=model.encoder,
        latent_dim=model.latent_dim,
        width=model.width,
        likelihood=model.likelihood,
        policy=se.policies[0],
        policy_params_by_name=se.policy_params,
        epochs=se.epochs,
        batch_size=config.train.batch_size,
        lr=config.train.lr,
        beta=config.train.beta,
        eval_every=se.eval_every,
        eval_batch_size=se.eval_batch_size,
        seed=config.seed,
        data_seed=config.seed,
    )
