"""Decoder-bandit policies (pure Python + numpy): which candidate decoder to train next.

Used by the shared-encoder trainable (one minibatch per pull, the multi-armed-bandit VAE of
reference 003) and by the Ray Tune adapters in ``search/bandit`` (some epochs per pull). Rewards
rise as arms train, so besides the reference's ε-greedy there are rules built for that: successive
halving (Karnin et al. 2013), rising-bandit elimination (Li et al. 2020, AAAI), UCB1 on the
best-so-far value (Auer et al. 2002) and windowed Gaussian Thompson sampling.
"""
from __future__ import annotations

from typing import Any

from trainables.policies.adaptive import UCB1, EpsilonGreedy, Thompson, Uniform
from trainables.policies.base import Policy
from trainables.policies.elimination import ArmBounds, Rising, SuccessiveHalving
from trainables.policies.estimators import ESTIMATORS
from trainables.registry import Registry

__all__ = [
    "ESTIMATORS",
    "POLICIES",
    "UCB1",
    "ArmBounds",
    "EpsilonGreedy",
    "Policy",
    "Rising",
    "SuccessiveHalving",
    "Thompson",
    "Uniform",
    "available_policies",
    "build_policy",
    "policy_parameters",
    "policy_requires_budget",
]

POLICIES: Registry[type[Policy]] = Registry(
    "bandit policy", {cls.name: cls for cls in (Uniform, EpsilonGreedy, UCB1, Thompson, SuccessiveHalving, Rising)}
)


def available_policies() -> list[str]:
    """Names accepted by ``build_policy`` and ``policy_parameters``, sorted."""
    return sorted(POLICIES)


def policy_parameters(name: str) -> dict[str, Any]:
    """The policy's own keyword parameters and their defaults (``budget`` and ``seed`` excluded)."""
    return dict(POLICIES.get(name).defaults)


def policy_requires_budget(name: str) -> bool:
    """Whether ``build_policy(name, ...)`` needs ``budget`` (the eliminating policies plan with it)."""
    return POLICIES.get(name).requires_budget


def build_policy(name: str, n_arms: int, *, budget: int | None = None, seed: int = 0, **params: Any) -> Policy:
    """A fresh policy by registry name; bad names and parameters raise ``ValueError``."""
    return POLICIES.get(name)(n_arms, budget=budget, seed=seed, **params)
