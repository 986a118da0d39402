"""What every mode supplies to the driver, and what every run's summary says.

A mode (single-objective search, bandit allocation, shared encoder) is a small class: its
trainable (with the typed spec bound), Tune's param space and ``TuneConfig`` (searcher,
scheduler), the progress table's columns, any extra Tune callbacks, and :meth:`Mode.finish`,
which turns the results into the summary and writes the mode's own MLflow records (best trial,
plots, tables). Everything else (tracking, the parent run, the experiment record, the Tuner and
its failure/checkpoint policy, resume) is the driver's (``search/driver.py``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Callable, ClassVar

from ray.tune import Callback, ResultGrid, TuneConfig

from search.config import Config
from search.tracking import Tracker
from search.trial_runs import TrialRunStyle


@dataclass
class RunContext:
    """One run as the driver started (or resumed) it."""

    config: Config
    tracker: Tracker
    experiment_path: str   # Tune's experiment directory (local path or URI)
    verbose: int = 1

    @property
    def parent_run_id(self) -> str:
        return self.tracker.parent_run_id or ""


@dataclass(kw_only=True)
class RunSummary:
    """Where a run was recorded; each mode's summary adds what it found."""

    experiment_path: str
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    tracking_gap: int = 0   # MLflow events still unwritten at the end (tracking server unreachable)

    @classmethod
    def location(cls, run: RunContext) -> dict[str, str]:
        """The location fields, for a mode's summary constructor."""
        tracker = run.tracker
        return {"experiment_path": run.experiment_path, "tracking_uri": tracker.uri,
                "experiment_id": tracker.experiment_id, "parent_run_id": run.parent_run_id}

    @property
    def ok(self) -> bool:
        """Whether the run produced its answer (the CLI's exit code 0)."""
        return True

    def describe(self) -> str:
        raise NotImplementedError

    def location_lines(self) -> list[str]:
        return [f"Tune results: {self.experiment_path}", self.parent_run_line(), *self.gap_lines()]

    def parent_run_line(self) -> str:
        return f"MLflow parent run: {self.parent_run_id} (experiment {self.experiment_id}) at {self.tracking_uri}"

    def gap_lines(self) -> list[str]:
        if not self.tracking_gap:
            return []
        return [f"MLflow is missing {self.tracking_gap} trial event(s) (the tracking server was unreachable); "
                f"every result is in Tune's storage: `vaesearch sync {self.experiment_path}` writes them"]


@dataclass(kw_only=True)
class InterruptedSummary(RunSummary):
    """A run stopped by Ctrl-C or SIGTERM before its trials ended: nothing was finalised (no best
    trial, no model registered); ``vaesearch resume`` finishes it."""

    trials: int      # trials Tune had created
    ended: int       # of which TERMINATED or ERROR

    @property
    def ok(self) -> bool:
        return False

    def describe(self) -> str:
        lines = [f"interrupted: {self.ended} of {self.trials} trial(s) had ended; nothing was registered",
                 *self.location_lines(),
                 f"resume with: vaesearch resume {self.experiment_path}"]
        return "\n".join(lines)


class Mode(ABC):
    """What differs between the run modes; built from the validated config."""

    role: ClassVar[str]   # the parent run's vaesearch.role tag and the experiment record's role

    def __init__(self, config: Config) -> None:
        self.config = config

    @abstractmethod
    def trainable(self) -> Callable[..., Any]:
        """The function trainable with its spec bound (``tune.with_parameters``)."""

    def param_space(self) -> dict[str, Any]:
        """Tune's param space (grid values); a searcher-driven mode leaves it empty."""
        return {}

    @abstractmethod
    def tune_config(self, run: RunContext) -> TuneConfig:
        """Metric, mode, searcher, scheduler and trial counts."""

    @abstractmethod
    def progress_columns(self) -> tuple[list[str], dict[str, str]]:
        """The progress table's parameter columns and metric columns (key -> header)."""

    def trial_runs(self) -> TrialRunStyle:
        """How the MLflow callback names and describes this mode's child runs, and who stops a
        trial before its planned epochs."""
        return TrialRunStyle.of(self.config, planned_epochs=self.config.train.epochs, stopped_by="scheduler")

    def searched_keys(self) -> list[str]:
        """The trial config keys this mode samples or grids (what its trials override)."""
        return []

    def callbacks(self, run: RunContext) -> list[Callback]:
        """Tune callbacks beside the MLflow one (called once per start or resume)."""
        return []

    def on_restore(self, run: RunContext) -> None:
        """Before ``Tuner.restore``: register what the restored experiment should adopt."""

    @abstractmethod
    def finish(self, results: ResultGrid, run: RunContext) -> RunSummary:
        """The run's summary, with this mode's MLflow records written to the parent run."""
