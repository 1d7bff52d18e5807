"""Journaled, undoable file actions on a dataset: relabel (move to another class folder) and
exclude (move to ``_excluded/`` inside the dataset root). Nothing is ever deleted.

The journal ``.balancelab/journal.json`` is a write-ahead log. Every move, and every undo of a
move, is first saved durably as ``pending`` (``undoing`` for an undo), then done with
link + unlink, then saved as ``done`` (``undone``). Whatever instant a crash, a full disk or a
SIGKILL hits, the file is at its old name, at its new one, or at both as one inode, and
:meth:`Journal.recover` (also run at the start of every change) settles it from disk, again and
again if need be. One process changes a dataset's journal at a time (a :class:`FileLock`), and
it re-reads the journal under that lock, so two windows or the app and the CLI lose nothing.

The journal is untrusted input: every path in it goes through :func:`confined`, and an entry
that points outside the dataset, or at something that is not a plain file, is refused and left
exactly as it is while the rest keeps working.
"""
from __future__ import annotations

import os
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from balancelab.engine.core.events import EventStream, Finished, Progress, StopToken
from balancelab.engine.core.locks import FileLock, LockedError
from balancelab.engine.core.safe_paths import UnsafePathError, confined
from balancelab.engine.data.journal_moves import is_plain_file, move_no_overwrite, resolved_name, settle
from balancelab.engine.data.journal_store import (
    JOURNAL_DIR, JOURNAL_NAME, LOCK_NAME, Action, Entry, JournalBusyError, JournalDamagedError,
    JournalError, UnsafeEntryError, load_journal, save_journal, sweep_stale_temps,
)

__all__ = ["Action", "BatchMoves", "Journal", "JournalError", "JournalBusyError", "JournalDamagedError",
           "UnsafeEntryError", "EXCLUDED_DIR", "JOURNAL_DIR"]

EXCLUDED_DIR = "_excluded"
#: How long a change waits for another process's change to finish before giving up.
LOCK_WAIT_S = 2.0
MAX_NAME_BYTES = 255
#: (state while moving, state when the move is complete, state when it was reverted)
FORWARD = ("pending", "done", "rolled-back")
BACKWARD = ("undoing", "undone", "done")


@dataclass
class BatchMoves:
    """What a batch of moves did: the actions done, (path, why) of each file refused, the failure
    that ended the batch early (empty if none), and whether a stop ended it."""

    done: list[Action] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    failure: str = ""
    stopped: bool = False
    unrecorded: bool = False  # every move was made; only the journal's last save failed (settled on next open)


def _one_line(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    return (text.splitlines() or [type(exc).__name__])[0][:300]


def _valid_label(label: object) -> str:
    """A class name that is one plain folder name, or JournalError."""
    if not isinstance(label, str):
        raise JournalError(f"a class name must be text, not {type(label).__name__}")
    shown = repr(label[:60]) + ("..." if len(label) > 60 else "")
    if label in ("", ".", "..") or any(c in label for c in "/\\\x00"):
        raise JournalError(f"invalid class name {shown}: it must be one folder name")
    if label != label.strip():  # "1 " would list beside "1" as another class that reads the same
        raise JournalError(f"invalid class name {shown}: it starts or ends with white space")
    if any(ord(c) < 32 or ord(c) == 127 for c in label):
        raise JournalError(f"invalid class name {shown}: it contains control characters")
    try:
        encoded = os.fsencode(label)
    except UnicodeError:
        raise JournalError(f"invalid class name {shown}: it cannot be a file name here") from None
    if len(encoded) > MAX_NAME_BYTES:
        raise JournalError(f"invalid class name {shown}: longer than {MAX_NAME_BYTES} bytes")
    if label.startswith(".") or label in (EXCLUDED_DIR, JOURNAL_DIR):
        raise JournalError(f"invalid class name {shown}: hidden and reserved folders are not classes")
    return label


class Journal:
    """The journal of one dataset folder. Safe to use from several processes at once."""

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        if not os.path.isdir(self.root):
            raise JournalError(f"not a folder: {root}")
        self.path = self._own_path(JOURNAL_NAME)
        self._lock = FileLock(self._own_path(LOCK_NAME), "this dataset's journal")
        self._in_change = threading.Lock()  # a batch holds it across its yields; nothing else may change meanwhile
        #: One line per journal entry that was refused or could not be settled, for the user.
        self.problems: list[str] = []
        self._entries: list[Entry] = []
        self._reload()

    # --- reading ----------------------------------------------------------------------------
    @property
    def actions(self) -> list[Action]:
        """Every readable action, oldest first (unreadable entries are kept in the file only)."""
        return [e for e in self._entries if isinstance(e, Action)]

    def undoable(self) -> list[Action]:
        return [a for a in self.actions if a.state == "done"]

    def _own_path(self, name: str) -> str:
        try:
            return confined(self.root, f"{JOURNAL_DIR}/{name}")
        except UnsafePathError as exc:
            raise JournalError(f"the journal folder is unsafe: {exc}") from None

    def _reload(self) -> None:
        self._entries, self.problems = load_journal(self.path)

    def _paths(self, action: Action) -> tuple[str, str]:
        """The entry's two absolute paths, refused unless they are two different places in the
        dataset outside BalanceLab's own folder (a crafted entry naming one file twice would make
        settling a move unlink its only name)."""
        try:
            src, dst = confined(self.root, action.src), confined(self.root, action.dst)
        except UnsafePathError as exc:
            raise UnsafeEntryError(f"journal entry {action.id} was refused and left as it is: {exc}") from None
        real_root = os.path.realpath(self.root)
        # where each name really is, its folders' links followed: a link to .balancelab/ or a second
        # name of a class folder must not pass as another place
        real_src, real_dst = resolved_name(src), resolved_name(dst)
        for path in (real_src, real_dst):
            if os.path.relpath(path, real_root).replace(os.sep, "/").split("/")[0].casefold() == JOURNAL_DIR:
                raise UnsafeEntryError(f"journal entry {action.id} was refused and left as it is: "
                                       f"it names BalanceLab's own folder {JOURNAL_DIR}/")
        if os.path.normcase(real_src) == os.path.normcase(real_dst):
            raise UnsafeEntryError(f"journal entry {action.id} was refused and left as it is: "
                                   "its source and destination are the same file")
        return src, dst

    # --- locking ----------------------------------------------------------------------------
    @contextmanager
    def _changing(self) -> Iterator[None]:
        """Hold the lock and re-read the journal (another process may have changed it); sweep temp
        files a killed writer left. Any other error inside becomes a one-line JournalError."""
        if not self._in_change.acquire(blocking=False):  # the file lock is re-entrant per object: this is not
            raise JournalBusyError("the journal is busy with another change (a batch of moves); try again when it ends")
        try:
            self.path = self._own_path(JOURNAL_NAME)  # the folder may have been swapped for a link
            self._acquire()
        except BaseException:
            self._in_change.release()
            raise
        try:
            self._reload()
            sweep_stale_temps(os.path.dirname(self.path))
            yield
        except JournalError:
            raise
        except (OSError, ValueError, RecursionError) as exc:
            raise JournalError(f"journal: {_one_line(exc)}") from None
        finally:
            self._lock.release()
            self._in_change.release()

    def _acquire(self) -> None:
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                self._lock.acquire()
                return
            except LockedError as exc:
                if time.monotonic() >= deadline:
                    raise JournalBusyError(str(exc)) from None
                time.sleep(0.05)
            except OSError as exc:
                raise JournalError(f"cannot lock the journal ({_one_line(exc)})") from None

    def _save(self) -> None:
        save_journal(self.path, self._entries)

    # --- recovery ---------------------------------------------------------------------------
    def recover(self) -> list[Action]:
        """Finish or roll back moves and undos interrupted half way; returns the actions settled."""
        with self._changing():
            return self._settle_pending()

    def _settle_pending(self) -> list[Action]:
        settled = []
        for action in self.actions:
            if action.state not in (FORWARD[0], BACKWARD[0]):
                continue
            try:
                src, dst = self._paths(action)
            except UnsafeEntryError as exc:
                self.problems.append(str(exc))
                continue
            moving, finished, reverted = FORWARD if action.state == FORWARD[0] else BACKWARD
            source, target = (src, dst) if moving == FORWARD[0] else (dst, src)
            outcome, note = settle(source, target, prefer_finish=True)
            if note:
                self.problems.append(f"journal entry {action.id} ({action.kind} of {action.src}): {note}")
            if outcome is not None:
                action.state = finished if outcome else reverted
                settled.append(action)
        if settled:
            self._save()
        return settled

    # --- changes ----------------------------------------------------------------------------
    def relabel(self, rel_path: str, new_label: str, new_class: bool = True) -> Action:
        """Move ``split/old_label/.../name`` to ``split/new_label/name`` (``new_label/name`` when flat).
        Without ``new_class`` the class folder must exist already (a typo makes no new class)."""
        label = _valid_label(new_label)
        return self._move("relabel", rel_path, self._relabel_destination(label, new_class), note=label)

    def _relabel_destination(self, label: str, new_class: bool) -> Callable[[str], str]:
        from balancelab.engine.data.layout import SPLIT_ALIASES

        def destination(src: str) -> str:
            parts = src.split("/")
            prefix = parts[:1] if len(parts) >= 3 and parts[0].lower() in SPLIT_ALIASES else []
            dst = "/".join(prefix + [label, parts[-1]])
            if os.path.dirname(dst) == os.path.dirname(src):
                raise JournalError(f"{src} is already in class {label!r}")
            if not new_class and not os.path.isdir(os.path.join(self.root, os.path.dirname(dst))):
                raise JournalError(f"there is no class {label!r} next to {os.path.dirname(src)!r}; check the name, "
                                   "or allow a new class (--new-class)")
            return dst

        return destination

    def exclude(self, rel_path: str) -> Action:
        """Move a file to ``_excluded/<its path>``, out of the dataset but kept."""
        return self._move("exclude", rel_path, lambda src: f"{EXCLUDED_DIR}/{src}")

    def _user_file(self, rel_path: object) -> tuple[str, str]:
        """The normalized relative path and absolute path of a file the user asks to move."""
        if not isinstance(rel_path, str):
            raise JournalError(f"not a path: {rel_path!r}")
        try:
            full = confined(self.root, rel_path)
        except UnsafePathError as exc:
            raise JournalError(f"refused: {exc}") from None
        rel = os.path.relpath(full, os.path.realpath(self.root)).replace(os.sep, "/")
        if rel.split("/")[0].casefold() in (EXCLUDED_DIR, JOURNAL_DIR):  # any case: macOS and Windows fold it
            raise JournalError(f"{rel} is not part of the dataset (undo its exclusion instead)")
        if not is_plain_file(full):
            raise JournalError(f"file not found (or not a plain file): {rel_path}")
        return rel, full

    def _free_name(self, rel: str, taken: set[str] = frozenset()) -> str:
        """``rel``, or ``name__N.ext``: free on disk and not ``taken`` by another move of the same batch."""
        base, ext = os.path.splitext(rel)
        candidate, n = rel, 1
        while candidate.casefold() in taken or os.path.lexists(confined(self.root, candidate)):
            candidate = f"{base}__{n}{ext}"
            n += 1
        return candidate

    def _plan(self, kind: str, rel_path: str, destination: Callable[[str], str], note: str,
              taken: set[str] = frozenset()) -> tuple[Action, str, str]:
        """A pending action (not yet recorded) and its two absolute paths; JournalError if refused."""
        src_rel, src = self._user_file(rel_path)
        try:
            dst_rel = self._free_name(destination(src_rel), taken)
            dst = confined(self.root, dst_rel)
        except UnsafePathError as exc:
            raise JournalError(f"refused: {exc}") from None
        return Action(uuid.uuid4().hex[:12], kind, src_rel, dst_rel, time.time(), "pending", note), src, dst

    def _move(self, kind: str, rel_path: str, destination: Callable[[str], str], note: str = "") -> Action:
        with self._changing():
            self._settle_pending()
            action, src, dst = self._plan(kind, rel_path, destination, note)
            self._entries.append(action)
            try:
                self._save()
            except JournalError:
                self._entries.remove(action)  # never moved, so never recorded
                raise
            self._run(action, src, dst, FORWARD)
            return action

    def relabel_many(self, rel_paths: list[str], new_label: str, stop: StopToken | None = None) -> EventStream[BatchMoves]:
        """Relabel many files as one batch; see :meth:`move_many`."""
        label = _valid_label(new_label)
        return self.move_many("relabel", rel_paths, self._relabel_destination(label, True), label, stop)

    def exclude_many(self, rel_paths: list[str], stop: StopToken | None = None) -> EventStream[BatchMoves]:
        """Exclude many files as one batch; see :meth:`move_many`."""
        return self.move_many("exclude", rel_paths, lambda src: f"{EXCLUDED_DIR}/{src}", "", stop)

    def move_many(self, kind: str, rel_paths: list[str], destination: Callable[[str], str], note: str,
                  stop: StopToken | None = None) -> EventStream[BatchMoves]:
        """Move many files under one lock, with two journal saves in all instead of two per file
        (500 single moves rewrote the journal 1,000 times: seconds). Every move is recorded
        ``pending`` in the first save, so a crash at any instant is settled file by file from disk
        like a single move. A file that cannot be moved (gone, already in the class) is refused
        alone; a move that fails (disk full) or a stop ends the batch, and what was not moved is
        recorded as rolled back. Yields :class:`Progress`, ends with ``Finished(BatchMoves)``."""
        with self._changing():
            self._settle_pending()
            planned: list[tuple[Action, str, str]] = []
            refused: list[tuple[str, str]] = []
            taken: set[str] = set()
            seen: set[str] = set()
            for rel in rel_paths:
                try:
                    action, src, dst = self._plan(kind, rel, destination, note, taken)
                except JournalError as exc:
                    refused.append((str(rel), str(exc)))
                    continue
                if action.src in seen:
                    continue  # named twice: moved once
                seen.add(action.src)
                taken.add(action.dst.casefold())  # a case-insensitive file system would clash on the second
                planned.append((action, src, dst))
            self._entries.extend(a for a, _, _ in planned)
            try:
                self._save()
            except JournalError:
                for a, _, _ in planned:
                    self._entries.remove(a)  # never moved, so never recorded
                raise
            done, failure, stopped = [], "", False
            for i, (action, src, dst) in enumerate(planned):
                stopped = stopped or (not failure and stop is not None and stop.requested)
                if stopped or failure:
                    action.state = FORWARD[2]  # not attempted: the file is where it was
                else:
                    try:
                        move_no_overwrite(src, dst)
                        action.state = FORWARD[1]
                        done.append(action)
                    except (OSError, JournalError) as exc:
                        self._settle_failed(action, src, dst)
                        if action.state == FORWARD[1]:  # it moved; what failed came after (a folder's fsync)
                            done.append(action)
                            failure = f"the {kind} of {action.src} was done, but the disk then reported: {_one_line(exc)}"
                        elif isinstance(exc, JournalError) and action.state == FORWARD[2]:
                            refused.append((action.src, str(exc)))  # this file only (gone, or its place taken)
                        else:
                            failure = f"could not {kind} {action.src}: {_one_line(exc)}"
                yield Progress(kind, i + 1, len(planned), action.src)
            try:
                self._save()
            except JournalError as exc:
                failure = failure or f"the moves were done, but recording them failed ({exc}); they are recorded on next open"
                unrecorded = True
            else:
                unrecorded = False
            yield Finished(BatchMoves(done, refused, failure, stopped, unrecorded), stopped=stopped)

    def _settle_failed(self, action: Action, source: str, target: str,
                       states: tuple[str, str, str] = FORWARD) -> None:
        """After a failed move (or undo): the file is where the disk says, and the action says so
        (not saved: a single move saves at once, a batch at its end)."""
        _moving, finished, reverted = states
        try:
            outcome, _note = settle(source, target, prefer_finish=False)
        except OSError:
            return  # left as it was: the next change or open settles it
        if outcome is not None:
            action.state = finished if outcome else reverted

    def undo(self, action_id: str | None = None) -> Action:
        """Undo one action (default: the last done one) by moving the file back."""
        with self._changing():
            self._settle_pending()
            action, src, dst = self._pick_undo(action_id)
            if not is_plain_file(dst):
                raise JournalError(f"cannot undo: {action.dst} is no longer there")
            if os.path.lexists(src):
                raise JournalError(f"cannot undo: {action.src} is taken by another file; move it away first")
            action.state = BACKWARD[0]
            try:
                self._save()
            except JournalError:
                action.state = "done"
                raise
            self._run(action, dst, src, BACKWARD)
            return action

    def _pick_undo(self, action_id: str | None) -> tuple[Action, str, str]:
        if action_id is not None:
            matches = [a for a in self.actions if a.id == action_id]
            if not matches:
                raise JournalError(f"no action with id {str(action_id)[:80]!r}")
            if matches[-1].state != "done":
                raise JournalError(f"action {action_id} is {matches[-1].state}; only done actions can be undone")
            return (matches[-1], *self._paths(matches[-1]))
        for action in reversed(self.undoable()):
            try:
                return (action, *self._paths(action))
            except UnsafeEntryError as exc:
                self.problems.append(str(exc))
        raise JournalError("nothing to undo")

    def _run(self, action: Action, source: str, target: str, states: tuple[str, str, str]) -> None:
        """Move the file of a durably recorded pending ``action`` and record the outcome."""
        moving, finished, reverted = states
        try:
            move_no_overwrite(source, target)
        except (OSError, JournalError) as exc:
            self._abandon(action, source, target, states)
            what = "undo" if moving == BACKWARD[0] else action.kind
            if action.state == finished:  # the move itself went through; what failed came after it
                raise JournalError(f"the {what} of {action.src} was done, but the disk then reported: "
                                   f"{_one_line(exc)} (check the disk)") from None
            left = "nothing was moved" if action.state == reverted else "it will be settled on next open"
            raise JournalError(f"could not {what} {action.src}: {_one_line(exc)}; {left}") from None
        action.state = finished
        try:
            self._save()
        except JournalError as exc:
            # Never move the file back here: the journal on disk may already say it moved.
            raise JournalError(f"{action.kind} of {action.src} was {'undone' if moving == BACKWARD[0] else 'done'}, "
                               f"but recording it failed ({exc}); it is recorded on next open") from None

    def _abandon(self, action: Action, source: str, target: str, states: tuple[str, str, str]) -> None:
        """After a failed move: put things back where the journal on disk allows, best effort."""
        self._settle_failed(action, source, target, states)
        try:
            self._save()
        except (OSError, JournalError):
            action.state = states[0]  # on disk it says so; the next change or open settles it
