"""The ``bandit`` section: which decoder suits this dataset? (``vaesearch bandit``)."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from search.config.components import ComponentRef, check_components, labels
from search.config.params import Strict, check_component_params
from trainables.data import DATASET_NAMES
from trainables.decoders import DECODERS
from trainables.policies import POLICIES, policy_parameters


def _check_policy(name: str, params: dict[str, Any]) -> None:
    POLICIES.check(name)
    check_component_params("policy", name, params, policy_parameters(name))


class AllocationConfig(Strict):
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


class SharedEncoderConfig(Strict):
    """Shared-encoder mode (the reference protocol): one encoder, K decoder heads, a policy per minibatch."""

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
            DATASET_NAMES.check(name)
        for name in self.policies:
            _check_policy(name, self.policy_params.get(name, {}))
        for name in self.policy_params:
            if name not in self.policies:
                raise ValueError(f"policy_params for {name!r}, which is not in policies {self.policies}")
        return self


class BanditConfig(Strict):
    """``vaesearch bandit``: which decoder suits this dataset?"""

    mode: Literal["allocation", "shared_encoder"] = "allocation"
    # Default: every registered decoder, in the reference's numbering (the five of reference 003).
    # Registered names and/or plug-ins {path: 'package.module:ClassName', kwargs: {...}, name: ...}
    arms: list[ComponentRef] = Field(default_factory=lambda: DECODERS.names(), min_length=1)
    allocation: AllocationConfig = Field(default_factory=AllocationConfig)
    shared_encoder: SharedEncoderConfig = Field(default_factory=SharedEncoderConfig)

    @field_validator("arms")
    @classmethod
    def _arms(cls, v: list[Any]) -> list[Any]:
        names = labels(v)
        if len(set(names)) != len(names):
            raise ValueError(f"arms must be distinct, got {names}")
        check_components(DECODERS, v)
        return v

    def arm_names(self) -> list[str]:
        """The arms' readable names (Tune's grid, the progress table, MLflow)."""
        return labels(self.arms)
