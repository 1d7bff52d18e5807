"""The one "load on a worker, keep only the newest result" helper (gui/worker.py LatestLoader)."""
import threading

from balancelab.gui.worker import LatestLoader


def _gate_call(gate: threading.Event, value, started: list | None = None):
    def fn():
        if started is not None:
            started.append(value)
        gate.wait(10)
        return value
    return fn


def test_a_superseded_load_is_dropped_and_the_newest_is_delivered(qtbot):
    loader = LatestLoader()
    got, failed = [], []
    slow, fast = threading.Event(), threading.Event()
    fast.set()
    loader.load("runs", _gate_call(slow, "old"), got.append, failed.append)
    loader.load("runs", _gate_call(fast, "new"), got.append, failed.append)
    qtbot.waitUntil(lambda: got == ["new"], timeout=5000)
    assert loader.waiting("runs") is False
    slow.set()  # the old call ends after the new one: its result must not overwrite it
    qtbot.waitUntil(lambda: not loader.busy(), timeout=5000)
    qtbot.wait(50)
    assert got == ["new"] and failed == []


def test_keys_are_independent_and_failures_reach_on_failed(qtbot):
    loader = LatestLoader(errors=(ValueError,))
    got, failed = [], []

    def bad():
        raise ValueError("damaged run")

    loader.load("run", bad, got.append, failed.append)
    loader.load("compare", lambda: 2, got.append, failed.append)
    qtbot.waitUntil(lambda: not loader.busy(), timeout=5000)
    assert got == [2] and failed == ["damaged run"]


def test_serial_runs_one_call_at_a_time_and_skips_the_middle_requests(qtbot):
    loader = LatestLoader(serial=True)
    got, started = [], []
    gate = threading.Event()
    for i in range(5):  # clicking through five images while the first still computes
        loader.load("cam", _gate_call(gate, i, started), got.append, lambda m: None)
    qtbot.wait(100)
    assert started == [0]  # never two at once
    gate.set()
    qtbot.waitUntil(lambda: not loader.busy(), timeout=5000)
    assert started == [0, 4] and got == [4]  # the first ran, its result was superseded; only the last followed


def test_cancel_drops_a_running_call_and_a_waiting_one(qtbot):
    loader = LatestLoader(serial=True)
    got, started = [], []
    gate = threading.Event()
    loader.load("maps", _gate_call(gate, "a", started), got.append, lambda m: None)
    loader.load("maps", _gate_call(gate, "b", started), got.append, lambda m: None)
    loader.cancel("maps")
    assert not loader.waiting()
    gate.set()
    loader.shutdown()
    qtbot.wait(100)
    assert started == ["a"] and got == []


def test_a_thread_stays_busy_until_its_last_events_reached_the_gui_thread(qtbot):
    """``isRunning()`` turns False before the queued events are handled; a view asking it would
    start new work while the old result is still on its way (CI saw a rescan overwritten so)."""
    from balancelab.engine.core.events import Finished
    from balancelab.gui.worker import GeneratorThread

    got = []

    def job(stop):
        yield Finished("old result")

    thread = GeneratorThread(job)
    thread.event.connect(got.append)
    thread.start()
    assert thread.wait(5000) and not thread.isRunning()
    assert thread.is_busy() and got == []  # the GUI thread has not handled the events yet
    qtbot.waitUntil(lambda: not thread.is_busy(), timeout=5000)
    assert [ev.result for ev in got] == ["old result"]


def test_a_thread_the_system_refused_is_not_busy_and_says_so(qtbot, monkeypatch):
    """If no thread can be created Qt only logs it and never emits finished: the view must not
    think a task runs forever (Start refused, Stop dead)."""
    from PySide6.QtCore import QThread

    from balancelab.engine.core.events import Failed
    from balancelab.gui.worker import GeneratorThread, running_threads

    got = []
    monkeypatch.setattr(QThread, "start", lambda self, *args: None)  # what a failed pthread_create looks like
    thread = GeneratorThread(lambda stop: iter(()))
    thread.event.connect(got.append)
    thread.start()
    assert not thread.is_busy() and thread not in running_threads()
    assert len(got) == 1 and isinstance(got[0], Failed) and "could not start" in got[0].message


def test_throttled_run_steps_still_deliver_every_run_end_and_epoch_end(qtbot):
    """Batch progress of a multi-run task may be thinned out; the end of each run (what the time
    left is computed from) and each epoch end may not."""
    from balancelab.engine.core.events import Finished, RunStep
    from balancelab.engine.train.run_events import BatchProgress, EpochEnd
    from balancelab.gui.worker import GeneratorThread

    def task(stop):
        for run in range(4):
            for batch in range(1, 201):
                yield RunStep(f"run {run}", run, 4, BatchProgress(1, batch, 200, 0.5, 1.0, 1.0))
            yield RunStep(f"run {run}", run, 4, EpochEnd(1, {}, False))
            yield RunStep(f"run {run}", run, 4, Finished(None))
        yield Finished("done")

    got = []
    thread = GeneratorThread(task, throttle=(RunStep,), interval=0.1)
    thread.event.connect(got.append)
    thread.start()
    qtbot.waitUntil(lambda: not thread.is_busy(), timeout=10000)
    steps = [e for e in got if isinstance(e, RunStep)]
    assert [e.index for e in steps if isinstance(e.event, Finished)] == [0, 1, 2, 3]
    assert [e.index for e in steps if isinstance(e.event, EpochEnd)] == [0, 1, 2, 3]
    assert len(steps) < 100  # the 800 batch events were thinned out


def test_a_bug_in_a_call_is_an_unexpected_error_with_its_traceback_logged(qtbot, caplog):
    """The default caught every Exception and handed on its message alone: a bug in export or
    Grad-CAM read like a user's bad input, and its traceback was lost."""
    from balancelab.engine.train.run_folder import RunError

    loader = LatestLoader()
    failed: list[str] = []

    def buggy():
        return {}["missing"]

    def refused():
        raise RunError("metrics.json is damaged")

    with caplog.at_level("ERROR", logger="balancelab"):
        loader.load("a", buggy, failed.append, failed.append)
        qtbot.waitUntil(lambda: not loader.busy(), timeout=5000)
        loader.load("b", refused, failed.append, failed.append)
        qtbot.waitUntil(lambda: not loader.busy(), timeout=5000)
    assert failed == ["unexpected error: 'missing'", "metrics.json is damaged"]
    assert any("KeyError" in (r.exc_text or "") or r.exc_info for r in caplog.records)
