"""Can every trial a config describes start? Checked before anything starts, with the trial's own
rules: :meth:`trainables.spec.TrialSpec.check` (the numbers, the dataset's options, the model's
constructors, the KL schedule over the trial's steps) is what the trainable runs first, so
``vaesearch validate`` refuses exactly what would fail there.

Every value a search space can draw is checked, not only the fixed ones: each list item and both
ends of each range (the domains are intervals, so the ends decide). Values that interact are
checked together: decoder × latent size (the model), schedule × its parameters × β × free bits ×
prior × its parameters × objective × its parameters (the loss: free bits need a per-dimension KL,
IWAE has no free bits or capacity); the other keys one at a time. The allocation bandit's arms are
checked with the epochs an arm may get (the whole budget). The shared-encoder mode trains the
N(0, I) prior with the ELBO only.

A model with a plug-in (``docs/plugins.md``) is also built on the CPU and run forward once on a
batch of the dataset's shape (``trainables.plugins.probe_model``): its import, constructor, output
shapes, dtype and values are checked here, before Ray starts.
"""
from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from typing import Any

from search import roles
from search.config import Config, ConfigError, FloatRange, IntRange
from search.trial_specs import trial_spec
from trainables.plugins import probe_model
from trainables.search_names import CONDITIONAL_KEYS, DECODER_KEY
from trainables.spec import TrialSpec


def values(param: Any) -> list[Any]:
    """What a searchable value can produce that decides whether it runs: a range's two ends,
    a list's items, a fixed value."""
    if isinstance(param, FloatRange | IntRange):
        return [param.low, param.high]
    return list(param) if isinstance(param, list) else [param]


def _product(params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    keys = list(params)
    for combo in itertools.product(*(values(params[k]) for k in keys)):
        yield dict(zip(keys, combo))


def _draws(config: Config) -> Iterator[tuple[str, dict[str, Any]]]:
    """(where in the config, sampled values) for every combination that must be able to run."""
    space = config.search.space
    model = {k: v for k, v in (("decoder", space.decoder_choices()), ("latent_dim", space.latent_dim)) if v is not None}
    for draw in _product(model):
        yield _where(draw), draw
    if space.lr is not None:
        for draw in _product({"lr": space.lr}):
            yield _where(draw), draw
    loss = {k: v for k, v in (("beta", space.beta), ("free_bits", space.free_bits)) if v is not None}
    alternatives = [list((getattr(space, key) or {None: {}}).items()) for key in CONDITIONAL_KEYS]
    for chosen in itertools.product(*alternatives):  # one (name, params) per schedule, prior, objective
        names: dict[str, Any] = {}
        conditional: dict[str, Any] = {}
        for key, (name, params) in zip(CONDITIONAL_KEYS, chosen):
            if name is not None:
                names[key] = name
                conditional.update({f"{key}.{name}.{p}": v for p, v in params.items()})
        for draw in _product({**loss, **conditional}):
            draw = {**names, **draw}
            yield _where(draw), draw


def _where(draw: Mapping[str, Any]) -> str:
    return ", ".join(f"search.space.{k}={v!r}" for k, v in draw.items()) or "the fixed settings"


def _problem(spec: TrialSpec, draw: Mapping[str, Any], probed: set[Any] | None = None) -> str | None:
    try:
        drawn = spec.with_overrides(draw)
        drawn.check()
        if drawn.model.plugins():
            model = drawn.vae_config(drawn.data.shape())
            if probed is None or model not in probed:
                probe_model(model)
                if probed is not None:
                    probed.add(model)
    except ValueError as exc:
        return str(exc)
    return None


_SEARCHES = (roles.SEARCH, roles.RATE_DISTORTION)   # the roles of `vaesearch run`


def check_runnable(config: Config, role: str = roles.SEARCH) -> None:
    """Raise :class:`ConfigError` (one line per problem) unless every trial the config's run mode
    (``role``) can draw would start."""
    problems: dict[str, str] = {}  # reason -> the first place it was found (each reason said once)
    probed: set[Any] = set()       # models with a plug-in already run forward
    if role not in _SEARCHES and config.model.beta_conditioned is not None:
        raise ConfigError("model.beta_conditioned: the bandit modes rank decoders by one metric at one β; drop "
                          "model.beta_conditioned, or trace curves with `vaesearch run` (search.objective: "
                          "rate_distortion, decoders as a categorical in search.space)")
    if role == roles.BANDIT_SHARED_ENCODER:
        _check_shared_encoder(config)
    if role in (roles.BANDIT_ALLOCATION, roles.BANDIT_SHARED_ENCODER):
        # The shared encoder's heads are the same decoders on the same data: each arm as a model.
        epochs = config.bandit.allocation.budget_epochs if role == roles.BANDIT_ALLOCATION else None
        spec = trial_spec(config, epochs=epochs)
        checks = [(f"bandit.arms={arm!r}", {DECODER_KEY: arm}) for arm in config.bandit.arm_names()]
    else:
        spec = trial_spec(config)
        fixed = _problem(spec, {}, probed)
        if fixed is not None:  # every draw would repeat it
            problems[fixed] = "the fixed settings (data, model, train)"
        checks = list(_draws(config)) if role in _SEARCHES and fixed is None else []
    for where, draw in checks:
        reason = _problem(spec, draw, probed)
        if reason is not None:
            problems.setdefault(reason, where)
    if role in _SEARCHES and config.search.num_samples > 1 and not config.search.space.searched():
        raise ConfigError(
            f"search.space is empty, so the {config.search.num_samples} trials of search.num_samples would all be "
            "the same trial: give search.space something to search (e.g. beta: {low: 0.1, high: 4.0, log: true}; "
            "docs/configuration.md lists the keys), or set search.num_samples: 1")
    if problems:
        raise ConfigError("a setting can never run:\n  " + "\n  ".join(
            f"{where}: a trial with it could not start: {reason}" for reason, where in problems.items()))


def _check_shared_encoder(config: Config) -> None:
    """The shared-encoder protocol (reference 003) scores decoder heads on one encoder with the
    N(0, I) prior and the ELBO; a learnt prior or the IWAE objective is not part of it."""
    problems = []
    if config.model.prior != "standard_normal":
        problems.append(f"model.prior={config.model.prior!r}: the shared-encoder mode trains with the N(0, I) prior "
                        "only; set model.prior: standard_normal, or compare priors with bandit mode allocation")
    if config.train.objective.name != "elbo":
        problems.append(f"train.objective={config.train.objective.name!r}: the shared-encoder mode trains with the "
                        "ELBO only; set train.objective: elbo, or use bandit mode allocation")
    if problems:
        raise ConfigError("a setting can never run:\n  " + "\n  ".join(problems))
