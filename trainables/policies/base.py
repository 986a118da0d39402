"""The bandit policy interface shared by every decoder-bandit allocation rule.

Arms are candidate decoders. A *pull* is either some epochs of training one arm (allocation
mode, reward = −validation distortion) or one minibatch (shared-encoder mode, the protocol of
the multi-armed-bandit VAE, reference 003; reward = −reconstruction loss). Higher is better, and in
both modes rewards rise as the arm trains, noisily.

``Policy`` keeps the bookkeeping every rule needs (rewards per arm, the active set, a seeded
numpy generator) and a JSON-serialisable ``state_dict`` so that a Ray Tune checkpoint can carry
a policy across a restart and make exactly the same future choices. Subclasses implement
``_choose`` and, if they eliminate arms, ``_after_update``; they declare their knobs and
defaults in ``defaults`` so that the config layer can validate them without special cases.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, ClassVar

import numpy as np

__all__ = ["Policy", "check_choice", "check_int", "check_real"]


# --- validation helpers (every policy rejects bad input the same way) ---

def check_int(name: str, value: Any, *, minimum: int) -> int:
    """An integer knob; bools are refused because ``True`` is almost always a config mistake."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {name}={value!r}")
    return int(value)


def check_real(
    name: str, value: Any, *, low: float = -math.inf, high: float = math.inf, low_open: bool = False
) -> float:
    """A finite real knob in ``[low, high]`` (``(low, high]`` when ``low_open``)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bracket = "(" if low_open else "["
        raise ValueError(f"{name} must be a finite number in {bracket}{low}, {high}], got {name}={value!r}")
    return float(value)


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    if value not in choices:
        raise ValueError(f"{name} must be one of {list(choices)}, got {name}={value!r}")
    return str(value)


def _rng_state(rng: np.random.Generator) -> dict[str, Any]:
    # PCG64's 128-bit integers are written as decimal strings: JSON readers other than
    # Python's (and some YAML/MLflow round trips) silently truncate integers past 2**53.
    state = rng.bit_generator.state
    return {
        "bit_generator": state["bit_generator"],
        "state": {key: str(value) for key, value in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }


def _restore_rng(state: Mapping[str, Any]) -> np.random.Generator:
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = {
        "bit_generator": state["bit_generator"],
        "state": {key: int(value) for key, value in state["state"].items()},
        "has_uint32": int(state["has_uint32"]),
        "uinteger": int(state["uinteger"]),
    }
    return rng


class Policy(ABC):
    """A bandit allocation rule over ``n_arms`` arms (see the module docstring).

    ``budget`` is the total number of pulls the caller will make at most; the eliminating
    policies plan with it and require it. ``params`` are the policy's own knobs (``defaults``).
    """

    name: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]] = MappingProxyType({})
    requires_budget: ClassVar[bool] = False

    def __init__(self, n_arms: int, *, budget: int | None = None, seed: int = 0, **params: Any) -> None:
        self._n_arms = check_int("n_arms", n_arms, minimum=1)
        self._budget = self._check_budget(budget)
        self._seed = check_int("seed", seed, minimum=0)
        self._params = self._resolve(params)
        self._rng = np.random.Generator(np.random.PCG64(self._seed))
        self._rewards: list[list[float]] = [[] for _ in range(self._n_arms)]
        self._active: list[int] = list(range(self._n_arms))
        self._reset()

    # --- what subclasses provide ---

    def _configure(self, params: Mapping[str, Any]) -> None:
        """Validate the merged params and keep them as attributes (called again on load)."""

    def _reset(self) -> None:
        """Set the subclass's own bookkeeping to its initial state."""

    @abstractmethod
    def _choose(self) -> int:
        """The next arm; only called while more than one arm is active."""

    def _after_update(self, arm: int) -> None:
        """React to a new reward of an active arm (close a round, eliminate arms)."""

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def _load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore what ``_extra_state`` wrote."""

    def _recommendation_value(self, arm: int) -> float:
        # Best-so-far: with rising rewards the best value an arm has shown is the level it
        # has reached; the mean would still count its untrained first pulls.
        return max(self._rewards[arm])

    # --- public API ---

    @property
    def n_arms(self) -> int:
        return self._n_arms

    @property
    def budget(self) -> int | None:
        return self._budget

    @property
    def params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def active(self) -> list[int]:
        """Arms not eliminated (every arm for policies that never eliminate)."""
        return list(self._active)

    @property
    def finished(self) -> bool:
        """True once an eliminating policy is down to one arm: more pulls cannot change its answer."""
        return False

    @property
    def pulls(self) -> list[int]:
        return [len(rewards) for rewards in self._rewards]

    @property
    def rewards(self) -> list[list[float]]:
        return [list(rewards) for rewards in self._rewards]

    def select(self) -> int:
        """The arm to pull next; always an active arm."""
        arm = self._active[0] if len(self._active) == 1 else self._choose()
        assert arm in self._active, f"{self.name} chose eliminated arm {arm}"
        return arm

    def update(self, arm: int, reward: float) -> None:
        """Record ``reward`` observed after pulling ``arm``.

        Rewards of eliminated arms are recorded (an allocation trial may report after it was
        stopped) but never bring the arm back.
        """
        if isinstance(arm, bool) or not isinstance(arm, (int, np.integer)) or not 0 <= arm < self._n_arms:
            raise ValueError(f"arm must be an integer in [0, {self._n_arms}), got {arm=}")
        if not isinstance(reward, (int, float, np.integer, np.floating)) or not math.isfinite(reward):
            # A diverged trial (NaN loss) is the caller's to score, e.g. as the worst reward seen.
            raise ValueError(f"reward must be a finite number, got {reward=}")
        self._rewards[int(arm)].append(float(reward))
        if int(arm) in self._active and len(self._active) > 1:
            self._after_update(int(arm))

    def best_arm(self) -> int:
        """The current recommendation: the active arm with the best value, ties to the lowest index."""
        pulled = [arm for arm in self._active if self._rewards[arm]]
        if not pulled:
            return self._active[0]
        # max() keeps the first maximum, and `pulled` is in index order.
        return max(pulled, key=self._recommendation_value)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as JSON-serialisable values."""
        return {
            "policy": self.name,
            "n_arms": self._n_arms,
            "budget": self._budget,
            "seed": self._seed,
            "params": dict(self._params),
            "rewards": self.rewards,
            "active": self.active,
            "rng": _rng_state(self._rng),
            "extra": self._extra_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore a ``state_dict`` (its params and budget included) so future choices are identical."""
        if state.get("policy") != self.name or state.get("n_arms") != self._n_arms:
            raise ValueError(
                f"state is for policy {state.get('policy')!r} with {state.get('n_arms')!r} arms, "
                f"this is {self.name!r} with {self._n_arms} arms"
            )
        rewards = [[float(r) for r in arm_rewards] for arm_rewards in state["rewards"]]
        if len(rewards) != self._n_arms:
            raise ValueError(f"state has rewards for {len(rewards)} arms, expected {self._n_arms}")
        active = sorted(int(arm) for arm in state["active"])
        if not active or not 0 <= active[0] <= active[-1] < self._n_arms:
            raise ValueError(f"state's active arms must be a non-empty subset of range({self._n_arms}), got {active=}")
        self._budget = self._check_budget(state["budget"])
        self._seed = check_int("seed", state["seed"], minimum=0)
        self._params = self._resolve(state["params"])
        self._rewards = rewards
        self._active = active
        self._rng = _restore_rng(state["rng"])
        self._load_extra_state(state["extra"])

    def __repr__(self) -> str:
        knobs = "".join(f", {key}={value!r}" for key, value in self._params.items())
        return f"{type(self).__name__}({self._n_arms}, budget={self._budget}, seed={self._seed}{knobs})"

    # --- helpers for subclasses ---

    def _check_budget(self, budget: int | None) -> int | None:
        if budget is None:
            if self.requires_budget:
                raise ValueError(f"policy {self.name!r} needs a budget (total pulls), got {budget=}")
            return None
        # A budget below one pull per arm cannot even look at every arm once.
        return check_int("budget", budget, minimum=self._n_arms)

    def _resolve(self, params: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(params) - set(self.defaults))
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {unknown} for policy {self.name!r}; "
                f"allowed: {sorted(self.defaults)}, got {dict(params)=}"
            )
        merged = {**self.defaults, **params}
        self._configure(merged)
        return merged

    def _first_unpulled(self) -> int | None:
        """The lowest-index active arm never pulled: every arm is tried once before any scoring."""
        return next((arm for arm in self._active if not self._rewards[arm]), None)

    def _least_pulled(self, arms: Sequence[int], pulls: Sequence[int]) -> int:
        """Round-robin as a pure function of the counts: fewest pulls, ties to the lowest index.

        Deriving the turn from the counts (rather than a cursor) means that calling ``select``
        twice without an ``update`` returns the same arm, and a restored state needs no cursor.
        """
        return min(arms, key=lambda arm: (pulls[arm], arm))
