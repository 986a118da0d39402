"""Typed, validated search configuration (the YAML a researcher writes).

Every section is a pydantic model with ``extra="forbid"``; names of registered components
(datasets, encoders, decoders, likelihoods, priors, schedules, policies) are checked against the
registries in ``trainables``. Errors are re-raised as :class:`ConfigError`, one line per
problem, each naming the key, the value and what is allowed.

- ``params.py``: the search space (fixed values, categoricals, ranges)
- ``sections.py``: data, model, train, search, final_eval, resources, tracking
- ``bandit.py``: the decoder bandit's section
- ``errors.py``: pydantic's errors as one clear line each
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import Field, PrivateAttr, ValidationError, model_validator

from search.config.bandit import AllocationConfig, BanditConfig, SharedEncoderConfig
from search.config.components import ComponentConfig
from search.config.errors import error_lines
from search.config.params import FloatRange, IntRange, SearchSpace, Strict
from search.config.sections import (
    BetaConditionedConfig,
    DataConfig,
    FinalEvalConfig,
    ModelConfig,
    ObjectiveConfig,
    ResourcesConfig,
    ScheduleConfig,
    SchedulerConfig,
    SearchConfig,
    TrackingConfig,
    TrainConfig,
)

__all__ = [
    "AllocationConfig", "BanditConfig", "BetaConditionedConfig", "ComponentConfig", "Config", "ConfigError", "DataConfig", "FinalEvalConfig",
    "FloatRange", "IntRange", "ModelConfig", "ObjectiveConfig", "ResourcesConfig", "ScheduleConfig", "SchedulerConfig",
    "SearchConfig", "SearchSpace",
    "SharedEncoderConfig", "TrackingConfig", "TrainConfig", "load_config", "parse_config",
]


class ConfigError(ValueError):
    """A config file or mapping is invalid; the message lists every problem."""


class Config(Strict):
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
    # The directory of the YAML file (load_config): where plug-in modules and relative data paths
    # are looked for besides the import path. None for a config built in Python (the working dir).
    _directory: Path | None = PrivateAttr(default=None)

    @property
    def directory(self) -> Path | None:
        return self._directory

    def _plugin_refs(self) -> list[ComponentConfig]:
        space = self.search.space.decoder
        refs = [self.model.encoder, self.model.decoder, self.model.prior, *self.bandit.arms,
                *(space if isinstance(space, list) else [space])]
        return [r for r in refs if isinstance(r, ComponentConfig)]

    def plugins(self) -> dict[str, ComponentConfig]:
        """Every plug-in the config names (model, search.space.decoder, bandit.arms), by readable name."""
        return {r.label: r for r in self._plugin_refs()}

    @model_validator(mode="after")
    def _beta_conditioned_search(self) -> Config:
        """A β-conditioned model traces a curve per trial: it belongs to the rate–distortion search, and
        its β is not a hyperparameter of the trial."""
        if self.model.beta_conditioned is None:
            return self
        if self.search.objective != "rate_distortion":
            raise ValueError("model.beta_conditioned traces a rate–distortion curve per trial, which only the "
                             "rate–distortion search reads: set search.objective: rate_distortion, or drop "
                             "model.beta_conditioned")
        if self.search.space.beta is not None:
            raise ValueError("search.space.beta: a β-conditioned model (model.beta_conditioned) learns every β from "
                             "low to high in one trial; remove search.space.beta and set the range in "
                             "model.beta_conditioned {low, high}, or drop model.beta_conditioned to search β per trial")
        return self

    @model_validator(mode="after")
    def _one_plugin_per_name(self) -> Config:
        seen: dict[str, ComponentConfig] = {}
        for ref in self._plugin_refs():
            other = seen.setdefault(ref.label, ref)
            if other != ref:
                raise ValueError(f"two different plug-ins are called {ref.label!r} ({other.path} "
                                 f"kwargs={other.kwargs} and {ref.path} kwargs={ref.kwargs}): give each its own name")
        return self


def parse_config(data: Any) -> Config:
    """Validate a mapping (the parsed YAML) into a :class:`Config`; raises :class:`ConfigError`."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"the config must be a mapping of sections, got {type(data).__name__}")
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError("invalid config:\n  " + "\n  ".join(error_lines(exc, Config))) from None


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
        config = parse_config(data)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    config._directory = path.resolve().parent
    return config
