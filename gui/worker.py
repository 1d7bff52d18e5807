"""Run engine generators on a worker thread and deliver their events through queued signals.

Widgets are never touched from the worker: ``GeneratorThread.event`` is emitted in the worker
thread and, because the receivers live in the GUI thread, Qt queues the call to them.
High-rate events (batch progress) are throttled so the GUI thread is never flooded; a phase
starting or ending (``urgent``) is always delivered at once.
"""
from __future__ import annotations

import time
import traceback
from typing import Callable, Iterator

from PySide6.QtCore import QThread, Signal

from balancelab.engine.core.events import Failed, Finished, StopToken

_live: set["GeneratorThread"] = set()  # strong references while running


class GeneratorThread(QThread):
    event = Signal(object)

    def __init__(self, factory: Callable[[StopToken], Iterator], throttle: tuple[type, ...] = (),
                 interval: float = 0.1, parent=None) -> None:
        super().__init__(parent)
        self._factory = factory
        self._throttle = throttle
        self._interval = interval
        self.stop_token = StopToken()
        self.finished.connect(self._forget)

    def start(self, *args) -> None:
        _live.add(self)
        super().start(*args)

    def request_stop(self) -> None:
        self.stop_token.request()

    def _forget(self) -> None:
        _live.discard(self)

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
            self.event.emit(Failed(f"unexpected error: {exc}", traceback.format_exc()))
        if pending is not None:
            self.event.emit(pending)


def running_threads() -> list[GeneratorThread]:
    return [t for t in _live if t.isRunning()]


def stop_all(timeout_ms: int = 10000) -> bool:
    """Ask every worker to stop and wait for them; True when all ended."""
    ok = True
    for t in list(_live):
        t.request_stop()
    for t in list(_live):
        ok = t.wait(timeout_ms) and ok
    return ok


class CallThread(GeneratorThread):
    """Run one blocking call (reading and parsing files) off the GUI thread.

    ``event`` carries ``Finished(value)``, or ``Failed(message)`` when the call raised one of
    ``errors`` (anything else is reported as an unexpected error).
    """

    def __init__(self, fn: Callable[[], object], errors: tuple[type[BaseException], ...] = (Exception,),
                 parent=None) -> None:
        def job(stop: StopToken):
            try:
                value = fn()
            except errors as exc:
                yield Failed(str(exc))
                return
            yield Finished(value)

        super().__init__(job, parent=parent)
