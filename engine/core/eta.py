"""Time left of a task made of several runs (a comparison's strategy x seed, cross-validation folds),
estimated from the runs finished so far: one rule for the CLI and the GUI."""
from __future__ import annotations

import time
from typing import Callable

from tqdm import tqdm


class RunsEta:
    """The clock starts at the first event of a run (``begin``), so the scan and decoding before
    the runs are not counted as run time."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.started: float | None = None
        self.done = 0
        self.elapsed = 0.0

    def begin(self) -> None:
        if self.started is None:
            self.started = self._clock()

    def run_finished(self, index: int) -> None:
        """Run ``index`` (0-based) has ended."""
        self.begin()
        self.done = max(self.done, index + 1)
        self.elapsed = self._clock() - self.started

    def left(self, total: int) -> float | None:
        """Seconds left for ``total`` runs at the mean pace so far; None before a run has ended."""
        if self.done == 0:
            return None
        return self.elapsed / self.done * max(0, total - self.done)


def clock_text(seconds: float) -> str:
    """'01:05' or '1:01:02', as the CLI's progress bars write times: one format in every output."""
    return tqdm.format_interval(max(0.0, seconds))
