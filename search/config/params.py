"""The search space of the YAML: searchable values (fixed, categorical, range) per key.

A key left out of ``search.space`` keeps its value from ``model`` / ``train``. Component names
(decoders, KL schedules) and each schedule's parameter names are checked against the registries
in ``trainables``, which declare them once.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Union

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from search.config.components import ComponentParam, check_components, label
from trainables.decoders import DECODERS
from trainables.objectives import OBJECTIVE_PARAMETERS
from trainables.priors import PRIOR_PARAMETERS
from trainables.registry import Registry
from trainables.schedules import SCHEDULE_PARAMETERS, schedule_parameters


class Strict(BaseModel):
    """Every config section: unknown keys are errors, defaults are validated too."""

    model_config = ConfigDict(extra="forbid", validate_default=True)


class _Range(Strict):
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
ScheduleParam = Union[int, float, list[int], list[float], FloatRange]  # an int parameter's range becomes an IntRange

# Prior and objective parameters: as a schedule's, plus categorical strings (vampprior ``init``).
SettingParam = Union[int, float, str, list[int], list[float], list[str], FloatRange]

#: The range models by name, for the error messages (search.config.errors).
RANGE_MODELS: dict[str, type[BaseModel]] = {"FloatRange": FloatRange, "IntRange": IntRange}


def _nonempty(value: Any, key: str) -> Any:
    if isinstance(value, list) and not value:
        raise ValueError(f"{key}: an empty list has nothing to choose from; give at least one value")
    return value


def check_component_params(kind: str, name: str, params: Iterable[str], allowed: Iterable[str]) -> None:
    """Every key of ``params`` is one of the component's own parameters (``allowed``)."""
    allowed = sorted(allowed)
    for param in params:
        if param not in allowed:
            raise ValueError(f"{kind} {name!r} has no parameter {param!r}; allowed: {', '.join(allowed) or '(none)'}")


def check_schedule_params(name: str, params: Iterable[str]) -> None:
    """``name`` is a KL schedule a config may choose and ``params`` only its own parameters."""
    SCHEDULE_PARAMETERS.check(name)
    check_component_params("schedule", name, params, schedule_parameters(name))


def check_registered_params(registry: Registry[Any], name: str, params: Iterable[str]) -> None:
    """``name`` is in ``registry`` (a parameters registry: name -> {param: default}) and ``params``
    only its own parameters."""
    allowed = registry.get(name)
    check_component_params(registry.kind, name, params, allowed)


def _conditional_space(registry: Registry[Any], v: Any) -> dict[str, dict[str, Any]] | None:
    """A component's search space: a list of names (each with its parameters' defaults) or
    {name: {param: value, list or range}}; integer parameters' ranges are drawn as integers."""
    if v is None:
        return v
    if isinstance(v, list):
        v = {name: {} for name in v}
    if not v:
        raise ValueError(f"{registry.kind}: give at least one {registry.kind} name")
    for name, params in v.items():
        check_registered_params(registry, name, params)
        defaults = registry.get(name)
        for param, spec in params.items():
            if isinstance(spec, FloatRange) and isinstance(defaults[param], int):
                params[param] = _integer_range(f"{name}.{param}", spec)
    return v


def _integer_range(key: str, spec: FloatRange) -> IntRange:
    """A range of an integer parameter (its default is an int) is drawn as integers; a range of a
    real one as reals, whatever its bounds look like."""
    if spec.low != int(spec.low) or spec.high != int(spec.high):
        raise ValueError(f"{key} is an integer parameter: its range needs integer bounds, got low={spec.low}, high={spec.high}")
    return IntRange(low=int(spec.low), high=int(spec.high), log=spec.log)


class SearchSpace(Strict):
    """What Optuna proposes. Any key left out stays at the value in ``model``/``train``."""

    beta: FloatParam | None = None
    latent_dim: IntParam | None = None
    lr: FloatParam | None = None
    decoder: ComponentParam | None = None   # registered names and/or plug-ins (search.config.components)
    free_bits: FloatParam | None = None
    # schedule name -> {param: spec}; the params are conditional on that schedule being chosen.
    schedule: dict[str, dict[str, ScheduleParam]] | None = None
    # The prior and the training objective, likewise: [names] or {name: {param: spec}}.
    prior: list[str] | dict[str, dict[str, SettingParam]] | None = None
    objective: list[str] | dict[str, dict[str, SettingParam]] | None = None

    @field_validator("prior")
    @classmethod
    def _priors(cls, v: Any) -> dict[str, dict[str, Any]] | None:
        return _conditional_space(PRIOR_PARAMETERS, v)

    @field_validator("objective")
    @classmethod
    def _objectives(cls, v: Any) -> dict[str, dict[str, Any]] | None:
        return _conditional_space(OBJECTIVE_PARAMETERS, v)

    @field_validator("decoder")
    @classmethod
    def _decoders(cls, v: Any) -> Any:
        check_components(DECODERS, v if isinstance(v, list) else [v] if v is not None else [])
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
            check_schedule_params(name, params)
            defaults = schedule_parameters(name)
            for param, spec in params.items():
                if isinstance(spec, FloatRange) and isinstance(defaults[param], int):
                    params[param] = _integer_range(f"{name}.{param}", spec)
                elif isinstance(spec, IntRange) and isinstance(defaults[param], float):
                    params[param] = FloatRange(low=spec.low, high=spec.high, log=spec.log)  # a real parameter
        return v

    def decoder_choices(self) -> Any:
        """``decoder`` by readable names (what Optuna's categorical and Tune's config hold)."""
        return [label(d) for d in self.decoder] if isinstance(self.decoder, list) else (
            None if self.decoder is None else label(self.decoder))

    def searched(self) -> list[str]:
        """The keys this space sets, in declaration order."""
        return [key for key in type(self).model_fields if getattr(self, key) is not None]
