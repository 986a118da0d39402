"""KL-weight schedules β_t as pure functions of training progress, and free bits.

Implements the annealing schedules of Bowman et al. 2015 ("Generating Sentences from a
Continuous Space": linear and sigmoid warm-up), Sønderby et al. 2016 (linear warm-up),
Fu et al. 2019 ("Cyclical Annealing Schedule", NAACL), the controlled-capacity objective of
Burgess et al. 2018 ("Understanding disentangling in β-VAE") and the free-bits rate of
Kingma et al. 2016 ("Improved Variational Inference with Inverse Autoregressive Flow").

Every schedule has the signature ``f(step, total_steps, *, beta, **params) -> KLWeight`` so
that the trainer can call any of them by name through ``kl_weight`` and the config layer can
validate a schedule's parameters through ``schedule_parameters`` without special cases.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

import torch

from trainables.registry import Registry

__all__ = [
    "FREE_BITS_SCHEDULE",
    "KLWeight",
    "SCHEDULES",
    "available_schedules",
    "configurable_schedules",
    "capacity",
    "check_free_bits",
    "constant",
    "cyclical",
    "free_bits_rate",
    "kl_weight",
    "linear",
    "schedule_parameters",
    "sigmoid",
]


@dataclass(frozen=True)
class KLWeight:
    """The weight on the rate term in force at one training step.

    ``beta`` multiplies the rate (γ for the capacity objective). When ``capacity`` is set the
    loss is ``distortion + beta * |rate - capacity|`` (Burgess et al. 2018) instead of
    ``distortion + beta * rate``.
    """

    beta: float
    capacity: float | None = None  # C_t in nats

    def __post_init__(self) -> None:
        if not math.isfinite(self.beta) or self.beta < 0:
            raise ValueError(f"KL weight beta must be finite and >= 0, got {self.beta=}")
        if self.capacity is not None and (not math.isfinite(self.capacity) or self.capacity < 0):
            raise ValueError(f"capacity must be finite and >= 0 nats, got {self.capacity=}")


# --- validation helpers (shared by every schedule so each rejects bad input the same way) ---


def _check_progress(step: int, total_steps: int, beta: float) -> None:
    if total_steps < 1:
        raise ValueError(f"total_steps must be >= 1, got {total_steps=}")
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step=}")
    if not math.isfinite(beta) or beta < 0:
        raise ValueError(f"beta must be finite and >= 0, got {beta=}")


def _check_fraction(name: str, value: float) -> None:
    # A fraction of training of 0 would divide by zero; above 1 the schedule never finishes.
    if not 0.0 < value <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {name}={value!r}")


def _ramp(step: int, ramp_steps: float) -> float:
    """Linear ramp 0 -> 1 over ``ramp_steps`` steps, then held at 1."""
    return min(1.0, step / ramp_steps)


def _logistic(x: float) -> float:
    # Two branches so that math.exp never overflows for a steep sigmoid far from its midpoint.
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# --- the schedules -------------------------------------------------------------------------


def constant(step: int, total_steps: int, *, beta: float) -> KLWeight:
    """β_t = β (the β-VAE of Higgins et al. 2017; β = 1 is the plain ELBO)."""
    _check_progress(step, total_steps, beta)
    return KLWeight(beta=float(beta))


def linear(step: int, total_steps: int, *, beta: float, warmup_fraction: float = 0.3) -> KLWeight:
    """β_t = β·min(1, t / T_warm) with T_warm = warmup_fraction·T (Bowman 2015; Sønderby 2016)."""
    _check_progress(step, total_steps, beta)
    _check_fraction("warmup_fraction", warmup_fraction)
    return KLWeight(beta=beta * _ramp(step, warmup_fraction * total_steps))


def sigmoid(
    step: int, total_steps: int, *, beta: float, midpoint: float = 0.3, steepness: float = 20.0
) -> KLWeight:
    """β_t = β / (1 + exp(−k (p − p0))), p = t / T (Bowman et al. 2015).

    Written in progress p ∈ [0, 1] rather than raw steps so that k and p0 mean the same
    thing whatever the dataset size and number of epochs.
    """
    _check_progress(step, total_steps, beta)
    if not 0.0 <= midpoint <= 1.0:
        raise ValueError(f"midpoint must be in [0, 1] (a fraction of training), got {midpoint=}")
    if not math.isfinite(steepness) or steepness <= 0:
        raise ValueError(f"steepness must be finite and > 0, got {steepness=}")
    progress = step / total_steps
    return KLWeight(beta=beta * _logistic(steepness * (progress - midpoint)))


def cyclical(
    step: int, total_steps: int, *, beta: float, n_cycles: int = 4, ratio: float = 0.5
) -> KLWeight:
    """Cyclical annealing (Fu et al. 2019): M cycles over T steps, ramp over the first R of each.

    τ = (t mod ⌈T/M⌉) / (T/M); β_t = β·τ/R while τ ≤ R, else β.
    """
    _check_progress(step, total_steps, beta)
    if isinstance(n_cycles, bool) or int(n_cycles) != n_cycles or n_cycles < 1:
        raise ValueError(f"n_cycles must be an integer >= 1, got {n_cycles=}")
    if n_cycles > total_steps:
        # ⌈T/M⌉ would be 1, so t mod 1 = 0 and β_t would silently stay 0 for the whole run.
        raise ValueError(f"n_cycles must be <= total_steps, got {n_cycles=} with {total_steps=}")
    _check_fraction("ratio", ratio)
    cycle_length = total_steps / n_cycles
    tau = (step % math.ceil(cycle_length)) / cycle_length
    return KLWeight(beta=beta * tau / ratio if tau <= ratio else float(beta))


def capacity(
    step: int,
    total_steps: int,
    *,
    beta: float = 1000.0,
    c_max: float = 25.0,
    ramp_fraction: float = 1.0,
) -> KLWeight:
    """Controlled capacity (Burgess et al. 2018): loss = D + γ·|R − C_t|.

    C_t rises linearly from 0 to ``c_max`` nats over ``ramp_fraction``·T steps; ``beta`` is γ.
    """
    _check_progress(step, total_steps, beta)
    if not math.isfinite(c_max) or c_max < 0:
        raise ValueError(f"c_max must be finite and >= 0 nats, got {c_max=}")
    _check_fraction("ramp_fraction", ramp_fraction)
    return KLWeight(beta=float(beta), capacity=c_max * _ramp(step, ramp_fraction * total_steps))


SCHEDULES: Registry[Callable[..., KLWeight]] = Registry(
    "schedule",
    {
        "constant": constant,
        "linear": linear,
        "sigmoid": sigmoid,
        "cyclical": cyclical,
        "capacity": capacity,
    },
)

#: Not a β_t rule but a name a config may choose like one: constant β with the free-bits rate
#: (Kingma et al. 2016), its one parameter ``lam`` (λ, nats per latent dimension). The trial spec
#: turns it into the ``constant`` schedule with ``free_bits = lam`` (trainables.spec).
FREE_BITS_SCHEDULE = "free_bits"

# Parameters every schedule takes that are not schedule-specific knobs.
_COMMON_PARAMETERS = frozenset({"step", "total_steps", "beta"})


def available_schedules() -> list[str]:
    """Names accepted by ``kl_weight`` and ``schedule_parameters``, sorted."""
    return sorted(SCHEDULES)


def _parameters(schedule: Callable[..., KLWeight]) -> Mapping[str, float | int]:
    signature = inspect.signature(schedule)
    return MappingProxyType(
        {p.name: p.default for p in signature.parameters.values() if p.name not in _COMMON_PARAMETERS}
    )


#: What a config may name as a schedule (the β_t rules and the free-bits pseudo-schedule) ->
#: its own parameters and their defaults: each schedule's domain, declared once (read off the
#: functions' signatures, once: ``kl_weight`` runs every training step).
SCHEDULE_PARAMETERS: Registry[Mapping[str, float | int]] = Registry(
    "schedule",
    {**{name: _parameters(schedule) for name, schedule in SCHEDULES.items()},
     FREE_BITS_SCHEDULE: MappingProxyType({"lam": 0.5})},
)


def configurable_schedules() -> list[str]:
    """What a config may name as a schedule: the β_t rules and the free-bits pseudo-schedule."""
    return SCHEDULE_PARAMETERS.names()


def schedule_parameters(name: str) -> dict[str, float | int]:
    """The schedule's own keyword parameters and their defaults (``beta`` excluded);
    the free-bits pseudo-schedule's too."""
    return dict(SCHEDULE_PARAMETERS.get(name))


def kl_weight(name: str, step: int, total_steps: int, beta: float, **params: float) -> KLWeight:
    """β_t of schedule ``name`` at ``step`` of ``total_steps``; ``params`` override its defaults.

    Unknown names and parameters raise ``ValueError`` listing what is allowed, so a typo in a
    config fails at once instead of silently training with a default.
    """
    schedule = SCHEDULES.get(name)
    allowed = SCHEDULE_PARAMETERS.get(name)
    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise ValueError(
            f"unknown parameter(s) {unknown} for KL schedule {name!r}, got {params=}; "
            f"allowed: {sorted(allowed)}"
        )
    return schedule(step, total_steps, beta=beta, **params)


def check_free_bits(lam: float) -> None:
    """λ of the free-bits rate: finite and >= 0 nats per latent dimension (0: off)."""
    if isinstance(lam, bool) or not isinstance(lam, int | float) or not math.isfinite(lam) or lam < 0:
        raise ValueError(f"free-bits lambda must be finite and >= 0 nats, got {lam=}")


def free_bits_rate(kl_per_dim: torch.Tensor, lam: float) -> torch.Tensor:
    """Free-bits rate Σ_j max(λ, E_batch KL_j) (Kingma et al. 2016, IAF paper).

    The max is taken on the batch-averaged KL of each latent dimension, as in the paper, so a
    dimension below λ nats contributes exactly λ and gets no gradient: the encoder is not pushed
    to collapse it further. (B, D) -> scalar.
    """
    if kl_per_dim.ndim != 2:
        raise ValueError(f"kl_per_dim must be (B, D), got shape {tuple(kl_per_dim.shape)}")
    check_free_bits(lam)
    per_dim = kl_per_dim.mean(dim=0)  # (D,)
    return torch.clamp(per_dim, min=lam).sum()
