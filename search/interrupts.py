"""Telling a run stopped by Ctrl-C or SIGTERM from one that finished.

Ray Tune catches the first SIGINT itself: it saves the experiment state and returns from
``fit()`` as if the run were over (the trials it stopped look TERMINATED). :class:`InterruptWatch`
(a Tune callback) wraps Tune's handler once Tune has installed it, and notes the signal;
:func:`watching` makes SIGTERM (what ``kill`` and cluster schedulers send) do the same.
The driver asks :func:`interrupted` after ``fit()``.
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ray.tune import Callback

_SIGNALLED = threading.Event()


def interrupted() -> bool:
    """Whether SIGINT or SIGTERM stopped the run since :func:`watching` began."""
    return _SIGNALLED.is_set()


class InterruptWatch(Callback):
    """Notes the SIGINT Tune handles. Tune installs its handler when ``fit()`` starts and before it
    sets up the callbacks, so ``setup`` wraps it (only the main thread can set handlers)."""

    def setup(self, **info: Any) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        tune_handler = signal.getsignal(signal.SIGINT)

        def note_then_tune(signum: int, frame: Any) -> None:
            _SIGNALLED.set()
            if callable(tune_handler):
                tune_handler(signum, frame)
            else:
                raise KeyboardInterrupt

        signal.signal(signal.SIGINT, note_then_tune)


@contextmanager
def watching() -> Iterator[None]:
    """For the block: forget any earlier signal, and let SIGTERM stop the run as Ctrl-C does."""
    _SIGNALLED.clear()
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def sigterm(signum: int, frame: Any) -> None:
        _SIGNALLED.set()
        signal.raise_signal(signal.SIGINT)

    previous = signal.signal(signal.SIGTERM, sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
