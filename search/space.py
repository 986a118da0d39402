"""The YAML search space as an Optuna define-by-run function, wrapped in Ray Tune's OptunaSearch.

Define-by-run is the only way ``OptunaSearch`` supports conditional parameters: the KL schedule,
the prior and the training objective are categoricals and each one's own parameters are
suggested only when it is chosen (``schedule.<name>.<param>``, ``prior.<name>.<param>``,
``objective.<name>.<param>``, so TPE models each one's parameters separately).
``random`` uses the same space with Optuna's RandomSampler, so the comparison is like for like
(the searchers themselves are built in ``search/searchers.py``). The names are the trial spec's
search names (``trainables.spec.SEARCH_NAMES``), so every sampled key lands in the spec.
"""
from __future__ import annotations

from typing import Any

import optuna

from search.config import FloatRange, IntRange, SearchSpace
from trainables.search_names import CONDITIONAL_KEYS


def _suggest(trial: optuna.Trial, name: str, spec: Any) -> tuple[Any, bool]:
    """One parameter -> (value, whether Optuna suggested it). A one-element list or a scalar is fixed."""
    if isinstance(spec, IntRange):
        return trial.suggest_int(name, spec.low, spec.high, log=spec.log), True
    if isinstance(spec, FloatRange):
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log), True
    if isinstance(spec, list) and len(spec) > 1:
        return trial.suggest_categorical(name, spec), True
    return (spec[0] if isinstance(spec, list) else spec), False


class DefineByRun:
    """Optuna define-by-run function over a :class:`SearchSpace`. Returns the fixed (non-suggested)
    values, which OptunaSearch merges with the suggested ones into the trial's config. A class,
    not a closure, so Tune can pickle the searcher into its experiment checkpoint (for resume)."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        specs = {k: getattr(space, k) for k in ("beta", "latent_dim", "lr", "free_bits")}
        specs["decoder"] = space.decoder_choices()   # plug-ins by readable name: Optuna's choices are str
        self.specs = {k: v for k, v in specs.items() if v is not None}

    def __call__(self, trial: optuna.Trial) -> dict[str, Any]:
        fixed: dict[str, Any] = {}
        for key, spec in self.specs.items():
            value, suggested = _suggest(trial, key, spec)
            if not suggested:
                fixed[key] = value
        for component in CONDITIONAL_KEYS:  # schedule, prior, objective
            choices = getattr(self.space, component)
            if not choices:
                continue
            name, suggested = _suggest(trial, component, list(choices))
            if not suggested:
                fixed[component] = name
            for param, spec in choices[name].items():
                key = f"{component}.{name}.{param}"
                value, suggested = _suggest(trial, key, spec)
                if not suggested:
                    fixed[key] = value
        return fixed


def define_by_run(space: SearchSpace) -> DefineByRun:
    return DefineByRun(space)
