"""The validated config -> the typed trial specs of ``trainables.spec``: the one place where a
config becomes what a trial receives (the driver hands the spec to the trainable as is)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from search.config import ComponentConfig, Config
from trainables.beta_conditioning import BetaConditioning
from trainables.registry import Plugin
from trainables.spec import DataSpec, LossSchedule, NLLSpec, ObjectiveSpec, SharedEncoderSpec, TrialSpec
from trainables.vae import ModelSpec


def data_spec(config: Config) -> DataSpec:
    """The data section; a relative data.path is resolved against the config file's directory, and
    a callable's module gets the directory it was found in (as plug-ins do)."""
    from search.plugin_modules import find_module

    fields = config.data.model_dump()
    path = fields["path"]
    if path and config.data.name == "callable":
        found = find_module(path.partition(":")[0], config.directory)
        fields["search_path"] = str(found.home) if found else None
    elif path and not Path(path).expanduser().is_absolute() and config.directory not in (None, Path.cwd().resolve()):
        # Relative to the config file. Kept relative when that is where the run started: a job that
        # `vaesearch submit` sent starts in its working_dir, whose copy on each node holds the file.
        fields["path"] = str(config.directory / path)
    return DataSpec(**fields)


def nll_spec(config: Config) -> NLLSpec:
    """The importance-sampled test NLL's settings (``final_eval``)."""
    fe = config.final_eval
    return NLLSpec(k=fe.test_nll_k, chunk_size=fe.chunk_size, max_examples=fe.max_examples)


def plugins(config: Config) -> dict[str, Plugin]:
    """The config's plug-ins by readable name, each with the directory its module was found in
    (``search/plugin_modules.py``) for the workers that cannot import it otherwise."""
    from search.plugin_modules import search_paths

    homes = search_paths(config)
    return {label: ref.plugin(homes.get(ref.path.split(":")[0].split(".")[0]))
            for label, ref in config.plugins().items()}


def _component(ref: Any, table: dict[str, Plugin]) -> Any:
    return table[ref.label] if isinstance(ref, ComponentConfig) else ref


def model_spec(config: Config, table: dict[str, Plugin] | None = None) -> ModelSpec:
    table = plugins(config) if table is None else table
    fields = {k: _component(getattr(config.model, k), table) for k in type(config.model).model_fields}
    conditioning = config.model.beta_conditioned
    fields["beta_conditioned"] = None if conditioning is None else BetaConditioning(**conditioning.model_dump())
    return ModelSpec(**fields)


def trial_spec(config: Config, *, epochs: int | None = None) -> TrialSpec:
    """Every VAE trial's fixed part; the searched keys override it per trial. ``epochs`` replaces
    ``train.epochs`` (the bandit allocation gives an arm up to the whole budget)."""
    train = config.train
    table = plugins(config)
    return TrialSpec(
        data=data_spec(config),
        model=model_spec(config, table),
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
        plugins=table,
    )


def shared_encoder_spec(config: Config) -> SharedEncoderSpec:
    """Every shared-encoder trial's fixed part; Tune's grid sets ``dataset``, ``policy`` and ``seed``."""
    se, model = config.bandit.shared_encoder, config.model
    table = plugins(config)
    return SharedEncoderSpec(
        data=data_spec(config),
        decoders=tuple(_component(arm, table) for arm in config.bandit.arms),
        encoder=_component(model.encoder, table),
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
