"""Which trial errors a retry cannot fix, as Tune hands them to the driver (inside RayTaskError).
That such a trial then ends after one try is checked in real Tune: test_run_integration.py."""
from __future__ import annotations

from ray.exceptions import RayActorError, RayTaskError

from search.retries import is_deterministic, one_line
from trainables.divergence import DivergenceError
from trainables.train_loop import NonFiniteLossError


def _from_worker(cause: BaseException) -> RayTaskError:
    return RayTaskError("train", "Traceback (most recent call last): ...", cause)


def test_errors_a_retry_repeats_are_told_from_those_it_can_fix() -> None:
    for cause in (NonFiniteLossError("non-finite training loss at step 3"), DivergenceError("diverged: ..."),
                  ValueError("n_cycles must be an integer >= 1"), TypeError("bad argument")):
        assert is_deterministic(_from_worker(cause)), cause
    assert not is_deterministic(_from_worker(RuntimeError("CUDA out of memory")))  # another GPU may have room
    assert not is_deterministic(RayActorError())                                     # a lost worker or node
    assert one_line(_from_worker(NonFiniteLossError("non-finite training loss\nmore"))) == \
        "NonFiniteLossError: non-finite training loss"
