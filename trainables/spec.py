"""The typed trial specs: everything one Ray Tune trial needs, as frozen dataclasses.

The search driver builds a spec once from the validated config (``search/trial_specs.py``) and
hands it to the trainable as is (``tune.with_parameters``); Tune's sampled values override it
through one generic path, :meth:`TrialSpec.with_overrides`. A sampled key is a dotted path of
the spec (``model.decoder``, ``schedule.beta``, ``lr``) or one of the short search names of
:data:`SEARCH_NAMES` (``decoder``, ``beta``; the names a search space, Tune's progress table and
MLflow's child-run params use), plus the conditional keys of the KL schedule, the prior and the
training objective (``schedule`` and ``schedule.<name>.<param>``, ``prior`` and
``prior.<name>.<param>``, ``objective`` and ``objective.<name>.<param>``; see :func:`choose`).
An unknown key is an error.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch

from trainables.data import (
    DatasetSplits,
    UserSource,
    check_data_options,
    dataset_shape,
    load_dataset,
    steps_per_epoch,
)
from trainables.decoders import DECODERS
from trainables.objectives import OBJECTIVES, LossTerms, objective_parameters
from trainables.policies import POLICIES, build_policy, policy_parameters
from trainables.priors import per_dimension_kl, prior_parameters
from trainables.registry import Plugin
from trainables.schedules import FREE_BITS_SCHEDULE, KLWeight, check_free_bits, kl_weight, schedule_parameters
from trainables.search_names import CONDITIONAL_KEYS, OBJECTIVE_KEY, PRIOR_KEY, SCHEDULE_KEY, SEARCH_NAMES
from trainables.vae import ModelSpec, build_vae

S = TypeVar("S")


@dataclass(frozen=True)
class DataSpec:
    """Which dataset, and how it is split, resized and binarised (``trainables.data``)."""

    name: str = "mnist5k"
    root: str | None = None
    binarize: str = "dynamic"
    resize: int | None = None
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    download: bool = True
    max_train: int | None = None
    # The researcher's own images (name: arrays | image_folder | callable; trainables.user_data):
    path: str | None = None          # the .npz/.npy file, the image folder, or package.module:function
    kwargs: dict[str, Any] = field(default_factory=dict)   # callable: its keyword arguments
    color: str = "grey"              # image_folder: grey | rgb
    search_path: str | None = None   # callable: the directory the driver found its module in

    @property
    def user(self) -> UserSource:
        return UserSource(path=self.path, kwargs=dict(self.kwargs), color=self.color, search_path=self.search_path)

    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of one image as the model sees it (a user dataset is read, once per process)."""
        return dataset_shape(self.name, self.resize, self.user)

    def load(self, seed: int) -> DatasetSplits:
        return load_dataset(
            self.name, root=self.root, binarize=self.binarize, resize=self.resize,
            val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=seed,
            download=self.download, max_train=self.max_train, user=self.user,
        )


@dataclass(frozen=True)
class LossSchedule:
    """The β-VAE objective's knobs: β_t from a named schedule, plus free bits."""

    name: str = "constant"
    beta: float = 1.0
    params: dict[str, float] = field(default_factory=dict)
    free_bits: float = 0.0

    def __post_init__(self) -> None:
        if self.name == FREE_BITS_SCHEDULE:  # the pseudo-schedule: constant β with free bits λ
            params = dict(self.params)
            lam = float(params.pop("lam", self.free_bits or schedule_parameters(FREE_BITS_SCHEDULE)["lam"]))
            object.__setattr__(self, "name", "constant")
            object.__setattr__(self, "free_bits", lam)
            object.__setattr__(self, "params", params)
        allowed = schedule_parameters(self.name)  # unknown names and params fail here, not mid-trial
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(f"KL schedule {self.name!r} has no parameter(s) {unknown}; allowed: {sorted(allowed)}")

    def weight(self, step: int, total_steps: int) -> KLWeight:
        return kl_weight(self.name, step, total_steps, self.beta, **self.params)

    def check(self, total_steps: int) -> None:
        """The schedule's own rules (its parameters' domains, for a run of ``total_steps`` steps),
        by computing β_t at the first and last step as training will; and the free-bits λ."""
        self.weight(0, total_steps)
        self.weight(total_steps - 1, total_steps)
        check_free_bits(self.free_bits)

    def weights(self, step: int, total_steps: int, n_steps: int) -> list[KLWeight]:
        """β_t for the ``n_steps`` steps from ``step``: computed before the epoch, off the hot loop."""
        return [self.weight(step + i, total_steps) for i in range(n_steps)]

    def choose(self, name: str | None, conditional: Mapping[str, Any]) -> LossSchedule:
        """This schedule with a sampled schedule ``name`` and its sampled parameters (:func:`choose`)."""
        chosen, params = choose(self.name, self.params, name, conditional)
        return LossSchedule(name=chosen, beta=self.beta, params=params, free_bits=self.free_bits)


def choose(current: str, params: Mapping[str, Any], name: str | None,
           conditional: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A component (schedule, prior, objective) with a sampled ``name`` (None: keep ``current``) and
    its sampled parameters: of ``conditional`` ({"<name>.<param>": value}) only the chosen one's
    apply. The parameters written for ``current`` stay only if it is kept."""
    chosen = current if name is None else name
    out = dict(params) if chosen == current else {}
    prefix = f"{chosen}."
    out.update({k[len(prefix):]: v for k, v in conditional.items() if k.startswith(prefix)})
    return chosen, out


@dataclass(frozen=True)
class ObjectiveSpec:
    """The training objective by name (``trainables.objectives.OBJECTIVES``) and its parameters:
    ``elbo`` (none) or ``iwae`` (``k``, the importance samples per example)."""

    name: str = "elbo"
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", dict(self.params))
        allowed = objective_parameters(self.name)  # an unknown name fails here
        unknown = sorted(set(self.params) - set(allowed))
        if unknown:
            raise ValueError(f"objective {self.name!r} has no parameter(s) {unknown}; allowed: {sorted(allowed)}")
        if "k" in self.params:
            _check_number("objective.iwae.k", self.params["k"], integer=True, minimum=1, strict=False)

    @property
    def k(self) -> int:
        """Importance samples per example in training (1 for the ELBO)."""
        return int(self.params.get("k", objective_parameters(self.name).get("k", 1)))

    def loss(self, model: Any, x: torch.Tensor, weight: KLWeight, free_bits: float = 0.0) -> LossTerms:
        return OBJECTIVES.get(self.name)(model, x, weight, free_bits=free_bits, **self.params)

    def choose(self, name: str | None, conditional: Mapping[str, Any]) -> ObjectiveSpec:
        return ObjectiveSpec(*choose(self.name, self.params, name, conditional))


@dataclass(frozen=True)
class NLLSpec:
    """Importance-sampled test NLL (Burda et al. 2015): k samples, in chunks."""

    k: int = 5000
    chunk_size: int = 500
    max_examples: int | None = None


@dataclass(frozen=True)
class TrialSpec:
    """One VAE trial: data, model, objective and training knobs."""

    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    schedule: LossSchedule = field(default_factory=LossSchedule)
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    grad_clip: float | None = None
    eval_batch_size: int = 500
    n_images: int = 64
    seed: int = 0        # model init, batch order, sampling (a sampled "seed" overrides it)
    data_seed: int = 0   # the train/val/test split: the same for every trial of a search
    test_nll: NLLSpec | None = None   # set: compute test/nll at the end of this trial
    # The config's plug-ins by readable name: a sampled component name (a decoder arm) that is one
    # of these sets the plug-in itself (Tune, Optuna and MLflow see the name, the model the path).
    plugins: dict[str, Plugin] = field(default_factory=dict)

    def with_overrides(self, sampled: Mapping[str, Any] | None) -> TrialSpec:
        """This spec with Tune's sampled values (see the module docstring for the key names)."""
        sampled = {k: self._component(k, v) for k, v in (sampled or {}).items()}
        spec = self
        for key in CONDITIONAL_KEYS:
            prefix = f"{key}."
            conditional = {k[len(prefix):]: sampled.pop(k) for k in list(sampled)
                           if k.startswith(prefix) and k.count(".") == 2}
            if key not in sampled and not conditional:
                continue
            name = sampled.pop(key, None)
            if key == SCHEDULE_KEY:
                spec = dataclasses.replace(spec, schedule=spec.schedule.choose(name, conditional))
            elif key == OBJECTIVE_KEY:
                spec = dataclasses.replace(spec, objective=spec.objective.choose(name, conditional))
            else:
                assert key == PRIOR_KEY
                prior, params = choose(spec.model.prior, spec.model.prior_params, name, conditional)
                spec = dataclasses.replace(spec, model=dataclasses.replace(spec.model, prior=prior, prior_params=params))
        for key, value in sampled.items():
            spec = replace_path(spec, SEARCH_NAMES.get(key, key), value, aliases=SEARCH_NAMES)
        return spec

    def _component(self, key: str, value: Any) -> Any:
        if (SEARCH_NAMES.get(key, key) in _COMPONENT_PATHS or key == PRIOR_KEY) and isinstance(value, str) \
                and value in self.plugins:
            return self.plugins[value]
        return value

    def vae_config(self, shape: tuple[int, int, int]):  # noqa: ANN201 (a VAEConfig)
        return self.model.vae_config(shape)

    def check(self, n_train: int | None = None) -> None:
        """Every rule this trial enforces when it starts, without data or training: its numbers,
        the dataset's options (``check_data_options``), the model's constructors (built on the
        meta device: no memory), and the KL schedule over the trial's steps. ``n_train``: the
        training examples (counted from the dataset's declared size when None). The trainable
        calls it first; ``vaesearch validate`` calls it for every value a search can draw.
        Raises ``ValueError`` naming the setting."""
        for name, value in (("epochs", self.epochs), ("batch_size", self.batch_size),
                            ("eval_batch_size", self.eval_batch_size)):
            _check_number(name, value, integer=True, minimum=1, strict=False)
        _check_number("n_images", self.n_images, integer=True, minimum=0, strict=False)
        _check_number("lr", self.lr, integer=False, minimum=0, strict=True)
        if self.grad_clip is not None:
            _check_number("grad_clip", self.grad_clip, integer=False, minimum=0, strict=True)
        data = self.data
        counted = check_data_options(data.name, binarize=data.binarize, resize=data.resize,
                                     val_fraction=data.val_fraction, test_fraction=data.test_fraction,
                                     max_train=data.max_train, user=data.user)
        n_train = counted if n_train is None else n_train
        # On the meta device (no memory); a plug-in on the CPU (its constructor is user code, which
        # may compute with tensors: `vaesearch validate` then runs it forward, trainables.plugins).
        with torch.device("cpu" if self.model.plugins() else "meta"):
            build_vae(self.vae_config(data.shape()))
        # Unknown size (a dataset not loaded yet): at least one step per epoch.
        self.schedule.check(self.epochs * (steps_per_epoch(n_train, self.batch_size) if n_train else 1))
        self._check_combinations(n_train)

    def _check_combinations(self, n_train: int | None) -> None:
        """The settings that cannot go together (docs/vae-science.md says why)."""
        model, schedule, objective = self.model, self.schedule, self.objective
        if schedule.free_bits > 0 and not per_dimension_kl(model.prior):
            raise ValueError(
                f"free bits (train.free_bits / the free_bits schedule, λ={schedule.free_bits}) are per latent dimension, "
                f"but the {model.prior.label if isinstance(model.prior, Plugin) else model.prior!r} prior's rate is a Monte Carlo estimate log q(z|x) − log p(z) that does not "
                "split over dimensions: set train.free_bits: 0 and no free_bits schedule, or use prior standard_normal")
        if objective.name == "iwae" and schedule.free_bits > 0:
            raise ValueError(
                f"train.objective 'iwae' has no free bits (they act on the batch-mean rate, the IWAE bound has none), "
                f"got λ={schedule.free_bits}: set train.free_bits: 0 and no free_bits schedule, or use objective elbo")
        if objective.name == "iwae" and schedule.name == "capacity":
            raise ValueError(
                "train.objective 'iwae' has no capacity schedule (|rate − C| acts on the batch-mean rate): "
                "choose another schedule (β_t tempers the rate in every importance weight) or use objective elbo")
        if model.beta_conditioned is not None:
            _check_beta_conditioned(schedule, objective)
        if model.prior == "vampprior" and model.prior_params.get("init") == "data" and n_train is not None:
            k = {**prior_parameters("vampprior"), **model.prior_params}["n_components"]
            if isinstance(k, int) and k > n_train:
                raise ValueError(f"prior vampprior init 'data' takes n_components={k} distinct training images, "
                                 f"but there are {n_train}: lower n_components or use init 'random'")


def _check_beta_conditioned(schedule: LossSchedule, objective: ObjectiveSpec) -> None:
    """A β-conditioned model (``trainables.beta_conditioned``) trains the β-VAE loss with its own β per
    example: the knobs that change the loss by a single β or act on the batch-mean rate do not apply."""
    fix = "or drop model.beta_conditioned"
    if schedule.beta != 1.0:
        raise ValueError(
            f"model.beta_conditioned draws β from its own range (low..high), so train.beta (or a searched "
            f"search.space.beta) must stay 1, got β={schedule.beta}: remove it and set the range in "
            f"model.beta_conditioned, {fix}")
    if schedule.name == "capacity":
        raise ValueError(f"model.beta_conditioned has no capacity schedule (|rate − C| is one target rate, not a "
                         f"curve): use schedule constant, linear, sigmoid or cyclical, {fix}")
    if schedule.free_bits > 0:
        raise ValueError(f"model.beta_conditioned has no free bits (λ={schedule.free_bits} acts on the batch-mean "
                         f"rate): set train.free_bits: 0 and no free_bits schedule, {fix}")
    if objective.name != "elbo":
        raise ValueError(f"model.beta_conditioned trains the β-weighted ELBO, got train.objective "
                         f"{objective.name!r}: set train.objective: elbo, {fix}")


@dataclass(frozen=True)
class SharedEncoderSpec:
    """One shared-encoder trial: the data, the K decoder heads, the policy and the training knobs."""

    data: DataSpec = field(default_factory=DataSpec)
    decoders: tuple[str | Plugin, ...] = tuple(DECODERS)   # registered names or plug-ins
    encoder: str | Plugin = "conv"
    latent_dim: int = 16
    width: float = 0.25
    likelihood: str = "bernoulli"
    policy: str = "epsilon_greedy"
    # Knobs per policy name; a policy left out keeps its own defaults (ε-greedy's ε = 0.3 is the
    # reference's). Per name, because a trial grid varies the policy and knobs belong to one.
    policy_params_by_name: dict[str, dict[str, Any]] = field(default_factory=dict)
    epochs: int = 5
    batch_size: int = 100
    lr: float = 1e-3
    beta: float = 1.0
    eval_every: int = 20
    eval_batch_size: int = 500
    seed: int = 0       # model init, batch order, the policy's coin flips (a sampled "seed" overrides it)
    data_seed: int = 0  # the train/val split: the same for every trial of a search

    def __post_init__(self) -> None:
        object.__setattr__(self, "decoders", tuple(Plugin.of(d) for d in self.decoders))
        object.__setattr__(self, "encoder", Plugin.of(self.encoder))
        object.__setattr__(self, "policy_params_by_name", {k: dict(v) for k, v in self.policy_params_by_name.items()})
        if not self.decoders or len(set(self.decoder_names)) != len(self.decoders):
            raise ValueError(f"decoders must be a non-empty list of distinct names, got decoders={list(self.decoder_names)}")
        for name in self.decoders:
            DECODERS.check_ref(name)
        for name in ("epochs", "batch_size", "eval_every", "eval_batch_size", "latent_dim"):
            _check_number(name, getattr(self, name), integer=True, minimum=0, strict=True)
        _check_number("lr", self.lr, integer=False, minimum=0, strict=True)
        _check_number("beta", self.beta, integer=False, minimum=0, strict=False)
        for name, params in self.policy_params_by_name.items():
            unknown = sorted(set(params) - set(policy_parameters(name)))
            if unknown:
                raise ValueError(f"policy {name!r} has no parameter(s) {unknown}; allowed: {sorted(policy_parameters(name))}")
        # The policy validates its own name and knobs; a budget of K pulls is the least it accepts.
        build_policy(self.policy, len(self.decoders), budget=len(self.decoders), seed=0, **self.policy_params)

    @property
    def decoder_names(self) -> tuple[str, ...]:
        """The heads' readable names (a plug-in's ``name`` or class name)."""
        return tuple(d.label if isinstance(d, Plugin) else d for d in self.decoders)

    @property
    def policy_params(self) -> dict[str, Any]:
        """The knobs of this trial's policy."""
        POLICIES.check(self.policy)
        return dict(self.policy_params_by_name.get(self.policy, {}))

    def with_overrides(self, sampled: Mapping[str, Any] | None) -> SharedEncoderSpec:
        """This spec with Tune's grid values: ``dataset`` (-> ``data.name``), ``policy``, ``seed``,
        or any dotted path of the spec."""
        spec = self
        for key, value in (sampled or {}).items():
            spec = replace_path(spec, SHARED_ENCODER_NAMES.get(key, key), value, aliases=SHARED_ENCODER_NAMES)
        return spec

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["decoders"] = [dataclasses.asdict(x) if isinstance(x, Plugin) else x for x in self.decoders]  # no tuples
        return d


SHARED_ENCODER_NAMES: Mapping[str, str] = {"dataset": "data.name"}
_COMPONENT_PATHS = frozenset({"model.encoder", "model.decoder", "model.prior"})


def replace_path(spec: S, path: str, value: Any, aliases: Mapping[str, str] | None = None) -> S:
    """A copy of the frozen dataclass ``spec`` with the field at dotted ``path`` set to ``value``
    (nested dataclasses are copied along the way; their validation runs again)."""
    head, _, rest = path.partition(".")
    names = [f.name for f in dataclasses.fields(spec)]  # type: ignore[arg-type]
    if head not in names:
        valid = sorted({*names, *(aliases or {})})
        raise ValueError(f"unknown {type(spec).__name__} key {path!r}; valid keys: {valid} (or a dotted path below them)")
    current = getattr(spec, head)
    if rest:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"{type(spec).__name__}.{head} has no field {rest!r}: it is a {type(current).__name__}")
        value = replace_path(current, rest, value)
    return dataclasses.replace(spec, **{head: value})  # type: ignore[type-var]


def _check_number(name: str, value: Any, *, integer: bool, minimum: float, strict: bool) -> None:
    """An int (or real) knob >= ``minimum`` (> when ``strict``); bools are config mistakes."""
    ok = isinstance(value, int if integer else (int, float)) and not isinstance(value, bool)
    ok = ok and value == value and abs(value) != float("inf") and (value > minimum if strict else value >= minimum)
    if not ok:
        kind = "an int" if integer else "a finite number"
        raise ValueError(f"{name} must be {kind} {'>' if strict else '>='} {minimum}, got {name}={value!r}")
