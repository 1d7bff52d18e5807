"""The GUI session: the one owner of the open dataset, its journal and its runs.

Views never hand state to each other. Each is built from the session (napari's
``QtDims(dims)`` shape) and subscribes to its signals, so a relabel in Review, an exclusion in
Curation, an undo, a rescan or another dataset opened reaches every view that shows it.
"""
from __future__ import annotations

import os

from PySide6.QtCore import QObject, Signal

from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.core.paths import runs_dir_for
from balancelab.engine.data.journal import Action, BatchMoves, Journal, JournalError
from balancelab.engine.data.deep_check import PHASE as DEEP_PHASE
from balancelab.engine.data.scanner import FirstLook, ProblemsFound, ScanResult, scan
from balancelab.engine.train.resume import can_resume
from balancelab.engine.train.run_folder import RunError, survey_runs
from balancelab.gui.worker import GeneratorThread, LatestLoader


class Session(QObject):
    """Open dataset + journal + runs; every change is announced by a signal."""

    message = Signal(str, str)  # level, text: for the log panel and status bar
    scan_started = Signal(str)  # the folder being scanned
    scan_progress = Signal(int, int)  # done, total (0 = unknown): listing and first look
    deep_progress = Signal(int, int)  # done, total of the deep check, which runs after the first look
    problems_found = Signal(list)  # Problems the deep check just found (the dataset stays open)
    scan_ended = Signal()  # the scan worker thread has ended (finished, failed or stopped)
    dataset_opened = Signal(object)  # ScanResult: another dataset, or the same one rescanned
    files_moved = Signal(list)  # the journal Actions just done or undone (relabel, exclude, undo; one or a batch)
    journal_changed = Signal()  # the journal's entries changed (after files_moved, or on open)
    runs_changed = Signal(list)  # the runs of the open dataset, newest first
    run_finished = Signal(str)  # a training run of this session wrote this run folder
    resume_requested = Signal(str)  # continue this interrupted run (the Train tab does it)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.result: ScanResult | None = None
        self.journal: Journal | None = None
        self.runs: list[dict] = []
        self.incomplete_runs: list[tuple[str, str]] = []  # (folder, why): interrupted, failed, damaged
        self.resumable_runs: list[str] = []  # those of them that can go on from their saved settings
        self.scan_thread: GeneratorThread | None = None
        self._pending_root: str | None = None
        self._runs_loader = LatestLoader(errors=(RunError, OSError), parent=self)
        self.move_thread: GeneratorThread | None = None  # a batch of relabels or exclusions
        self._move_journal: Journal | None = None  # the journal that batch changes
        # the moves the open scan result does not show: action id -> (sequence number, state); an
        # undo of a move made since the scan cancels it
        self._moves: dict[str, tuple[int, str]] = {}
        self._move_seq = 0
        self._seq_at_scan_start = 0
        self._closed = False

    # --- the dataset ---------------------------------------------------------------------------

    @property
    def root(self) -> str | None:
        return self.result.root if self.result is not None else None

    def scanning(self) -> bool:
        return self.scan_thread is not None and self.scan_thread.is_busy()

    def open(self, root: str) -> None:
        """Scan ``root`` on a worker; a scan already running is stopped and replaced."""
        root = os.path.abspath(root)
        if self.scanning():
            self._pending_root = root
            self.scan_thread.request_stop()
            return
        self._seq_at_scan_start = self._move_seq  # what moves after this instant, the scan may not see
        self.scan_thread = GeneratorThread(lambda stop: scan(root, stop), throttle=(Progress,), interval=0.1, parent=self)
        self.scan_thread.event.connect(self._scan_event)
        self.scan_thread.finished.connect(self._scan_done)
        self.scan_started.emit(root)
        self.scan_thread.start()

    def rescan(self) -> None:
        if self.root:
            self.open(self.root)

    def stop_scan(self) -> None:
        if self.scan_thread is not None:
            self.scan_thread.request_stop()

    def _scan_event(self, ev) -> None:
        if self._pending_root is not None and not isinstance(ev, Failed):
            return  # superseded by another folder
        if isinstance(ev, Progress):
            (self.deep_progress if ev.phase == DEEP_PHASE else self.scan_progress).emit(ev.done, ev.total)
        elif isinstance(ev, Failed):
            self.message.emit("error", ev.message)
        elif isinstance(ev, FirstLook):  # classes and counts now; the deep check goes on
            self._set_result(ev.result)
        elif isinstance(ev, ProblemsFound):
            self.problems_found.emit(ev.problems)
        elif isinstance(ev, Finished):
            self._set_result(ev.result)

    def _scan_done(self) -> None:
        self.scan_ended.emit()
        if self._pending_root is not None:
            root, self._pending_root = self._pending_root, None
            self.open(root)

    def _set_result(self, result: ScanResult) -> None:
        same = self.result is not None and self.result.root == result.root
        self.result = result
        start = self._seq_at_scan_start if same else self._move_seq
        self._moves = {k: v for k, v in self._moves.items() if v[0] > start}  # the scan saw the others
        if not same or self.journal is None:
            self._open_journal(result.root)
        self.dataset_opened.emit(result)
        self.journal_changed.emit()
        self.refresh_runs()
        what = "checked" if result.deep_checked else "first look at"
        self.message.emit("info", f"{what} {result.root}: {len(result.images):,} images, {len(result.classes)} classes, "
                                  f"{len(result.problems)} problem(s)")

    # --- the journal ---------------------------------------------------------------------------

    def _open_journal(self, root: str) -> None:
        batch = self._move_journal
        if self.moving() and batch is not None and batch.root == os.path.abspath(root):
            self.journal = batch  # back to a dataset whose batch still runs: its journal, not a second one
            return
        try:
            self.journal = Journal(root)
            for a in self.journal.recover():
                self.message.emit("warning", f"journal: interrupted {a.kind} of {a.src} was {a.state}")
            for problem in self.journal.problems:  # refused or unresolved entries: left as they are, said once
                self.message.emit("warning", f"journal: {problem}")
        except (JournalError, OSError) as exc:
            self.journal = None
            self.message.emit("error", f"{exc}")

    def relabel(self, rel_path: str, label: str) -> Action | None:
        return self._journaled("relabel", lambda j: j.relabel(rel_path, label))

    def exclude(self, rel_path: str) -> Action | None:
        return self._journaled("exclude", lambda j: j.exclude(rel_path))

    def undo(self) -> Action | None:
        return self._journaled("undo", lambda j: j.undo())

    def can_undo(self) -> bool:
        return self.journal is not None and bool(self.journal.undoable())

    def _journaled(self, what: str, act) -> Action | None:
        """Run one journal action; a failure becomes one message and the session stays usable."""
        if self.journal is None:
            self.message.emit("error", "The dataset journal is not available; nothing was moved.")
            return None
        if self.moving():
            self.message.emit("warning", f"cannot {what} yet: files are still being moved")
            return None
        try:
            action = act(self.journal)
        except (JournalError, OSError) as exc:
            self.message.emit("error", f"cannot {what}: {exc}")
            return None
        self._note_moves([action])
        self.files_moved.emit([action])
        self.journal_changed.emit()
        return action

    def _note_moves(self, actions: list[Action]) -> None:
        for a in actions:
            self._move_seq += 1
            if a.state == "undone" and a.id in self._moves:
                del self._moves[a.id]  # made and undone since the scan: the scan is right again
            else:
                self._moves[a.id] = (self._move_seq, a.state)

    def moved_since_scan(self) -> bool:
        """Files moved (or moved back) since the shown scan: its counts and file list are stale."""
        return bool(self._moves)

    def moving(self) -> bool:
        return self.move_thread is not None and self.move_thread.is_busy()

    def move_files(self, kind: str, rel_paths: list[str], label: str = "") -> bool:
        """Relabel (to ``label``) or exclude many files as one journal batch, on a worker: two
        journal saves in all, where single moves on the GUI thread froze it for seconds. One file
        moves at once. Returns False when nothing was started."""
        if len(rel_paths) == 1:
            act = self.relabel(rel_paths[0], label) if kind == "relabel" else self.exclude(rel_paths[0])
            if act is not None:
                self.message.emit("info", f"{'moved' if kind == 'relabel' else 'excluded'} {act.src} → {act.dst} "
                                          "(it can be undone)")
            return act is not None
        if not rel_paths or self._closed:
            return False
        if self.journal is None:
            self.message.emit("error", "The dataset journal is not available; nothing was moved.")
            return False
        if self.moving():
            self.message.emit("warning", "files are still being moved; try again when they are")
            return False
        journal, root = self.journal, self.root
        self._move_journal = journal

        def job(stop):
            if kind == "relabel":
                yield from journal.relabel_many(rel_paths, label, stop)
            else:
                yield from journal.exclude_many(rel_paths, stop)

        self.move_thread = GeneratorThread(job, throttle=(Progress,), parent=self)
        self.move_thread.event.connect(lambda ev: self._move_event(ev, kind, label, root))
        where = f"to class {label}" if kind == "relabel" else "to _excluded/"
        self.message.emit("info", f"moving {len(rel_paths)} files {where}…")
        self.move_thread.start()
        return True

    def _move_event(self, ev, kind: str, label: str, root: str | None) -> None:
        if isinstance(ev, Failed):
            self.message.emit("error", f"cannot {kind}: {ev.message}")
            return
        if not isinstance(ev, Finished):
            return
        batch: BatchMoves = ev.result
        where = f"to class {label}" if kind == "relabel" else "to _excluded/"
        said = f"{'relabelled' if kind == 'relabel' else 'excluded'} {len(batch.done)} file(s) {where} (each can be undone)"
        if batch.refused:
            said += f"; {len(batch.refused)} refused (first: {batch.refused[0][1]})"
        if batch.stopped:
            said += "; stopped before the rest, which stay where they were"
        if batch.unrecorded:
            said += f"; {batch.failure}"
        elif batch.failure:
            said += f"; {batch.failure}" + ("" if batch.stopped else "; the batch stopped there, the rest stay where they were")
        self.message.emit("warning" if batch.refused or batch.failure or batch.stopped else "info", said)
        if batch.done and root == self.root:  # another dataset opened meanwhile: its views have nothing to update
            self._note_moves(batch.done)
            self.files_moved.emit(batch.done)
        self.journal_changed.emit()

    # --- runs ----------------------------------------------------------------------------------

    def runs_dir(self) -> str | None:
        return str(runs_dir_for(self.root)) if self.root else None

    def refresh_runs(self) -> None:
        """Re-read the runs list on a worker (dozens of run folders can take a while)."""
        parent, root = self.runs_dir(), self.root
        if parent is None or self._closed:  # a worker ending after the window closed starts nothing new
            return

        def survey() -> tuple[list[dict], list[tuple[str, str]], list[str]]:
            runs, left_out = survey_runs(parent)
            return runs, left_out, [folder for folder, _ in left_out if can_resume(folder, root)]

        self._runs_loader.load("runs", survey, self._runs_loaded, lambda message: self.message.emit("error", message))

    def _runs_loaded(self, listed: tuple[list[dict], list[tuple[str, str]], list[str]]) -> None:
        self.runs, self.incomplete_runs, self.resumable_runs = listed
        self.runs_changed.emit(self.runs)

    def request_resume(self, run_dir: str) -> None:
        """Ask the Train tab to continue ``run_dir``; it checks the saved settings again."""
        self.resume_requested.emit(run_dir)

    def add_run(self, run_dir: str) -> None:
        """A training of this session finished: announce it and re-list the runs."""
        self.run_finished.emit(run_dir)
        self.refresh_runs()

    def loading_runs(self) -> bool:
        return self._runs_loader.busy()

    def shutdown(self) -> None:
        self._closed = True
        self.stop_scan()
        if self.move_thread is not None:  # a stopped batch records what it did not move as rolled back
            self.move_thread.request_stop()
            self.move_thread.wait(30000)
        if self.scan_thread is not None:
            self.scan_thread.wait(30000)
        self._runs_loader.shutdown()
