"""Tests for trainables.schedules: each KL schedule against its formula, validation, free bits."""
from __future__ import annotations

import math

import pytest
import torch

from trainables.schedules import (
    SCHEDULES,
    KLWeight,
    available_schedules,
    free_bits_rate,
    kl_weight,
    schedule_parameters,
)

T = 100  # total steps used by the formula tests


def test_registry_lists_every_schedule() -> None:
    assert available_schedules() == ["capacity", "constant", "cyclical", "linear", "sigmoid"]
    assert set(SCHEDULES) == set(available_schedules())


@pytest.mark.parametrize("step", [0, 1, 50, 99, 100, 250])
def test_constant_is_beta_everywhere(step: int) -> None:
    assert kl_weight("constant", step, T, beta=0.7) == KLWeight(beta=0.7, capacity=None)


@pytest.mark.parametrize(
    ("step", "expected"),
    # T_warm = 0.3·100 = 30 steps: 0 at the start, β/2 halfway through warm-up, β after.
    [(0, 0.0), (15, 1.0), (29, 2.0 * 29 / 30), (30, 2.0), (31, 2.0), (100, 2.0)],
)
def test_linear_warmup(step: int, expected: float) -> None:
    weight = kl_weight("linear", step, T, beta=2.0)
    assert weight.beta == pytest.approx(expected)
    assert weight.capacity is None


def test_linear_warmup_fraction_is_honoured() -> None:
    assert kl_weight("linear", 25, T, beta=1.0, warmup_fraction=0.5).beta == pytest.approx(0.5)
    assert kl_weight("linear", 50, T, beta=1.0, warmup_fraction=1.0).beta == pytest.approx(0.5)


@pytest.mark.parametrize("step", [0, 10, 30, 45, 70, 100])
def test_sigmoid_formula_in_progress_units(step: int) -> None:
    expected = 3.0 / (1.0 + math.exp(-20.0 * (step / T - 0.3)))
    assert kl_weight("sigmoid", step, T, beta=3.0).beta == pytest.approx(expected)


def test_sigmoid_depends_on_progress_not_raw_steps() -> None:
    # Same fraction of training, ten times the steps: same β_t.
    short = kl_weight("sigmoid", 20, 100, beta=1.0, midpoint=0.4, steepness=8.0)
    long = kl_weight("sigmoid", 200, 1000, beta=1.0, midpoint=0.4, steepness=8.0)
    assert short.beta == pytest.approx(long.beta)
    assert kl_weight("sigmoid", 40, 100, beta=1.0, midpoint=0.4).beta == pytest.approx(0.5)


def test_sigmoid_does_not_overflow_when_very_steep() -> None:
    assert kl_weight("sigmoid", 0, T, beta=1.0, midpoint=1.0, steepness=1e4).beta == 0.0
    assert kl_weight("sigmoid", T, T, beta=1.0, midpoint=0.0, steepness=1e4).beta == 1.0


@pytest.mark.parametrize(
    ("step", "expected_fraction"),
    # M = 4 cycles of 25 steps, R = 0.5: τ = (t mod 25)/25, ramp while τ ≤ 0.5, then flat at β.
    [
        (0, 0.0),
        (5, 0.4),
        (12, 0.96),
        (13, 1.0),
        (24, 1.0),
        (25, 0.0),  # cycle boundary: back to zero
        (30, 0.4),
        (50, 0.0),
        (62, 0.96),
        (75, 0.0),
        (99, 1.0),
    ],
)
def test_cyclical_matches_fu_2019(step: int, expected_fraction: float) -> None:
    assert kl_weight("cyclical", step, T, beta=2.0).beta == pytest.approx(2.0 * expected_fraction)


def test_cyclical_uses_ceiling_of_cycle_length() -> None:
    # T = 10, M = 4: ⌈T/M⌉ = 3, T/M = 2.5, R = 1: β_t = τ = (t mod 3) / 2.5.
    betas = [kl_weight("cyclical", t, 10, beta=1.0, ratio=1.0).beta for t in range(7)]
    assert betas == pytest.approx([0.0, 0.4, 0.8, 0.0, 0.4, 0.8, 0.0])


@pytest.mark.parametrize(
    ("step", "expected_capacity"), [(0, 0.0), (25, 6.25), (50, 12.5), (100, 25.0), (150, 25.0)]
)
def test_capacity_rises_linearly_to_c_max(step: int, expected_capacity: float) -> None:
    weight = kl_weight("capacity", step, T, beta=1000.0)
    assert weight.beta == 1000.0
    assert weight.capacity == pytest.approx(expected_capacity)


def test_capacity_ramp_fraction() -> None:
    weight = kl_weight("capacity", 25, T, beta=10.0, c_max=4.0, ramp_fraction=0.5)
    assert weight.beta == 10.0
    assert weight.capacity == pytest.approx(2.0)
    assert kl_weight("capacity", 60, T, beta=10.0, c_max=4.0, ramp_fraction=0.5).capacity == 4.0


def test_schedule_parameters_returns_defaults_without_beta() -> None:
    assert schedule_parameters("constant") == {}
    assert schedule_parameters("linear") == {"warmup_fraction": 0.3}
    assert schedule_parameters("sigmoid") == {"midpoint": 0.3, "steepness": 20.0}
    assert schedule_parameters("cyclical") == {"n_cycles": 4, "ratio": 0.5}
    assert schedule_parameters("capacity") == {"c_max": 25.0, "ramp_fraction": 1.0}


def test_unknown_schedule_name_lists_valid_names() -> None:
    with pytest.raises(ValueError, match="cosine") as info:
        kl_weight("cosine", 0, T, beta=1.0)
    assert "cyclical" in str(info.value) and "linear" in str(info.value)
    with pytest.raises(ValueError, match="cosine"):
        schedule_parameters("cosine")


def test_unknown_parameter_is_named_with_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="n_cycle") as info:
        kl_weight("cyclical", 0, T, beta=1.0, n_cycle=3)
    assert "n_cycles" in str(info.value) and "ratio" in str(info.value)
    # A parameter of another schedule is not silently accepted.
    with pytest.raises(ValueError, match="warmup_fraction"):
        kl_weight("constant", 0, T, beta=1.0, warmup_fraction=0.5)


@pytest.mark.parametrize(
    ("name", "kwargs", "bad_name"),
    [
        ("constant", {"beta": -0.1}, "beta"),
        ("linear", {"beta": 1.0, "warmup_fraction": 0.0}, "warmup_fraction"),
        ("linear", {"beta": 1.0, "warmup_fraction": 1.5}, "warmup_fraction"),
        ("cyclical", {"beta": 1.0, "ratio": 0.0}, "ratio"),
        ("cyclical", {"beta": 1.0, "ratio": 1.2}, "ratio"),
        ("cyclical", {"beta": 1.0, "n_cycles": 0}, "n_cycles"),
        ("cyclical", {"beta": 1.0, "n_cycles": 2.5}, "n_cycles"),
        ("cyclical", {"beta": 1.0, "n_cycles": 101}, "n_cycles"),  # more cycles than steps
        ("sigmoid", {"beta": 1.0, "steepness": 0.0}, "steepness"),
        ("sigmoid", {"beta": 1.0, "midpoint": -0.1}, "midpoint"),
        ("capacity", {"beta": 1.0, "c_max": -1.0}, "c_max"),
        ("capacity", {"beta": 1.0, "ramp_fraction": 0.0}, "ramp_fraction"),
    ],
)
def test_bad_values_raise_naming_the_parameter(name: str, kwargs: dict, bad_name: str) -> None:
    beta = kwargs.pop("beta")
    with pytest.raises(ValueError, match=bad_name):
        kl_weight(name, 10, T, beta, **kwargs)


@pytest.mark.parametrize("name", ["constant", "linear", "sigmoid", "cyclical", "capacity"])
def test_bad_progress_raises(name: str) -> None:
    with pytest.raises(ValueError, match="total_steps"):
        kl_weight(name, 0, 0, beta=1.0)
    with pytest.raises(ValueError, match="step=-1"):
        kl_weight(name, -1, T, beta=1.0)


def test_free_bits_floors_each_dimension_at_lambda() -> None:
    # Batch-mean KL per dim: [0.1, 0.5, 2.0]; λ = 0.5 → 0.5 + 0.5 + 2.0.
    kl = torch.tensor([[0.0, 0.4, 1.0], [0.2, 0.6, 3.0]])  # (B=2, D=3)
    assert free_bits_rate(kl, 0.5).item() == pytest.approx(3.0)
    # λ = 0 is the plain rate (mean over batch of the per-example sum).
    assert free_bits_rate(kl, 0.0).item() == pytest.approx(kl.sum(1).mean().item())


def test_free_bits_uses_the_batch_mean_not_per_example_max() -> None:
    # Dim 0 is above λ for one example but its batch mean (0.3) is below λ = 0.5.
    kl = torch.tensor([[0.6], [0.0]])
    assert free_bits_rate(kl, 0.5).item() == pytest.approx(0.5)


def test_free_bits_gradient_is_zero_below_lambda() -> None:
    kl = torch.tensor([[0.1, 2.0, 0.3], [0.1, 1.0, 0.3]], requires_grad=True)
    free_bits_rate(kl, 0.5).backward()
    assert kl.grad is not None
    assert torch.equal(kl.grad[:, 0], torch.zeros(2))
    assert torch.equal(kl.grad[:, 2], torch.zeros(2))
    assert torch.allclose(kl.grad[:, 1], torch.full((2,), 0.5))  # d mean / d KL_b = 1/B


def test_free_bits_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="lam"):
        free_bits_rate(torch.zeros(2, 3), -0.1)
    with pytest.raises(ValueError, match="B, D"):
        free_bits_rate(torch.zeros(3), 0.5)
