"""How a trial's MLflow child run reads in the runs table: a name that says what the trial is,
its full effective config as params, and, when it ended before its planned epochs, who stopped it.

A run's name is built from the trial's sampled values (``t07 deconv_4x4 β=0.51 z=32 cyclical``);
its params are the config every trial of the run shares (``model.*``, ``train.*``) with the
trial's sampled values laid over it, plus the sampled values under their search names (``beta``,
``decoder``, ...: what the parallel-coordinates view and a filter use). ``epochs_completed`` is a
metric, not a param: a paused or restarted trial goes on, and a param cannot change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Mapping

from search.config import Config
from trainables.search_names import SCHEDULE_KEY, SCHEDULE_PARAM_PREFIX, SEARCH_NAMES

BEST_TAG = "vaesearch.best"               # "true" on the best child run of a search, on no other
STOPPED_BY_TAG = "vaesearch.stopped_by"   # asha | bandit | ...: the trial ended before its planned epochs
EPOCHS_METRIC = "epochs_completed"

#: search name -> the config path it overrides (``trainables.search_names`` maps to the spec's).
CONFIG_PATHS: dict[str, str] = {
    **{name: path for name, path in SEARCH_NAMES.items() if path.startswith("model.")},
    "beta": "train.beta",
    "free_bits": "train.free_bits",
    "lr": "train.lr",
    SCHEDULE_KEY: "train.schedule.name",
    "seed": "seed",
}
_SHOWN = (("beta", "β"), ("latent_dim", "z"), ("lr", "lr"), ("free_bits", "fb"), ("seed", "seed"))
#: The setting-valued keys a trainable reports beside its metrics: MLflow params, never metrics.
SETTING_KEYS = {"test/nll_k": "final_eval.test_nll_k"}


def trial_number(trial_id: str, experiment_tag: str = "") -> int | None:
    """The trial's index: the head of Tune's experiment tag (``7_beta=0.5,...``: a searcher's
    trials are numbered there, their ids are random), else the tail of a grid trial's id
    (``54ae423b_00007``)."""
    found = re.match(r"(\d+)(_|$)", experiment_tag) or re.search(r"_(\d+)$", trial_id)
    return int(found.group(1)) if found else None


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2g}" if value and (abs(value) < 0.01 or abs(value) >= 1000) else f"{value:.3g}"
    return str(value)


def run_name(trial_id: str, config: Mapping[str, Any], experiment_tag: str = "") -> str:
    """``t07 deconv_4x4 β=0.51 z=32 cyclical``: the trial's index and its sampled values, short."""
    number = trial_number(trial_id, experiment_tag)
    parts = [f"t{number:02d}" if number is not None else trial_id]
    if "decoder" in config:
        parts.append(str(config["decoder"]))
    parts += [f"{label}={_short(config[key])}" for key, label in _SHOWN if key in config]
    if SCHEDULE_KEY in config:
        parts.append(str(config[SCHEDULE_KEY]))
    shown = {"decoder", SCHEDULE_KEY, *(key for key, _ in _SHOWN)}
    parts += [str(v) for k, v in sorted(config.items()) if k not in shown and isinstance(v, str)]  # policy, dataset, ...
    return " ".join(parts)


def config_path(key: str) -> str:
    """The config path a sampled key sets (``schedule.linear.warmup_fraction`` ->
    ``train.schedule.params.warmup_fraction``); an unknown key is its own path."""
    if key.startswith(SCHEDULE_PARAM_PREFIX):
        return f"train.schedule.params.{key.split('.')[-1]}"
    return CONFIG_PATHS.get(key, key)


def searched_paths(sampled_keys: list[str]) -> set[str]:
    """The config paths a search overrides: the parent run does not log their base values (they
    would read as the winner's); ``search.space.*`` and ``best.*`` say what was searched and won."""
    paths = {config_path(k) for k in sampled_keys}
    if "train.schedule.name" in paths:
        paths.add("train.schedule.params")   # the base schedule's own params go with it
    return paths


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; an empty mapping stays a value."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


@dataclass(frozen=True)
class TrialRunStyle:
    """What the driver's MLflow callback needs to name and describe a mode's child runs (plain
    data: it is pickled with the callback into Tune's experiment state)."""

    base: dict[str, Any] = field(default_factory=dict)   # model.*, train.*, ... every trial shares
    planned_epochs: int | None = None                    # a trial that ends FINISHED before this was stopped
    stopped_by: str = "scheduler"                        # who stops trials early in this mode

    @property
    def image_every(self) -> int:
        """Log the reconstructions every this many epochs (about 8 per trial, for the UI's step
        slider); 0: only at the end."""
        return max(1, self.planned_epochs // 8) if self.planned_epochs else 0

    @classmethod
    def of(cls, config: Config, *, planned_epochs: int, stopped_by: str) -> TrialRunStyle:
        dumped = config.model_dump(mode="json")
        base = flatten({"model": dumped["model"], "train": dumped["train"]})
        base["seed"] = dumped["seed"]
        base["final_eval.test_nll_k"] = dumped["final_eval"]["test_nll_k"]
        return cls(base=base, planned_epochs=planned_epochs, stopped_by=stopped_by)

    def run_name(self, trial_id: str, config: Mapping[str, Any], experiment_tag: str = "") -> str:
        return run_name(trial_id, config, experiment_tag)

    def params(self, sampled: Mapping[str, Any]) -> dict[str, Any]:
        """The trial's effective config (base with the sampled values over it) and the sampled
        values under their search names."""
        params = dict(self.base)
        schedule = sampled.get(SCHEDULE_KEY)
        if schedule is not None and schedule != params.get("train.schedule.name"):
            params = {k: v for k, v in params.items() if not k.startswith("train.schedule.params.")}
        for key, value in sampled.items():
            params[config_path(key)] = value
        params.update(sampled)
        return params

    def end_tags(self, epochs_completed: int) -> dict[str, str]:
        """``vaesearch.stopped_by`` for a trial that ended (not failed) before its planned epochs."""
        if self.planned_epochs is not None and 0 <= epochs_completed < self.planned_epochs:
            return {STOPPED_BY_TAG: self.stopped_by}
        return {}
