"""The MLflow callback's own logic (queue while the tracking store fails, write in order when it
answers, log each epoch once, adopt on restore), with a fake tracker: no Ray run, no MLflow store."""
from __future__ import annotations

import pickle
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

import pytest
from mlflow.exceptions import MlflowException

import search.callback as callback_module
from search import adoption
from search.callback import MlflowTrialCallback
from search.trial_runs import STOPPED_BY_TAG, TrialRunStyle


class _FakeClient:
    def __init__(self, tracker: _FakeTracker) -> None:
        self.tracker = tracker

    def set_terminated(self, run_id: str, status: str) -> None:
        self.tracker._call("end", run_id, status)

    def set_tag(self, run_id: str, key: str, value: str) -> None:
        self.tracker._call("tag", run_id, key, value)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.tracker._call("text", run_id, name)

    def update_run(self, run_id: str, status: str) -> None:
        self.tracker._call("reopen", run_id, status)


@dataclass
class _FakeTracker:
    uri: str = "http://127.0.0.1:1"
    experiment_id: str = "1"
    parent_run_id: str = "parent"
    down: bool = False
    existing: dict[str, int] = field(default_factory=dict)   # trial id -> last step already in MLflow
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = _FakeClient(self)

    def _call(self, *call: Any) -> None:
        if self.down:
            raise MlflowException("API request failed: Connection refused")
        self.calls.append(call)

    def child_run(self, trial_id: str, run_name: str, params: Any) -> tuple[str, bool]:
        self._call("child", trial_id)
        return f"run-{trial_id}", trial_id not in self.existing

    def last_step(self, run_id: str) -> int:
        logged = [c[2] for c in self.calls if c[0] == "epoch" and c[1] == run_id]
        return max([*logged, self.existing.get(run_id.removeprefix("run-"), -1)])

    def log_epoch(self, run_id: str, metrics: Any, step: int) -> None:
        self._call("epoch", run_id, step)

    def log_images(self, run_id: str, directory: str) -> list[str]:
        self._call("images", run_id)
        return []

    def log_step_image(self, run_id: str, path: Any, key: str, step: int) -> None:
        assert path.is_file()
        self._call("image", run_id, key, step)

    def end_child(self, run_id: str, status: str, epochs_completed: int, tags: Any) -> None:
        self._call("ended", run_id, epochs_completed, dict(tags))
        self.client.set_terminated(run_id, status)


@dataclass
class _Trial:
    trial_id: str
    config: dict[str, Any] = field(default_factory=lambda: {"beta": 1.0})
    checkpoint: Any = None
    error_file: str | None = None
    experiment_tag: str = ""
    last_result: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"train_vae_{self.trial_id}"

    def get_error(self) -> str:
        return "NonFiniteLossError: loss is nan"


def _epoch(cb: MlflowTrialCallback, trial: _Trial, step: int) -> None:
    cb.on_trial_result(0, [], trial, {"epoch": step, "val/nelbo": 100.0 - step, "trial_id": trial.trial_id})


def test_events_are_written_in_order() -> None:
    tracker = _FakeTracker()
    cb = MlflowTrialCallback(tracker)  # type: ignore[arg-type]
    trial = _Trial("a")
    cb.on_trial_start(0, [], trial)
    _epoch(cb, trial, 1)
    _epoch(cb, trial, 2)
    cb.on_trial_complete(0, [], trial)
    assert tracker.calls == [("child", "a"), ("epoch", "run-a", 1), ("epoch", "run-a", 2), ("ended", "run-a", 2, {}),
                             ("end", "run-a", "FINISHED")]
    assert not cb.backlog


def test_an_unreachable_store_queues_events_and_the_backlog_is_written_when_it_answers(monkeypatch) -> None:
    clock = [100.0]
    monkeypatch.setattr(callback_module.time, "monotonic", lambda: clock[0])
    tracker = _FakeTracker()
    cb = MlflowTrialCallback(tracker, retry_after_s=10.0)  # type: ignore[arg-type]
    trial = _Trial("a")
    cb.on_trial_start(0, [], trial)
    _epoch(cb, trial, 1)
    tracker.down = True
    _epoch(cb, trial, 2)                      # fails: queued, no exception into Tune
    tracker.down = False
    clock[0] += 5.0
    _epoch(cb, trial, 3)                      # within retry_after_s: not even tried
    assert [e.step for e in cb.backlog] == [2, 3] and ("epoch", "run-a", 2) not in tracker.calls
    clock[0] += 6.0
    cb.on_trial_complete(0, [], trial)        # past retry_after_s: the backlog goes first, in order
    assert tracker.calls[-4:] == [("epoch", "run-a", 2), ("epoch", "run-a", 3), ("ended", "run-a", 3, {}),
                                  ("end", "run-a", "FINISHED")]
    assert not cb.backlog


def test_what_is_still_queued_at_the_end_is_kept_as_a_gap(caplog: pytest.LogCaptureFixture) -> None:
    tracker = _FakeTracker(down=True)
    cb = MlflowTrialCallback(tracker)  # type: ignore[arg-type]
    trial = _Trial("a")
    cb.on_trial_start(0, [], trial)
    _epoch(cb, trial, 1)
    cb.on_trial_error(0, [], trial)
    cb.on_experiment_end([])
    assert [e.kind for e in cb.backlog] == ["start", "epoch", "end"]
    assert "vaesearch sync" in caplog.text
    tracker.down = False
    assert cb.flush(force=True)
    assert ("end", "run-a", "FAILED") in tracker.calls and ("tag", "run-a", "vaesearch.error", "NonFiniteLossError: loss is nan") in tracker.calls


def test_a_restarted_trial_does_not_log_an_epoch_twice() -> None:
    tracker = _FakeTracker(existing={"a": 2})  # MLflow already has epochs 1, 2 of trial a
    cb = MlflowTrialCallback(tracker)  # type: ignore[arg-type]
    trial = _Trial("a")
    cb.on_trial_start(0, [], trial)
    for step in (2, 3, 3, 4):                  # restarted from the epoch-2 checkpoint; 3 reported twice
        _epoch(cb, trial, step)
    assert [c for c in tracker.calls if c[0] == "epoch"] == [("epoch", "run-a", 3), ("epoch", "run-a", 4)]
    assert ("reopen", "run-a", "RUNNING") in tracker.calls  # a found run is running again
    assert cb.epochs_written == 2


def test_replay_writes_only_what_mlflow_lacks() -> None:
    tracker = _FakeTracker(existing={"a": 1})
    cb = MlflowTrialCallback(tracker)  # type: ignore[arg-type]
    results = [{"epoch": s, "val/nelbo": 1.0} for s in (1, 2, 3)]
    assert cb.replay(_Trial("a"), results, status="FINISHED") == 2
    assert cb.replay(_Trial("a"), results, status="FINISHED") == 0  # idempotent
    assert tracker.calls[-1] == ("end", "run-a", "FINISHED")


def test_pickling_keeps_only_where_the_parent_run_is_and_a_resuming_driver_adopts_it(monkeypatch) -> None:
    attached: list[tuple[str, str, str]] = []

    def attach(uri: str, experiment_id: str, parent_run_id: str) -> _FakeTracker:
        attached.append((uri, experiment_id, parent_run_id))
        return _FakeTracker(uri=uri, experiment_id=experiment_id, parent_run_id=parent_run_id)

    monkeypatch.setattr(callback_module.Tracker, "attach", staticmethod(attach))
    original = MlflowTrialCallback(_FakeTracker(parent_run_id="p1"), log_images=False, retry_after_s=3.0)  # type: ignore[arg-type]
    original.backlog.append(callback_module._Event("start", "a"))
    blob = pickle.dumps(original)
    clone = pickle.loads(blob)
    assert attached == [("http://127.0.0.1:1", "1", "p1")]
    assert (clone.log_images, clone.retry_after_s, len(clone.backlog)) == (False, 3.0, 0)

    resuming = MlflowTrialCallback(_FakeTracker(parent_run_id="p1"))  # type: ignore[arg-type]
    resuming.adopt_on_restore()
    try:
        assert pickle.loads(blob) is resuming
    finally:
        adoption.forget("p1")


def test_a_request_written_but_unanswered_is_not_written_twice(monkeypatch) -> None:
    """The connection drops after the server stored epoch 2 but before it answered: the queued
    epoch 2 must not go again."""
    monkeypatch.setattr(callback_module.time, "monotonic", lambda: 1000.0)
    tracker = _FakeTracker()
    cb = MlflowTrialCallback(tracker, retry_after_s=0.0)  # type: ignore[arg-type]
    trial = _Trial("a")
    cb.on_trial_start(0, [], trial)
    _epoch(cb, trial, 1)

    def stored_then_cut(run_id: str, metrics: Any, step: int) -> None:
        tracker.calls.append(("epoch", run_id, step))   # stored by the server...
        raise MlflowException("API request failed: Connection reset by peer")

    monkeypatch.setattr(tracker, "log_epoch", stored_then_cut)
    _epoch(cb, trial, 2)
    monkeypatch.undo()
    monkeypatch.setattr(callback_module.time, "monotonic", lambda: 2000.0)
    _epoch(cb, trial, 3)
    assert [c for c in tracker.calls if c[0] == "epoch"] == [("epoch", "run-a", 1), ("epoch", "run-a", 2), ("epoch", "run-a", 3)]


def test_a_trial_ended_before_its_planned_epochs_is_tagged_with_who_stopped_it() -> None:
    """Finished early (a scheduler's STOP): epochs_completed and vaesearch.stopped_by; ran to the
    end: no tag; failed early: FAILED says why, no stopped_by."""
    tracker = _FakeTracker()
    style = TrialRunStyle(base={"model.encoder": "mlp"}, planned_epochs=3, stopped_by="asha")
    cb = MlflowTrialCallback(tracker, style=style)  # type: ignore[arg-type]
    early, full, broken = _Trial("x_00001"), _Trial("x_00002"), _Trial("x_00003")
    for trial, epochs in ((early, 1), (full, 3), (broken, 1)):
        cb.on_trial_start(0, [], trial)
        for step in range(1, epochs + 1):
            _epoch(cb, trial, step)
    cb.on_trial_complete(0, [], early)
    cb.on_trial_complete(0, [], full)
    cb.on_trial_error(0, [], broken)
    ended = {c[1]: (c[2], c[3]) for c in tracker.calls if c[0] == "ended"}
    assert ended == {"run-x_00001": (1, {STOPPED_BY_TAG: "asha"}), "run-x_00002": (3, {}), "run-x_00003": (1, {})}


def test_child_runs_are_named_and_carry_the_effective_config() -> None:
    created: list[tuple[str, dict[str, Any]]] = []
    tracker = _FakeTracker()
    tracker.child_run = lambda trial_id, name, params: (created.append((name, dict(params))) or (f"run-{trial_id}", True))  # type: ignore[method-assign]
    style = TrialRunStyle(base={"model.encoder": "mlp", "model.decoder": "mlp_small", "train.beta": 1.0})
    cb = MlflowTrialCallback(tracker, style=style)  # type: ignore[arg-type]
    cb.on_trial_start(0, [], _Trial("ab12_00007", config={"decoder": "deconv_4x4", "beta": 0.512}))
    cb.on_trial_start(0, [], _Trial("5f3e", config={"decoder": "mlp"}, experiment_tag="12_decoder=mlp"))
    [(name, params), (searched_name, _)] = created
    assert (name, searched_name) == ("t07 deconv_4x4 β=0.512", "t12 mlp")
    assert params == {"model.encoder": "mlp", "model.decoder": "deconv_4x4", "train.beta": 0.512,
                      "decoder": "deconv_4x4", "beta": 0.512}


@dataclass
class _Checkpoint:
    path: Any

    @contextmanager
    def as_directory(self) -> Iterator[str]:
        yield str(self.path)


def test_reconstructions_are_logged_with_a_step_every_few_epochs_and_once(tmp_path) -> None:
    (tmp_path / "reconstructions.png").write_bytes(b"png")
    tracker = _FakeTracker()
    cb = MlflowTrialCallback(tracker, style=TrialRunStyle(planned_epochs=16))  # type: ignore[arg-type]
    assert cb.style.image_every == 2
    trial = _Trial("a")
    for epoch in (1, 2, 3, 4, 4):   # epoch 4 saved twice (a restart): one image
        trial.last_result = {"epoch": epoch}
        cb.on_checkpoint(0, [], trial, _Checkpoint(tmp_path))
    assert [c for c in tracker.calls if c[0] == "image"] == [("image", "run-a", "reconstructions", 2),
                                                              ("image", "run-a", "reconstructions", 4)]
    off = MlflowTrialCallback(_FakeTracker(), log_images=False, style=TrialRunStyle(planned_epochs=16))  # type: ignore[arg-type]
    off.on_checkpoint(0, [], trial, _Checkpoint(tmp_path))
    assert not off.backlog and not off.tracker.calls


class _GatedTracker(_FakeTracker):
    """Each epoch write waits for ``gate``: a tracking server that answers slowly."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = threading.Event()

    def log_epoch(self, run_id: str, metrics: Any, step: int) -> None:
        assert self.gate.wait(timeout=30), "the test never opened the gate"
        super().log_epoch(run_id, metrics, step)


def test_background_writes_keep_tunes_loop_from_waiting_and_keep_the_order() -> None:
    tracker = _GatedTracker()
    cb = MlflowTrialCallback(tracker, background=True)  # type: ignore[arg-type]
    trials = [_Trial("a"), _Trial("b")]
    t0 = time.monotonic()
    for trial in trials:
        cb.on_trial_start(0, [], trial)
    for step in (1, 2, 3):
        for trial in trials:
            _epoch(cb, trial, step)       # the writer is stuck on the first epoch; Tune's loop goes on
    loop_seconds = time.monotonic() - t0
    assert loop_seconds < 5 and len(cb.backlog) >= 6, (loop_seconds, len(cb.backlog))
    for trial in trials:
        cb.on_trial_complete(0, [], trial)
    tracker.gate.set()
    cb.on_experiment_end([])              # stops the writer and writes what is left
    assert not cb.backlog and cb._writer is None
    expected = [("child", "a"), ("child", "b")] + [("epoch", f"run-{t}", s) for s in (1, 2, 3) for t in "ab"] + [
        ("ended", "run-a", 3, {}), ("end", "run-a", "FINISHED"), ("ended", "run-b", 3, {}), ("end", "run-b", "FINISHED")]
    assert tracker.calls == expected


def test_the_background_writer_retries_an_unreachable_store_by_itself() -> None:
    tracker = _FakeTracker(down=True)
    cb = MlflowTrialCallback(tracker, retry_after_s=0.05, background=True)  # type: ignore[arg-type]
    trial = _Trial("a")
    cb.on_trial_start(0, [], trial)
    _epoch(cb, trial, 1)
    deadline = time.monotonic() + 10
    while cb._failing_since is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert cb._failing_since is not None and [e.kind for e in cb.backlog] == ["start", "epoch"]
    tracker.down = False                  # no new event: the writer's own retry writes the queue
    while cb.backlog and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not cb.backlog and tracker.calls == [("child", "a"), ("epoch", "run-a", 1)]
    cb.on_experiment_end([])


def test_a_background_callback_pickles_its_mode(monkeypatch) -> None:
    tracker = _FakeTracker()
    monkeypatch.setattr(callback_module.Tracker, "attach", staticmethod(lambda *a: tracker))
    cb = MlflowTrialCallback(tracker, background=True)  # type: ignore[arg-type]
    restored = pickle.loads(pickle.dumps(cb))
    assert restored.background and restored._writer is None
