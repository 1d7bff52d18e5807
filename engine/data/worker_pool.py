"""Process pools for decoding whose workers never outlive the process that started them.

A SIGKILLed parent cannot shut its pool down; its workers then sit blocked on the task queue
(other workers hold the queue's write end open, so they never see end-of-file), each holding
hundreds of MB. Every worker therefore asks the kernel to kill it when its parent dies
(``PR_SET_PDEATHSIG`` on Linux) and also watches the parent from a thread (other systems, and
the moment between fork and prctl).
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

_PR_SET_PDEATHSIG = 1


def pool_context():
    """Start method for decode worker processes.

    A single-threaded process (CLI, scripts, notebooks) forks: fast, and it never re-imports
    the caller's main script (a script without an ``if __name__ == "__main__"`` guard would
    otherwise run again in every worker). A process with other threads (the GUI runs this on a
    worker thread) uses forkserver, because forking a multi-threaded process can deadlock;
    main.py has the guard that forkserver needs.
    """
    methods = multiprocessing.get_all_start_methods()
    if threading.active_count() == 1 and "fork" in methods:
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


def process_pool(workers: int) -> ProcessPoolExecutor:
    """A pool whose workers exit when the process that created them dies."""
    return ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(), initializer=die_with_parent)


def die_with_parent() -> None:
    """Pool initializer: end this worker as soon as its parent process is gone."""
    _set_parent_death_signal()
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    if not parent.is_alive():  # it died before the death signal was armed
        os._exit(1)
    threading.Thread(target=_exit_when_gone, args=(parent,), name="parent-watch", daemon=True).start()


def _exit_when_gone(parent) -> None:
    parent.join()  # waits on the parent's sentinel pipe, which closes when the parent dies
    os._exit(1)


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass  # the watch thread still ends the worker


def ordered_results(pool: ProcessPoolExecutor | None, fn, tasks: list[tuple], window: int):
    """Yield ``(task, fn(*task))`` in task order, at most ``window`` tasks in flight, so results that
    finish early never pile up in memory (a 50,000-photo pass stays as small as a 2,000-photo one).
    Without a pool the tasks run here, one by one."""
    if pool is None:
        for task in tasks:
            yield task, fn(*task)
        return
    pending = []
    it = iter(tasks)
    try:
        for task in it:
            pending.append((task, pool.submit(fn, *task)))
            if len(pending) >= window:
                break
        while pending:
            task, future = pending.pop(0)
            result = future.result()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt, pool.submit(fn, *nxt)))
            yield task, result
    finally:
        for _, future in pending:
            future.cancel()
