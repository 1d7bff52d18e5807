"""Typed progress events shared by every long-running engine generator.

Long work (scanning, caching, training) is written as a plain generator that yields
these dataclasses and checks a :class:`StopToken` between steps. The CLI iterates it
directly; the GUI runs it on a worker thread and forwards events through queued
signals. Keeping the events plain data makes the work testable without Qt.

The protocol: a long task is typed ``EventStream[T]``: it yields :class:`Event` subclasses
(progress) and ends with exactly one ``Finished[T]`` (``T`` declared by the task, so no consumer
unwraps an ``Any``) or :class:`Failed`.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Generator, Generic, Iterator, TypeVar, Union

T = TypeVar("T")


class StopToken:
    """A thread-safe stop request checked by generators between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def request(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()


@dataclass
class Event:
    """Base of every progress event a long task yields before its one Finished or Failed."""


@dataclass
class Progress(Event):
    """Generic progress of a phase: ``done`` out of ``total`` units (total 0 = unknown)."""

    phase: str
    done: int
    total: int
    message: str = ""

    @property
    def urgent(self) -> bool:
        """A phase starting or ending: a consumer that throttles progress should still show it."""
        return self.done == 0 or (self.total > 0 and self.done >= self.total)


@dataclass
class Finished(Generic[T]):
    """The work completed (or was stopped) and produced ``result``, of the type the task declares."""

    result: T
    stopped: bool = False


@dataclass
class Failed:
    """The work could not complete; ``message`` is meant for the user, ``detail`` for the log."""

    message: str
    detail: str = ""


@dataclass
class RunStep(Event):
    """An event of run ``index`` (0-based) of ``total`` inside a larger task (a comparison's
    strategy x seed, a cross-validation fold), so a renderer can show per-run progress."""

    label: str
    index: int
    total: int
    event: Event | Failed | Finished[object]

    @property
    def urgent(self) -> bool:
        """A consumer that throttles may drop only high-rate inner events (those that say they are
        not urgent: batch progress, progress inside a phase); a run's start, epoch ends, its
        Finished or Failed always get through."""
        return bool(getattr(self.event, "urgent", True))


EventStream = Iterator[Union[Event, Failed, Finished[T]]]
"""What a long task returns: ``def train(...) -> EventStream[RunResult]``."""


class StreamFailed(Exception):
    """A forwarded stream ended with Failed; the message is its one line."""


def forward(stream: EventStream[T]) -> Generator[Event, None, T | None]:
    """Inside another task: ``result = yield from forward(stream)`` passes the stream's events on
    and gives its Finished result (None when it stopped); a Failed raises StreamFailed."""
    for event in stream:
        if isinstance(event, Finished):
            return None if event.stopped else event.result
        if isinstance(event, Failed):
            raise StreamFailed(event.message)
        yield event
    return None
