"""Ray Tune callback (driver side) that mirrors every trial into a nested MLflow child run.

It survives the tracking server going away: an MLflow call that fails queues that event (and
everything after it, in order) instead of raising into Tune's loop; training goes on, every
result stays in Tune's storage, and the backlog is written when the server answers again
(retried at most every ``retry_after_s`` and once more at the end of the experiment). Whatever is
still queued at the end is reported as a gap (``vaesearch sync`` fills it from Tune's storage).

With ``background=True`` (what the driver uses) one writer thread applies the queue, so Tune's
loop never waits on MLflow: it only appends to the queue. Order is the queue's order (one writer);
while the store fails, the writer retries every ``retry_after_s`` by itself, new events or not.
The end of the experiment stops the writer and writes what is left, as before.

Epochs are logged at most once per child run: a trial restarted from its checkpoint (lost node,
resumed driver) reports epochs again, and steps at or below the last one logged are skipped; after
a failed request (which the server may have written, its answer lost) the run is asked again for
its last step before the queue is written.

The callback is pickled into Tune's experiment state (``tuner.pkl``); it pickles only where its
parent run lives, so a restored experiment (``vaesearch resume``) logs into the same parent run,
through the callback the resuming driver adopted (:meth:`MlflowTrialCallback.adopt_on_restore`).
"""
from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from mlflow.entities import RunStatus
from mlflow.exceptions import MlflowException
from ray.tune import Callback
from ray.tune.experiment import Trial
from requests.exceptions import RequestException

from search.adoption import adopt, adopted
from search.tracking import IMAGE_FILES, Tracker, error_summary, numeric_metrics
from search.trial_runs import TrialRunStyle

log = logging.getLogger(__name__)

#: What an unreachable or failing tracking store raises.
TRACKING_ERRORS = (MlflowException, RequestException, OSError)


@dataclass
class _Event:
    """One thing to write for one trial; applied in order."""

    kind: str                      # start | epoch | images | step_image | end
    trial_id: str
    run_name: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    metrics: Mapping[str, float] = field(default_factory=dict)
    step: int = 0
    directory: str | None = None   # images: a copy owned by the callback
    status: str = "FINISHED"
    error: str = ""


class MlflowTrialCallback(Callback):
    def __init__(self, tracker: Tracker, log_images: bool = True, retry_after_s: float = 20.0,
                 style: TrialRunStyle | None = None, background: bool = False) -> None:
        self.tracker = tracker
        self.background = background
        self.style = style or TrialRunStyle()   # child runs' names, params, why a trial ended early
        self.log_images = log_images
        self.retry_after_s = retry_after_s
        self.run_ids: dict[str, str] = {}
        self.last_step: dict[str, int] = {}         # run id -> last epoch logged
        self.backlog: deque[_Event] = deque()
        self.epochs_written = 0
        self._failing_since: float | None = None
        self._last_try = 0.0
        self._scratch: str | None = None            # image copies of queued events
        self._unsure: set[str] = set()              # runs whose last step must be asked again
        self._image_steps: dict[str, set[int]] = {}  # run id -> epochs whose reconstructions are logged
        self._flushing = threading.Lock()           # one flush at a time: the writer's or the driver's
        self._wake = threading.Event()
        self._writer: threading.Thread | None = None
        self._stopping = False

    # --- pickling into Tune's experiment state -----------------------------------------------
    def __reduce__(self) -> tuple[Any, tuple[dict[str, Any]]]:
        state = {"uri": self.tracker.uri, "experiment_id": self.tracker.experiment_id,
                 "parent_run_id": self.tracker.parent_run_id, "log_images": self.log_images,
                 "retry_after_s": self.retry_after_s, "style": self.style, "background": self.background}
        return _unpickle, (state,)

    def adopt_on_restore(self) -> None:
        """Make this instance the one a restored experiment (with the same parent run) unpickles,
        so the driver that resumes holds the callback Tune calls."""
        adopt(_KIND, self.tracker.parent_run_id or "", self)

    # --- Tune events ---------------------------------------------------------------------------
    def _event(self, kind: str, trial: Any, **fields: Any) -> _Event:
        """An event of ``trial`` (a Tune ``Trial``, or what replay knows of one)."""
        config = dict(trial.config)
        return _Event(kind, trial.trial_id, params=self.style.params(config), **fields,
                      run_name=self.style.run_name(trial.trial_id, config, getattr(trial, "experiment_tag", "") or ""))

    def on_trial_start(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._submit(self._event("start", trial))

    def on_trial_result(self, iteration: int, trials: list[Trial], trial: Trial, result: dict, **info: Any) -> None:
        metrics = numeric_metrics(result)
        if metrics:
            step = int(result.get("epoch", result.get("training_iteration", 0)))
            self._submit(self._event("epoch", trial, metrics=metrics, step=step))

    def on_checkpoint(self, iteration: int, trials: list[Trial], trial: Trial, checkpoint: Any, **info: Any) -> None:
        """Every ``style.image_every`` epochs, the reconstructions of that epoch's checkpoint as
        an MLflow image with ``step=epoch`` (the UI's slider shows how they improved)."""
        every = self.style.image_every
        epoch = int((trial.last_result or {}).get("epoch", 0) or 0)
        if not self.log_images or not every or epoch < 1 or epoch % every:
            return
        try:
            with checkpoint.as_directory() as directory:
                copy = self.copy_images(directory, names=(STEP_IMAGE,))
        except OSError as exc:  # a missing image must not take the search down
            log.warning("could not read the images of %s: %s", trial, exc)
            return
        if copy is not None:
            self._submit(self._event("step_image", trial, directory=copy, step=epoch))

    def on_trial_complete(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        if self.log_images and trial.checkpoint is not None:
            try:
                with trial.checkpoint.as_directory() as directory:
                    self._submit(self._event("images", trial,
                                             directory=self.copy_images(directory)))
            except OSError as exc:  # a missing image must not take the search down
                log.warning("could not read the images of %s: %s", trial, exc)
        self._submit(self._event("end", trial))

    def on_trial_error(self, iteration: int, trials: list[Trial], trial: Trial, **info: Any) -> None:
        self._submit(self._event("end", trial,
                                 status=RunStatus.to_string(RunStatus.FAILED), error=_read_error(trial)))

    def on_experiment_end(self, trials: list[Trial], **info: Any) -> None:
        self.stop_writer()
        self.flush(force=True)
        if self.backlog:
            log.warning("%d MLflow event(s) could not be written (tracking server unreachable); every result is "
                        "in Tune's storage: `vaesearch sync EXPERIMENT_PATH` writes them when the server is back",
                        len(self.backlog))

    # --- the queue -----------------------------------------------------------------------------
    def _submit(self, event: _Event) -> None:
        self.backlog.append(event)
        if not self.background:
            self.flush()
            return
        if self._writer is None or not self._writer.is_alive():
            self._stopping = False
            self._writer = threading.Thread(target=self._write_in_background, name="vaesearch-mlflow-writer",
                                            daemon=True)
            self._writer.start()
        self._wake.set()

    def _write_in_background(self) -> None:
        while True:
            # Woken by each new event; while the store fails, also every retry_after_s (flush waits that long).
            self._wake.wait(timeout=self.retry_after_s if self._failing_since is not None else None)
            self._wake.clear()
            if self._stopping:
                return
            try:
                self.flush()
            except Exception:  # noqa: BLE001 - the writer must outlive any one bad event; the driver writes at the end
                log.exception("the MLflow writer thread failed on an event; it is written again at the end")

    def stop_writer(self) -> None:
        """Stop the background writer after the write in progress (the caller writes what is left)."""
        writer, self._writer = self._writer, None
        if writer is not None:
            self._stopping = True
            self._wake.set()
            writer.join()

    def flush(self, force: bool = False) -> bool:
        """Write the queued events in order; stop at the first failure. True when none is left."""
        with self._flushing:
            return self._flush(force)

    def _flush(self, force: bool) -> bool:
        if self._failing_since is not None and not force and time.monotonic() - self._last_try < self.retry_after_s:
            return False
        while self.backlog:
            event = self.backlog[0]
            try:
                self._apply(event)
            except TRACKING_ERRORS as exc:
                # A request cut mid-way may have been written all the same (its answer lost): before
                # an epoch goes again, ask the run what it already holds (see _apply).
                self._unsure.update(self.run_ids.values())
                self._last_try = time.monotonic()
                if self._failing_since is None:
                    self._failing_since = self._last_try
                    log.warning("MLflow tracking store %s failed (%s); training goes on, results are queued and "
                                "kept in Tune's storage; retrying every %.0f s", self.tracker.uri,
                                error_summary(str(exc)), self.retry_after_s)
                return False
            self.backlog.popleft()
            if event.directory is not None:
                shutil.rmtree(event.directory, ignore_errors=True)
        if self._failing_since is not None:
            log.warning("MLflow tracking store %s answers again: the queued results are written", self.tracker.uri)
            self._failing_since = None
        return True

    def _apply(self, event: _Event) -> None:
        run_id = self._run_id(event)
        client = self.tracker.client
        if event.kind == "epoch":
            if run_id in self._unsure:
                self.last_step[run_id] = max(self.last_step.get(run_id, -1), self.tracker.last_step(run_id))
                self._unsure.discard(run_id)
            if event.step > self.last_step.get(run_id, -1):
                self.tracker.log_epoch(run_id, event.metrics, event.step)
                self.last_step[run_id] = event.step
                self.epochs_written += 1
        elif event.kind == "images" and event.directory is not None:
            self.tracker.log_images(run_id, event.directory)
        elif event.kind == "step_image" and event.directory is not None:
            logged = self._image_steps.setdefault(run_id, set())
            if event.step not in logged:   # a restarted trial reports an epoch again
                self.tracker.log_step_image(run_id, Path(event.directory) / STEP_IMAGE, STEP_IMAGE_KEY, event.step)
                logged.add(event.step)
        elif event.kind == "end":
            if event.error:
                client.set_tag(run_id, "vaesearch.error", error_summary(event.error)[:5000])
                if "DivergenceError" in event.error:  # finite but far above any model of the data
                    client.set_tag(run_id, "vaesearch.diverged", "true")
                client.log_text(run_id, event.error, "error.txt")
            epochs = self.last_step.get(run_id, -1)
            ended_well = event.status == RunStatus.to_string(RunStatus.FINISHED)
            self.tracker.end_child(run_id, event.status, epochs, self.style.end_tags(epochs) if ended_well else {})

    def _run_id(self, event: _Event) -> str:
        """The trial's child run: created once, found again by its trial-id tag after a restart."""
        if event.trial_id not in self.run_ids:
            run_id, created = self.tracker.child_run(event.trial_id, event.run_name, event.params)
            if not created:
                self.last_step[run_id] = self.tracker.last_step(run_id)
                self.tracker.client.update_run(run_id, status="RUNNING")
            self.run_ids[event.trial_id] = run_id
        return self.run_ids[event.trial_id]

    def replay(self, trial: Any, results: list[Mapping[str, Any]], *, status: str | None, images: str | None = None,
               error: str = "") -> int:
        """Feed one stored trial (``trial_id``, ``config`` and ``experiment_tag`` of Tune's stored
        trial; its results in order) through the queue, as the live events would have; returns
        how many epochs were new to MLflow. ``status`` None: still running."""
        before = self.epochs_written
        self._submit(self._event("start", trial))
        for result in results:
            metrics = numeric_metrics(result)
            if metrics:
                step = int(result.get("epoch", result.get("training_iteration", 0)))
                self._submit(self._event("epoch", trial, metrics=metrics, step=step))
        if images is not None:
            self._submit(self._event("images", trial, directory=images))
        if status is not None:
            self._submit(self._event("end", trial, status=status, error=error))
        return self.epochs_written - before

    def copy_images(self, directory: str, names: tuple[str, ...] = IMAGE_FILES) -> str | None:
        """The checkpoint directory is Tune's (and may be gone by the time a queued event is
        written): keep a copy of the images until they are logged."""
        if self._scratch is None:
            self._scratch = tempfile.mkdtemp(prefix="vaesearch-images-")
        target = Path(tempfile.mkdtemp(dir=self._scratch))
        found = False
        for name in names:
            if (Path(directory) / name).is_file():
                shutil.copy2(Path(directory) / name, target / name)
                found = True
        return str(target) if found else None


_KIND = "mlflow-callback"
STEP_IMAGE, STEP_IMAGE_KEY = IMAGE_FILES[0], "reconstructions"   # reconstructions.png, logged with a step


def _unpickle(state: dict[str, Any]) -> MlflowTrialCallback:
    def rebuild() -> MlflowTrialCallback:
        tracker = Tracker.attach(state["uri"], state["experiment_id"], state["parent_run_id"])
        return MlflowTrialCallback(tracker, log_images=state["log_images"], retry_after_s=state["retry_after_s"],
                                   style=state.get("style"), background=state.get("background", False))

    return adopted(_KIND, state["parent_run_id"] or "", rebuild)


def _read_error(trial: Trial) -> str:
    # The driver writes the error file locally first (it reaches Tune's storage later).
    path = trial.error_file
    if path and Path(path).is_file():
        return Path(path).read_text(errors="replace")
    return str(trial.get_error() or "")
