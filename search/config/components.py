"""A component in the YAML: a registry name, or a plug-in by import path.

Wherever an encoder, decoder or prior is named (``model``, ``search.space.decoder``,
``bandit.arms``) the YAML may write either ``mlp_small`` or
``{path: mydecoders:ResidualDecoder, kwargs: {blocks: 3}, name: residual3}``. The plug-in's readable
name (``name``, else the class name) is what Optuna's categorical, Tune's progress table, MLflow's
params and the bandit's arms see; the trial spec maps it back to the plug-in
(``trainables.spec.TrialSpec.plugins``). Nothing is imported here: ``vaesearch validate`` imports,
builds and runs each plug-in (``search/runnable.py``).
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Annotated, Any, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from trainables.registry import PLUGIN_NAME, PLUGIN_PATH, Plugin, Registry


class ComponentConfig(BaseModel):
    """The researcher's own component: ``path`` = ``package.module:ClassName``."""

    model_config = ConfigDict(extra="forbid", validate_default=True)   # as params.Strict

    path: str = Field(pattern=PLUGIN_PATH.pattern)
    kwargs: dict[str, Any] = Field(default_factory=dict)
    name: str | None = Field(default=None, pattern=PLUGIN_NAME.pattern)

    @property
    def label(self) -> str:
        return self.name or self.path.partition(":")[2]

    def plugin(self, search_path: str | None = None) -> Plugin:
        return Plugin(path=self.path, kwargs=dict(self.kwargs), name=self.name, search_path=search_path)


_FORM = "a registered name or {path: 'package.module:ClassName', kwargs: {...}, name: ...}"


def _component(value: Any) -> Any:
    """A mapping -> ComponentConfig with its problems in one line (not pydantic's union noise)."""
    if isinstance(value, str | ComponentConfig):
        return value
    if isinstance(value, dict):
        try:
            return ComponentConfig.model_validate(value)
        except ValidationError as exc:
            problems = "; ".join(_problem(e) for e in exc.errors())
            raise ValueError(f"a plug-in is {{path: 'package.module:ClassName', kwargs: {{...}}, name: ...}}: "
                             f"{problems}") from None
    raise ValueError(f"a component is {_FORM}")


def _problem(err: Any) -> str:
    where = ".".join(map(str, err["loc"])) or "(top level)"
    if err["type"] == "string_pattern_mismatch":
        form = "package.module:ClassName" if where == "path" else "letters, digits, '_', '.', '-'"
        return f"{where} must look like {form!r}, got {err['input']!r}"
    return f"{where}: {err['msg']}"


def _components(value: Any) -> Any:
    return [_component(v) for v in value] if isinstance(value, list) else _component(value)


ComponentRef = Annotated[Union[str, ComponentConfig], BeforeValidator(_component)]
#: ``search.space.decoder``: one component or a categorical list of them.
ComponentParam = Annotated[Union[str, ComponentConfig, list[Union[str, ComponentConfig]]], BeforeValidator(_components)]


def label(ref: str | ComponentConfig) -> str:
    """The readable name of a component: the registry name, or the plug-in's name / class name."""
    return ref.label if isinstance(ref, ComponentConfig) else ref


def labels(refs: Iterable[str | ComponentConfig]) -> list[str]:
    return [label(r) for r in refs]


def check_components(registry: Registry[Any], refs: Iterable[str | ComponentConfig]) -> None:
    """Registered names known, no plug-in named like a registered component. (One name for one
    plug-in across the config is the Config's check; distinct arms the bandit section's.)"""
    for ref in refs:
        if isinstance(ref, ComponentConfig):
            if ref.label in registry:
                raise ValueError(f"plug-in {ref.path!r} is called {ref.label!r}, the name of a registered "
                                 f"{registry.kind}: give it another name (name: ...)")
        else:
            registry.check(ref)
