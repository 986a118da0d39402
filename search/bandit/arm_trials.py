"""The arm trials of the allocation bandit, as Tune's search algorithm.

A grid over arms × seeds, like Tune's default :class:`BasicVariantGenerator`, except that it does
not call itself finished while the :class:`~search.bandit.scheduler.BanditAllocationScheduler`
may still resume a paused arm. Tune keeps (``reuse_actors``) the worker process of a paused trial
only while the search is not over; with the default generator every pull after the first started
a new worker process (about 10 s each on 2 cores, measured in ``benchmarks/README.md``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ray.tune.search import BasicVariantGenerator

if TYPE_CHECKING:
    from search.bandit.scheduler import BanditAllocationScheduler


class ArmTrials(BasicVariantGenerator):
    """Pass as ``TuneConfig(search_alg=ArmTrials(scheduler), reuse_actors=True)``."""

    def __init__(self, scheduler: BanditAllocationScheduler) -> None:
        super().__init__()
        self._scheduler = scheduler

    def is_finished(self) -> bool:
        return super().is_finished() and not self._scheduler.may_resume()

    def get_state(self) -> dict[str, Any] | bool:
        state = super().get_state()
        if isinstance(state, dict):
            state.pop("_scheduler", None)  # the scheduler persists itself (SchedulerStateCallback)
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        scheduler = self._scheduler
        super().set_state(state)
        self._scheduler = scheduler
