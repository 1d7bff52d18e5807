"""Run engine generators on a worker thread and deliver their events through queued signals.

Widgets are never touched from the worker: ``GeneratorThread.event`` is emitted in the worker
thread and, because the receivers live in the GUI thread, Qt queues the call to them.
High-rate events (batch progress) are throttled so the GUI thread is never flooded; a phase
starting or ending (``urgent``) is always delivered at once.
"""
from __future__ import annotations

import logging
import time
import traceback
from typing import Callable

from PySide6.QtCore import QObject, QThread, Signal

from balancelab.engine.core.events import EventStream, Failed, Finished, StopToken
from balancelab.engine.core.refusals import is_refusal

_live: set["GeneratorThread"] = set()  # strong references while running


class GeneratorThread(QThread):
    event = Signal(object)

    def __init__(self, factory: Callable[[StopToken], EventStream[object]], throttle: tuple[type, ...] = (),
                 interval: float = 0.1, parent=None) -> None:
        super().__init__(parent)
        self._factory = factory
        self._throttle = throttle
        self._interval = interval
        self.stop_token = StopToken()
        self._busy = False
        self.finished.connect(self._forget)

    def start(self, *args) -> None:
        _live.add(self)
        self._busy = True
        try:
            super().start(*args)
        except BaseException:
            self._forget()
            raise
        if not (self.isRunning() or self.isFinished()):  # the OS refused a thread: no finished will come
            self._forget()
            self.event.emit(Failed("could not start a worker thread (too many threads or too little memory)"))

    def is_busy(self) -> bool:
        """True from ``start`` until ``finished`` has been handled in the GUI thread.

        ``isRunning()`` turns False in the worker before the queued ``finished`` reaches the
        views, so a view asking it could see "idle" while its buttons still say "running"."""
        return self._busy

    def request_stop(self) -> None:
        self.stop_token.request()

    def _forget(self) -> None:
        _live.discard(self)
        self._busy = False

    def run(self) -> None:  # worker thread
        pending = None
        last = 0.0
        try:
            for ev in self._factory(self.stop_token):
                throttled = bool(self._throttle) and isinstance(ev, self._throttle)
                if throttled and not getattr(ev, "urgent", False):
                    now = time.monotonic()
                    if now - last < self._interval:
                        pending = ev
                        continue
                    last, pending = now, None
                elif pending is not None:
                    if type(pending) is not type(ev):  # an event of the same kind supersedes it
                        self.event.emit(pending)
                    pending = None
                if throttled:
                    last = time.monotonic()
                self.event.emit(ev)
        except Exception as exc:  # the engine should not raise, but the app must survive if it does
            if is_refusal(exc):  # bad input the engine refused (a damaged run, a bad setting): one line for the user
                self.event.emit(Failed(str(exc)))
            else:  # a bug: its traceback goes to the log (stderr), the message to the user
                logging.getLogger("balancelab").error("unexpected error on a worker thread", exc_info=True)
                self.event.emit(Failed(f"unexpected error: {exc}", traceback.format_exc()))
        if pending is not None:
            self.event.emit(pending)


def running_threads() -> list[GeneratorThread]:
    return [t for t in _live if t.isRunning()]


class CallThread(GeneratorThread):
    """Run one blocking call (reading and parsing files) off the GUI thread.

    ``event`` carries ``Finished(value)``, or ``Failed(message)`` when the call raised one of
    ``errors`` or an engine refusal; anything else is a bug, reported as an unexpected error with
    its traceback in the log (a default of ``Exception`` hid every bug as a one-line message).
    """

    def __init__(self, fn: Callable[[], object], errors: tuple[type[BaseException], ...] = (),
                 parent=None) -> None:
        def job(stop: StopToken) -> EventStream[object]:
            try:
                value = fn()
            except errors as exc:
                yield Failed(str(exc))
                return
            yield Finished(value)

        super().__init__(job, parent=parent)


class LatestLoader(QObject):
    """Load on a worker and drop superseded results: per key ("runs", "run", "cam", ...) only the
    newest request's outcome reaches its callback; an older one still finishing is ignored.

    With ``serial=True`` a key never has two calls running at once (for work that shares a
    loaded model): a request made while one runs waits, and a newer request replaces the
    waiting one, so clicking through twenty images computes the first and the last only.
    """

    def __init__(self, errors: tuple[type[BaseException], ...] = (), serial: bool = False,
                 parent=None) -> None:
        super().__init__(parent)
        self._errors = errors
        self._serial = serial
        self._latest: dict[str, int] = {}
        self._waiting: set[str] = set()  # keys whose newest result has not been delivered yet
        self._queued: dict[str, tuple] = {}  # serial mode: key -> the request waiting for the running one
        self._threads: set[CallThread] = set()

    def load(self, key: str, fn: Callable[[], object], on_result: Callable[[object], None],
             on_failed: Callable[[str], None]) -> None:
        """Call ``fn`` on a worker; ``on_result(value)`` or ``on_failed(message)`` runs in the GUI
        thread unless a newer ``load`` of the same key was made meanwhile."""
        self._latest[key] = self._latest.get(key, 0) + 1
        self._waiting.add(key)
        request = (self._latest[key], fn, on_result, on_failed)
        if self._serial and any(t.key == key and t.is_busy() for t in self._threads):
            self._queued[key] = request
            return
        self._start(key, request)

    def _start(self, key: str, request: tuple) -> None:
        thread = CallThread(request[1], errors=self._errors, parent=self)
        thread.key, thread.request = key, request
        # bound methods of this GUI-thread object: Qt queues the calls into the GUI thread
        thread.event.connect(self._deliver)
        thread.finished.connect(self._ended)
        self._threads.add(thread)
        thread.start()

    def _deliver(self, ev) -> None:
        thread = self.sender()
        if thread is None:
            return
        number, _fn, on_result, on_failed = thread.request
        if number != self._latest.get(thread.key):
            return  # superseded by a newer request
        self._waiting.discard(thread.key)
        if isinstance(ev, Failed):
            on_failed(ev.message)
        elif isinstance(ev, Finished):
            on_result(ev.result)

    def _ended(self) -> None:
        thread = self.sender()
        if thread is None:
            return
        self._threads.discard(thread)
        queued = self._queued.pop(thread.key, None)
        if queued is not None and queued[0] == self._latest.get(thread.key):
            self._start(thread.key, queued)

    def cancel(self, key: str) -> None:
        """Forget what was asked for ``key``: a running call's result and a waiting request are dropped."""
        self._latest[key] = self._latest.get(key, 0) + 1
        self._waiting.discard(key)
        self._queued.pop(key, None)

    def running(self, key: str) -> "CallThread | None":
        """The worker computing ``key`` now, if any."""
        return next((t for t in self._threads if t.key == key and t.is_busy()), None)

    def waiting(self, key: str | None = None) -> bool:
        """A result asked for (of ``key``, or of any key) is not delivered yet."""
        return key in self._waiting if key is not None else bool(self._waiting)

    def busy(self) -> bool:
        return bool(self._waiting) or any(t.is_busy() for t in self._threads)

    def shutdown(self, timeout_ms: int = 30000) -> None:
        self._queued.clear()
        for thread in list(self._threads):
            thread.wait(timeout_ms)
