"""Typed, validated search configuration (the YAML a researcher writes).

Every section is a pydantic model with ``extra="forbid"``; names of registered components
(datasets, encoders, decoders, likelihoods, schedules) are checked against the registries in
``trainables``. Errors are re-raised as :class:`ConfigError`, one line per problem, each naming
the key, the value and what is allowed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from trainables.data import available_datasets
from trainables.decoders import available_decoders
from trainables.encoders import available_encoders
from trainables.likelihoods import available_likelihoods
from trainables.policies import available_policies, policy_parameters
from trainables.schedules import available_schedules, schedule_parameters

#: Pseudo-schedule: constant β with the free-bits rate (Kingma et al. 2016).
FREE_BITS_SCHEDULE = "free_bits"


class ConfigError(ValueError):
    """A config file or mapping is invalid; the message lists every problem."""


def _check_name(value: str, valid: list[str], what: str) -> str:
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid {what}s: {', '.join(valid)}")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


# --- search-space parameter specs -------------------------------------------------------------


class _Range(_Strict):
    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        low, high, log = self.low, self.high, self.log  # type: ignore[attr-defined]
        if not low < high:
            raise ValueError(f"range needs low < high, got low={low}, high={high}")
        if log and low <= 0:
            raise ValueError(f"a log range needs low > 0, got low={low}")
        return self


class FloatRange(_Range):
    """A continuous range; ``log: true`` samples log-uniformly."""

    low: float
    high: float
    log: bool = False


class IntRange(_Range):
    """An integer range (inclusive), optionally log-spaced."""

    low: int
    high: int
    log: bool = False


# A searchable value: fixed scalar, categorical list, or range.
FloatParam = Union[float, list[float], FloatRange]
IntParam = Union[int, list[int], IntRange]
StrParam = Union[str, list[str]]
# Schedule parameters: integers stay integers (``n_cycles: [2, 4]``).
ScheduleParam = Union[int, float, list[int], list[float], FloatRange]


def _nonempty(value: Any, key: str) -> Any:
    if isinstance(value, list) and not value:
        raise ValueError(f"{key}: an empty list has nothing to choose from; give at least one value")
    return value


class SearchSpace(_Strict):
    """What Optuna proposes. Any key left out stays at the value in ``model``/``train``."""

    beta: FloatParam | None = None
    latent_dim: IntParam | None = None
    lr: FloatParam | None = None
    decoder: StrParam | None = None
    free_bits: FloatParam | None = None
    # schedule name -> {param: spec}; the params are conditional on that schedule being chosen.
    schedule: dict[str, dict[str, ScheduleParam]] | None = None

    @field_validator("decoder")
    @classmethod
    def _decoders(cls, v: StrParam | None) -> StrParam | None:
        for name in [v] if isinstance(v, str) else (v or []):
            _check_name(name, available_decoders(), "decoder")
        return _nonempty(v, "decoder")

    @field_validator("latent_dim")
    @classmethod
    def _latent(cls, v: IntParam | None) -> IntParam | None:
        values = [v.low] if isinstance(v, IntRange) else ([v] if isinstance(v, int) else (v or []))
        if any(d < 1 for d in values):
            raise ValueError(f"latent dimensions must be >= 1, got {v!r}")
        return _nonempty(v, "latent_dim")

    @field_validator("beta", "lr", "free_bits")
    @classmethod
    def _nonneg(cls, v: FloatParam | None) -> FloatParam | None:
        values = [v.low] if isinstance(v, FloatRange) else ([v] if isinstance(v, float | int) else (v or []))
        if any(x < 0 for x in values):
            raise ValueError(f"must be >= 0, got {v!r}")
        return _nonempty(v, "value")

    @field_validator("schedule")
    @classmethod
    def _schedules(cls, v: dict[str, dict[str, ScheduleParam]] | None) -> dict[str, dict[str, ScheduleParam]] | None:
        if v is None:
            return v
        if not v:
            raise ValueError("schedule: give at least one schedule name")
        for name, params in v.items():
            _check_name(name, _schedule_names(), "schedule")
            allowed = _schedule_param_names(name)
            for param in params:
                if param not in allowed:
                    raise ValueError(
                        f"schedule {name!r} has no parameter {param!r}; allowed: {', '.join(allowed) or '(none)'}"
                    )
        return v


def _schedule_names() -> list[str]:
    return [*available_schedules(), FREE_BITS_SCHEDULE]


def _schedule_param_names(name: str) -> list[str]:
    if name == FREE_BITS_SCHEDULE:
        return ["lam"]
    return sorted(schedule_parameters(name))


# --- the fixed parts of a trial ---------------------------------------------------------------


class DataConfig(_Strict):
    name: str = "mnist5k"
    root: str | None = None
    binarize: Literal["dynamic", "static", "none"] = "dynamic"
    resize: int | None = Field(default=None, ge=4)
    val_fraction: float = Field(default=0.1, gt=0, lt=1)
    test_fraction: float = Field(default=0.1, gt=0, lt=1)
    download: bool = True
    max_train: int | None = Field(default=None, ge=1)

    @field_validator("name")
    @classmethod
    def _dataset(cls, v: str) -> str:
        return _check_name(v, available_datasets(), "dataset")


class ModelConfig(_Strict):
    encoder: str = "conv"
    decoder: str = "mlp_small"
    likelihood: str = "bernoulli"
    sigma: float = Field(default=0.1, gt=0)
    sigma_mode: Literal["fixed", "learned", "optimal"] = "fixed"
    latent_dim: int = Field(default=16, ge=1)
    width: float = Field(default=1.0, gt=0)

    @field_validator("encoder")
    @classmethod
    def _encoder(cls, v: str) -> str:
        return _check_name(v, available_encoders(), "encoder")

    @field_validator("decoder")
    @classmethod
    def _decoder(cls, v: str) -> str:
        return _check_name(v, available_decoders(), "decoder")

    @field_validator("likelihood")
    @classmethod
    def _likelihood(cls, v: str) -> str:
        return _check_name(v, available_likelihoods(), "likelihood")


class ScheduleConfig(_Strict):
    name: str = "constant"
    params: dict[str, int | float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known(self) -> ScheduleConfig:
        _check_name(self.name, _schedule_names(), "schedule")
        allowed = _schedule_param_names(self.name)
        for param in self.params:
            if param not in allowed:
                raise ValueError(
                    f"schedule {self.name!r} has no parameter {param!r}; allowed: {', '.join(allowed) or '(none)'}"
                )
        return self


class TrainConfig(_Strict):
    epochs: int = Field(default=10, ge=1)
    batch_size: int = Field(default=128, ge=1)
    lr: float = Field(default=1e-3, gt=0)
    beta: float = Field(default=1.0, ge=0)
    schedule: ScheduleConfig = Field(default_factory=ScheduleConfig)
    free_bits: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=None, gt=0)
    eval_batch_size: int = Field(default=500, ge=1)
    n_images: int = Field(default=64, ge=1, le=256)


class FinalEvalConfig(_Strict):
    """Importance-sampled test NLL (Burda et al. 2015) at the end of the search."""

    test_nll_k: int = Field(default=5000, ge=1)
    chunk_size: int = Field(default=500, ge=1)
    max_examples: int | None = Field(default=None, ge=1)
    trials: Literal["best", "all", "none"] = "best"


class SchedulerConfig(_Strict):
    name: Literal["none", "asha"] = "none"
    grace_period: int = Field(default=1, ge=1)
    reduction_factor: float = Field(default=2.0, gt=1)


class SearchConfig(_Strict):
    algorithm: Literal["optuna", "random", "bandit_tpe"] = "optuna"
    metric: Literal["val/nelbo", "val/distortion", "val/rate"] = "val/nelbo"
    mode: Literal["min"] = "min"  # every search metric is a loss in nats
    num_samples: int = Field(default=16, ge=1)
    max_concurrent: int = Field(default=2, ge=1)
    n_startup_trials: int = Field(default=5, ge=0)
    space: SearchSpace = Field(default_factory=SearchSpace)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    exploration: float = Field(default=1.0, ge=0)  # bandit_tpe: the UCB exploration constant

    @model_validator(mode="after")
    def _bandit_needs_arms(self) -> SearchConfig:
        if self.algorithm == "bandit_tpe" and not (isinstance(self.space.decoder, list) and len(self.space.decoder) >= 2):
            raise ValueError(
                "algorithm 'bandit_tpe' picks a decoder per trial: give search.space.decoder a list of at least "
                f"two decoders, got decoder={self.space.decoder!r}"
            )
        return self


SEED_DECODERS = ["mlp_small", "mlp_large", "deconv_2x2", "deconv_4x4", "linear_deconv_selu"]


def _check_policy(name: str, params: dict[str, Any]) -> None:
    _check_name(name, available_policies(), "policy")
    allowed = sorted(policy_parameters(name))
    for param in params:
        if param not in allowed:
            raise ValueError(f"policy {name!r} has no parameter {param!r}; allowed: {', '.join(allowed) or '(none)'}")


class AllocationConfig(_Strict):
    """Allocation mode: every arm is a Tune trial; a bandit scheduler hands out pulls of epochs."""

    policy: str = "rising"
    policy_params: dict[str, Any] = Field(default_factory=dict)
    epochs_per_pull: int = Field(default=1, ge=1)
    budget_epochs: int = Field(default=50, ge=1)      # epochs over all arms together
    max_concurrent: int = Field(default=1, ge=1)      # arms training at the same time
    seeds_per_arm: int = Field(default=1, ge=1)
    reward: Literal["val/distortion", "val/nelbo"] = "val/distortion"   # reward = −metric
    stop_when_decided: bool = True                    # stop once an eliminating policy has one arm left

    @model_validator(mode="after")
    def _valid(self) -> AllocationConfig:
        _check_policy(self.policy, self.policy_params)
        if self.budget_epochs < self.epochs_per_pull:
            raise ValueError(f"budget_epochs must be >= epochs_per_pull, got {self.budget_epochs} < {self.epochs_per_pull}")
        return self


class SharedEncoderConfig(_Strict):
    """Shared-encoder mode (the seed protocol): one encoder, K decoder heads, a policy per minibatch."""

    datasets: list[str] = Field(default_factory=lambda: ["mnist5k"], min_length=1)
    policies: list[str] = Field(default_factory=lambda: ["epsilon_greedy", "ucb1", "thompson", "uniform"], min_length=1)
    policy_params: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"epsilon_greedy": {"epsilon": 0.3}})
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    epochs: int = Field(default=3, ge=1)
    eval_every: int = Field(default=20, ge=1)        # steps between validation scorings of every head
    eval_batch_size: int = Field(default=500, ge=1)
    max_concurrent: int = Field(default=2, ge=1)

    @model_validator(mode="after")
    def _valid(self) -> SharedEncoderConfig:
        for name in self.datasets:
            _check_name(name, available_datasets(), "dataset")
        for name in self.policies:
            _check_policy(name, self.policy_params.get(name, {}))
        for name in self.policy_params:
            if name not in self.policies:
                raise ValueError(f"policy_params for {name!r}, which is not in policies {self.policies}")
        return self


class BanditConfig(_Strict):
    """``vaesearch bandit``: which decoder suits this dataset?"""

    mode: Literal["allocation", "shared_encoder"] = "allocation"
    arms: list[str] = Field(default_factory=lambda: list(SEED_DECODERS), min_length=1)
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    shared_encoder: SharedEncoderConfig = Field(default_factory=SharedEncoderConfig)

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: list[str]) -> list[str]:
        for name in v:
            _check_name(name, available_decoders(), "decoder")
        if len(set(v)) != len(v):
            raise ValueError(f"arms must be distinct, got {v}")
        return v


class ResourcesConfig(_Strict):
    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)
    storage_path: str = "./ray_results"
    max_failures: int = Field(default=1, ge=-1)
    address: str | None = None
    # Checkpoints kept per trial while a search runs (the last one is kept at the end). None = all:
    # Tune deletes an old checkpoint before its next experiment snapshot, so with a limit a driver
    # killed in between leaves a snapshot naming a deleted checkpoint, which `vaesearch resume`
    # cannot restore that trial from. A limit saves disk on long GPU searches at that (small) risk.
    checkpoints_to_keep: int | None = Field(default=None, ge=1)

    @field_validator("gpu")
    @classmethod
    def _fractional(cls, v: float) -> float:
        if v > 1 and v != int(v):
            raise ValueError(f"a trial takes a fraction of one GPU or a whole number of GPUs, got gpu={v}")
        return v


class TrackingConfig(_Strict):
    uri: str = "sqlite:///mlflow.db"
    experiment: str = "vaesearch"
    registered_model: str | None = "vaesearch-best"
    log_images: bool = True
    retry_s: float = Field(default=20.0, gt=0)   # while the server is unreachable: retry queued results this often


class Config(_Strict):
    """The whole YAML file."""

    name: str = Field(default="vaesearch", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    final_eval: FinalEvalConfig = Field(default_factory=FinalEvalConfig)
    bandit: BanditConfig = Field(default_factory=BanditConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)


# --- loading ------------------------------------------------------------------------------------


_RANGE_MODELS: dict[str, type[BaseModel]] = {"FloatRange": FloatRange, "IntRange": IntRange}


def _union_branch(part: Any) -> str | None:
    """pydantic names the union member it tried in the error location ("float", "list[float]",
    "function-after[_ordered(), FloatRange]"); map it to "scalar", "list" or a range model name."""
    if not isinstance(part, str):
        return None
    for name in _RANGE_MODELS:
        if name in part:
            return name
    if part.startswith("list["):
        return "list"
    if part in {"float", "int", "str"}:
        return "scalar"
    return None


def _input_branch(value: Any) -> str:
    return "range" if isinstance(value, dict) else "list" if isinstance(value, list) else "scalar"


def _keep(err: dict[str, Any], value_at: dict[tuple[Any, ...], Any]) -> bool:
    """Of the errors a union produces, keep those of the member that matches what the user wrote."""
    for i, part in enumerate(err["loc"]):
        branch = _union_branch(part)
        if branch is None:
            continue
        wrote = _input_branch(value_at.get(err["loc"][:i], err.get("input")))
        if (branch in _RANGE_MODELS) != (wrote == "range") or (branch == "list") != (wrote == "list"):
            return False
    return True


def _format_error(err: dict[str, Any]) -> str:
    loc = ".".join(str(p) for p in err["loc"] if _union_branch(p) is None)
    if err["type"] == "extra_forbidden":
        allowed = _allowed_keys(Config, err["loc"][:-1])
        return f"{loc}: unknown key; allowed keys here: {', '.join(allowed)}"
    msg = err["msg"].removeprefix("Value error, ")
    return f"{loc or '(top level)'}: {msg} (got {err.get('input')!r})"


def _allowed_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    current: Any = model
    for part in loc:
        branch = _union_branch(part)
        if branch in _RANGE_MODELS:
            current = _RANGE_MODELS[branch]
        elif isinstance(current, type) and issubclass(current, BaseModel) and part in current.model_fields:
            annotation = current.model_fields[part].annotation
            current = annotation if isinstance(annotation, type) else None
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _messages(exc: ValidationError) -> list[str]:
    errors = exc.errors()
    # the value the user wrote at each union location (the input of the union member's error)
    value_at: dict[tuple[Any, ...], Any] = {}
    for err in errors:
        for i, part in enumerate(err["loc"]):
            if _union_branch(part) is not None and len(err["loc"]) == i + 1:
                value_at.setdefault(err["loc"][:i], err.get("input"))
    kept = [e for e in errors if _keep(e, value_at)] or errors
    return sorted({_format_error(e) for e in kept})


def parse_config(data: Any) -> Config:
    """Validate a mapping (the parsed YAML) into a :class:`Config`; raises :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the config must be a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        lines = _messages(exc)
        raise ConfigError("invalid config:\n  " + "\n  ".join(lines)) from None


def load_config(path: str | Path) -> Config:
    """Read and validate a YAML config file (``yaml.safe_load``: a config never runs code)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    try:
        return parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
