"""Retry only what a retry can fix, and say each trial failure in one line.

Tune retries every failed trial up to ``FailureConfig(max_failures)``: right for a lost node or a
killed worker, wasted for an error the same trial raises every time: a diverging loss
(:class:`~trainables.train_loop.NonFiniteLossError`, or finite but far above any model of the data:
:class:`~trainables.divergence.DivergenceError`) or a setting that cannot run (``ValueError``,
``TypeError``). Tune has no per-error rule, so :class:`RetryOnlyWhatCanSucceed` (a Tune callback)
gives each trial, as it starts, the one method that decides: :meth:`_TrialWithErrorKinds.should_recover`
says no after a deterministic error, and the trial ends ERROR at once (searcher, scheduler and
the MLflow callback told as for any failed trial).

Tune also logs each trial error with its whole traceback; the driver turns that off
(``TUNE_PRINT_ALL_TRIAL_ERRORS=0``) and this callback prints one line per failure instead. The
traceback stays in the trial's ``error.txt`` and in the MLflow child run (tag ``vaesearch.error``).
"""
from __future__ import annotations

import sys
from typing import Any

from ray.exceptions import RayTaskError
from ray.tune import Callback
from ray.tune.experiment import Trial

from trainables.divergence import DivergenceError
from trainables.train_loop import NonFiniteLossError

#: What a trial raises the same way on every try.
DETERMINISTIC_ERRORS: tuple[type[BaseException], ...] = (NonFiniteLossError, DivergenceError, ValueError, TypeError)


def root_cause(exc: BaseException | None) -> BaseException | None:
    """The trainable's own exception inside Ray's wrapper (``RayTaskError``)."""
    if isinstance(exc, RayTaskError):
        return exc.as_instanceof_cause()
    return exc


def is_deterministic(exc: BaseException | None) -> bool:
    return isinstance(root_cause(exc), DETERMINISTIC_ERRORS)


def one_line(exc: BaseException | None) -> str:
    """``ErrorType: first line of the message`` of the trainable's exception."""
    cause = root_cause(exc)
    if cause is None:
        return "unknown error"
    if isinstance(cause, RayTaskError):  # the cause's own class name, not Ray's dual class
        name, text = cause.cause.__class__.__name__, str(cause.cause)
    else:
        name, text = type(cause).__name__, str(cause)
    first = text.strip().splitlines()[0] if text.strip() else ""
    return f"{name}: {first}" if first else name


class _TrialWithErrorKinds(Trial):
    """A Tune trial that is not recovered after a deterministic error."""

    def handle_error(self, exc: Any = None) -> None:
        super().handle_error(exc)
        self.vaesearch_last_error = one_line(exc)
        self.vaesearch_deterministic = is_deterministic(exc)

    def should_recover(self) -> bool:
        return not getattr(self, "vaesearch_deterministic", False) and super().should_recover()


class RetryOnlyWhatCanSucceed(Callback):
    """Installs the decision on every trial as it starts; one line per trial failure."""

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if type(trial) is Trial:
            trial.__class__ = _TrialWithErrorKinds

    def on_trial_recover(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        failures = trial.run_metadata.num_failures
        _say(f"trial {trial} failed ({getattr(trial, 'vaesearch_last_error', 'error')}); retrying from its last "
             f"checkpoint ({failures} of {trial.max_failures} retries)")

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        why = ("not retried: it fails the same way every time" if getattr(trial, "vaesearch_deterministic", False)
               else "no retries left")
        where = f"; traceback: {trial.local_path}/error.txt" if trial.local_path else ""
        _say(f"trial {trial} failed: {getattr(trial, 'vaesearch_last_error', 'error')} ({why}{where})")


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
