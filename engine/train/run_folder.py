"""The run-folder format, owned here: file names, schema, writing (training) and reading back
(results, CLI, GUI). No other module hard-codes a run file name or parses one by hand.

A run folder carries the marker ``.balancelab-run`` (JSON with a ``state``): ``reserved`` when
made, ``running`` while a trainer writes it (under a :class:`FileLock`), ``complete`` only after
metrics.json, the last file, is written. A folder in any other state is an incomplete run and
every reader says so. Everything read back is untrusted: the readers validate types and paths
and raise :class:`RunError` with a one-line message.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import numpy as np

from balancelab.engine.core import untrusted
from balancelab.engine.core.atomic import atomic_file, write_csv_atomic, write_json_atomic
from balancelab.engine.core.locks import FileLock, LockedError, held_by_another
from balancelab.engine.core.paths import RUN_MARKER, RUN_SCHEMA, mark_run_folder
from balancelab.engine.core.safe_paths import is_regular_file
from balancelab.engine.core.metrics import HEADLINE

SCHEMA = RUN_SCHEMA
MARKER = RUN_MARKER
LOCK = ".balancelab-run.lock"
CONFIG, SPLIT, HISTORY, METRICS = "config.json", "split.json", "history.csv", "metrics.json"
PREDICTIONS, SKIPPED, BEST, LAST = "predictions.csv", "skipped.csv", "best.pt", "last.pt"
OWN_FILES = (MARKER, LOCK)  # present in a reserved folder before anything is written
SETTINGS_FILES = (CONFIG, SPLIT, SKIPPED)  # written when training starts, before any epoch
ENSEMBLE, MEMBERS = "ensemble.json", "members"  # an ensemble run: its member runs live in members/<name>/
MAX_MEMBERS = 64
MAX_MARKER_BYTES = 64 * 1024  # the marker holds a state and a schema number

HISTORY_FIELDS = ["epoch", "train_loss", "train_accuracy", "val_loss", *(f"val_{key}" for key in HEADLINE),
                  "lr", "seconds", "images_per_second"]


class RunError(Exception):
    """A run folder that cannot be used (missing, incomplete, damaged, in use)."""


def run_file(run_dir: str, name: str) -> str:
    return os.path.join(run_dir, name)


# --- state ---------------------------------------------------------------------------------------


def read_state(run_dir: str) -> str | None:
    """The marker's state; None without a marker, ``"damaged"`` for an unreadable one."""
    try:  # never opens a FIFO or follows a planted link
        data = untrusted.read_json(run_file(run_dir, MARKER), MAX_MARKER_BYTES)
    except untrusted.UntrustedFileError as exc:
        if exc.missing:
            return None
        data = None
    state = data.get("state") if isinstance(data, dict) else None
    return state if isinstance(state, str) else "damaged"


#: Settings every BalanceLab config.json holds: a run written before the marker existed is known by them.
_OWN_SETTINGS = ("data", "out", "model", "strategy", "epochs", "seed")


def is_run_folder(run_dir: str) -> bool:
    """Marked by BalanceLab, or a run written before the marker existed: our config.json (not any
    project's config.json, which another tool's folder may hold beside its own last.pt) and a
    checkpoint."""
    if read_state(run_dir) is not None:
        return True
    if not (is_regular_file(run_file(run_dir, CONFIG)) and is_regular_file(run_file(run_dir, LAST))):
        return False
    try:
        config = untrusted.read_json(run_file(run_dir, CONFIG))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(config, dict) and all(key in config for key in _OWN_SETTINGS)


def incomplete_reason(run_dir: str) -> str | None:
    """Why ``run_dir`` is not a finished run, or None when it is one."""
    if not os.path.isdir(run_dir):
        return f"run folder does not exist: {run_dir}"
    state = read_state(run_dir)
    if state == "complete" or (state is None and is_regular_file(run_file(run_dir, METRICS))):
        return None
    if state is None:
        return f"{run_dir} is not a BalanceLab run folder"
    if being_written(run_dir):
        return f"run {run_dir} is still being written by another process; wait for it to finish"
    if state == "reserved":
        if _foreign_entries(run_dir):  # Curation's comparison and label-issue folders stay "reserved"
            return f"{run_dir} holds the output of other BalanceLab work (a comparison, label issues), not one run"
        return f"run {run_dir} was reserved for a run that never wrote anything; delete it"
    if state not in ("incomplete", "running"):  # a marker damaged or of an unknown state
        if is_regular_file(run_file(run_dir, METRICS)):
            return None  # metrics.json is written only when a run finishes: the marker broke afterwards
        return f"run {run_dir} has a damaged marker ({MARKER}) and no {METRICS}: it never finished; delete it"
    state_note = "" if state == "incomplete" else " (running)"
    if os.path.isdir(run_file(run_dir, MEMBERS)):  # balanced bagging: its members cannot be continued
        return (f"run {run_dir} is an incomplete ensemble{state_note}: it was interrupted or failed; the members it "
                f"finished are in its {MEMBERS}/ folder; train it again, or delete it")
    return (f"run {run_dir} is incomplete{state_note}: it was interrupted or failed; "
            f"continue it with `resume {run_dir}` (in the app: Results, Resume…) or delete it")


def being_written(run_dir: str) -> bool:
    """A trainer holds the folder now (marked running and locked); a "running" folder without a
    live lock is a run whose process was killed."""
    return read_state(run_dir) == "running" and _locked(run_dir)


def require_complete(run_dir: str) -> None:
    reason = incomplete_reason(run_dir)
    if reason:
        raise RunError(reason)


def _locked(run_dir: str) -> bool:
    try:
        return held_by_another(run_file(run_dir, LOCK))
    except OSError:  # a lock we cannot even open (a link, no permission): treat the run as busy
        return True


# --- writing -------------------------------------------------------------------------------------


def discard_reservation(run_dir: object) -> None:
    """A folder reserved for a run (:func:`new_run_dir`) that was refused before anything was
    written goes, instead of lingering as an incomplete run; any other folder stays as it is."""
    if not isinstance(run_dir, str) or not run_dir or "\0" in run_dir:
        return
    try:
        names = set(os.listdir(run_dir))
        if os.path.islink(run_dir) or not names <= set(OWN_FILES) or read_state(run_dir) != "reserved" \
                or being_written(run_dir):
            return
        for name in names:
            os.remove(run_file(run_dir, name))
        os.rmdir(run_dir)
    except OSError:
        pass


@contextmanager
def _writing(run_dir: str, name: str):
    """A disk full or a permission error while writing a run file becomes one clear RunError."""
    try:
        yield
    except OSError as exc:
        raise RunError(f"cannot write {name} in {run_dir}: {exc.strerror or exc}") from None


def _foreign_entries(run_dir: str) -> list[str]:
    try:
        return sorted(set(os.listdir(run_dir)) - set(OWN_FILES))
    except FileNotFoundError:
        return []


def _check_target(run_dir: str, resume: bool) -> None:
    if os.path.lexists(run_dir) and not os.path.isdir(run_dir):
        raise RunError(f"--out {run_dir} is a file, not a folder")
    if os.path.islink(run_dir):
        raise RunError(f"--out {run_dir} is a symbolic link; choose a real folder")
    entries = _foreign_entries(run_dir)
    if not entries:
        return
    if not is_run_folder(run_dir):
        raise RunError(f"--out {run_dir} already holds files that are not a BalanceLab run "
                       f"({', '.join(entries[:3])}{'…' if len(entries) > 3 else ''}); choose a new or empty folder")
    if not resume:
        raise RunError(f"--out {run_dir} already holds a run; choose a new folder, or continue it with --resume")


class RunFolderWriter:
    """The one writer of a run folder: refuses folders it must not write, holds the lock while
    open, marks the folder ``running`` and only calls it ``complete`` after metrics.json."""

    def __init__(self, run_dir: str, resume: bool = False) -> None:
        self.dir = os.path.abspath(run_dir)
        self.resume = resume
        self.complete = False
        self._lock = FileLock(run_file(self.dir, LOCK), f"run folder {self.dir}")
        self._finished_before: tuple | None = None  # a finished run reopened (--resume): its results as found
        self._settings_before: dict[str, bytes] = {}  # ... and its settings files, put back if it goes no further
        self._marked = False  # "running" written
        self._fresh = False  # the folder is this run's own: new, or reserved for it and still empty

    def open(self) -> "RunFolderWriter":
        _check_target(self.dir, self.resume)
        self._fresh = not os.path.lexists(self.dir) or (not _foreign_entries(self.dir) and read_state(self.dir) == "reserved")
        with _writing(self.dir, "the run folder"):
            os.makedirs(self.dir, exist_ok=True)
            try:
                self._lock.acquire()
            except LockedError as exc:
                raise RunError(str(exc)) from None
        try:
            _check_target(self.dir, self.resume)  # again under the lock: another run may have just finished
            if incomplete_reason(self.dir) is None:  # stays "complete" until its first write (see _begin_writing)
                self._finished_before = self._files()
                self._settings_before = self._read_settings()
            else:
                self._begin_writing()
        except BaseException:
            self._lock.release()
            raise
        return self

    def _begin_writing(self) -> None:
        """Mark the folder ``running`` before its first write. A finished run reopened to train
        further is marked only then: a process killed while it decodes the data (minutes) leaves
        the finished run as it was, not an interrupted one."""
        if not self._marked:
            with _writing(self.dir, MARKER):
                mark_run_folder(self.dir, "running")
            self._marked = True

    @property
    def was_finished(self) -> bool:
        """The folder held a finished run when it was opened (``--resume`` to train it further)."""
        return self._finished_before is not None

    def _read_settings(self) -> dict[str, bytes]:
        found = {}
        for name in SETTINGS_FILES:
            try:
                found[name] = untrusted.read_regular(self.path(name), untrusted.MAX_JSON_BYTES)
            except untrusted.UntrustedFileError:
                continue
        return found

    def _files(self) -> tuple:
        """Which result files there are and which version of each (a rewrite is a new inode or time)."""
        found = []
        for name in sorted(set(_foreign_entries(self.dir)) - set(SETTINGS_FILES)):
            try:
                st = os.lstat(run_file(self.dir, name))
            except OSError:
                continue
            found.append((name, st.st_ino, st.st_size, st.st_mtime_ns))
        return tuple(found)

    def close(self) -> None:
        if not self.complete and self._lock.held and self._fresh and self._discard_if_nothing_kept():
            return
        try:
            if not self.complete and self._lock.held:
                # a finished run whose resume was refused or failed before it wrote anything is still
                # that finished run: only a run whose files changed is incomplete
                unchanged = self._finished_before is not None and self._files() == self._finished_before
                if unchanged:  # the settings files were rewritten before training: put the run's own back
                    for name, data in self._settings_before.items():
                        with atomic_file(self.path(name), "wb") as fh:
                            fh.write(data)
                mark_run_folder(self.dir, "complete" if unchanged else "incomplete")
        except OSError:
            pass  # still "running" and unlocked: readers call it incomplete all the same
        finally:
            self._lock.release()

    def _discard_if_nothing_kept(self) -> bool:
        """A run that ends (refused, failed, stopped) before its first checkpoint leaves nothing
        worth keeping: its own new folder goes, instead of an incomplete run that can only start
        again. Only the files this writer makes are removed, by name; anything else keeps the folder."""
        try:
            names = set(os.listdir(self.dir))
            if not names <= set(OWN_FILES) | set(SETTINGS_FILES):
                return False
            # first out of sight under a hidden name, in one step: a process killed while emptying it
            # leaves a hidden folder no scan or runs list reads, and a second trainer opening this
            # path meanwhile finds no lock file of ours to take
            hidden = os.path.join(os.path.dirname(self.dir), f".discarded-{os.path.basename(self.dir)}-{os.getpid()}")
            os.rename(self.dir, hidden)
        except OSError:  # the folder stays: close() marks it as usual
            return False
        self._lock.release()
        try:
            for name in names:
                os.remove(os.path.join(hidden, name))
            os.rmdir(hidden)
        except OSError:
            pass  # a hidden folder of the app's own files is left; nothing reads it
        return True

    def __enter__(self) -> "RunFolderWriter":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def path(self, name: str) -> str:
        return run_file(self.dir, name)

    def write_config(self, config: dict) -> None:
        self._begin_writing()
        with _writing(self.dir, CONFIG):
            write_json_atomic(self.path(CONFIG), config)

    def write_split(self, split: dict) -> None:
        self._begin_writing()
        with _writing(self.dir, SPLIT):
            write_json_atomic(self.path(SPLIT), split)

    def write_skipped(self, rows: list[tuple[str, str]]) -> None:
        self._begin_writing()
        with _writing(self.dir, SKIPPED):
            write_csv_atomic(self.path(SKIPPED), ["path", "reason"], rows)

    def write_history(self, history: list[dict]) -> None:
        self._begin_writing()
        with _writing(self.dir, HISTORY):
            write_csv_atomic(self.path(HISTORY), HISTORY_FIELDS, ([h[k] for k in HISTORY_FIELDS] for h in history))

    def write_predictions(self, paths: list[str], classes: list[str], y_true: np.ndarray, probs: np.ndarray) -> None:
        self._begin_writing()
        with _writing(self.dir, PREDICTIONS):
            write_predictions(self.path(PREDICTIONS), paths, classes, y_true, probs)

    def write_ensemble(self, members: list[tuple[str, float]], kind: str, weighted: bool, sources: list[str]) -> None:
        """ensemble.json: the members (``members/<name>`` folders inside this run) and their weights."""
        entries = [{"path": f"{MEMBERS}/{name}", "weight": float(w), "source": src}
                   for (name, w), src in zip(members, sources)]
        self._begin_writing()
        with _writing(self.dir, ENSEMBLE):
            write_json_atomic(self.path(ENSEMBLE), {"kind": kind, "weighted": bool(weighted), "members": entries})

    def finish(self, metrics: dict) -> None:
        """Write metrics.json, then mark the run complete: the last two writes of a run."""
        self._begin_writing()
        with _writing(self.dir, METRICS):
            write_json_atomic(self.path(METRICS), {**metrics, "run_format": SCHEMA})
            mark_run_folder(self.dir, "complete")
        self.complete = True


def write_predictions(path: str, paths: list[str], classes: list[str], y_true: np.ndarray, probs: np.ndarray) -> None:
    y_pred = probs.argmax(axis=1)
    rows = ([p, classes[t], classes[q], *(f"{v:.6f}" for v in pr)] for p, t, q, pr in zip(paths, y_true, y_pred, probs))
    write_csv_atomic(path, ["path", "true", "predicted", *(f"p_{c}" for c in classes)], rows)


# --- reading (validated) -------------------------------------------------------------------------
_READERS = ("list_runs", "list_incomplete_runs", "survey_runs", "read_config", "read_json", "read_metrics", "read_predictions", "read_split", "read_ensemble")


def __getattr__(name: str):
    """The readers live in :mod:`run_reading` (they need RunError and the names above); they are
    served from here on first use, so ``from run_folder import read_split`` works without an import cycle."""
    if name in _READERS:
        from balancelab.engine.train import run_reading

        return getattr(run_reading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
