"""The journal file ``.balancelab/journal.json``: reading it as untrusted input, writing it durably.

Whatever is in the file may be damaged or crafted. A file that is not a readable JSON journal is
refused as a whole and left untouched; an entry with wrong types, an unknown kind or state, or a
repeated id is kept verbatim (so nothing the user had is lost) but never acted upon. Paths inside
entries are checked later, where they are used (:func:`balancelab.engine.core.safe_paths.confined`).

A save is durable before it returns: temp file, fsync, replace, then fsync of the folder, so an
entry saved as ``pending`` is on disk before the file it describes is touched.
"""
from __future__ import annotations

import errno
import json
import os
import stat
from dataclasses import asdict, dataclass
from typing import Union

from balancelab.engine.core import untrusted
from balancelab.engine.core.atomic import atomic_file

JOURNAL_DIR = ".balancelab"
JOURNAL_NAME = "journal.json"
LOCK_NAME = "journal.lock"
#: Suffix of the journal's own temp files, so stale ones (left by a SIGKILL) can be swept safely.
TEMP_SUFFIX = ".journal-tmp"
FORMAT_VERSION = 2
MAX_JOURNAL_BYTES = 256 * 1024 * 1024
MAX_ID_CHARS = 64

KINDS = ("relabel", "exclude")
#: pending: the move is about to happen or half done; undoing: the same for its undo.
STATES = ("pending", "done", "undoing", "undone", "rolled-back")


class JournalError(Exception):
    """Any journal failure; the message is one line meant for the user."""


class JournalDamagedError(JournalError):
    """The journal file cannot be read as a journal; it was left untouched."""


class JournalBusyError(JournalError):
    """Another process (or window) is changing this dataset's journal right now."""


class UnsafeEntryError(JournalError):
    """An entry points outside the dataset, or at something that is not a plain file."""


@dataclass
class Action:
    id: str
    kind: str  # one of KINDS
    src: str  # relative to the dataset root, "/" separated
    dst: str
    time: float
    state: str  # one of STATES
    note: str = ""


#: A journal entry as kept in memory: a valid Action, or an unreadable entry kept verbatim.
Entry = Union[Action, object]


def entry_problem(raw: object) -> str | None:
    """Why ``raw`` cannot be used as an action, or None when it is a valid one."""
    if not isinstance(raw, dict):
        return f"entry is a {type(raw).__name__}, not an object"
    required = {"id", "kind", "src", "dst", "time", "state"}
    keys = set(raw)
    if not required <= keys or not keys <= required | {"note"}:
        return f"entry has keys {sorted(map(str, keys))}"
    for key in ("id", "kind", "src", "dst", "state", "note"):
        if key in raw and not isinstance(raw[key], str):
            return f"entry field {key!r} is not a string"
    if not (0 < len(raw["id"]) <= MAX_ID_CHARS):
        return "entry id is empty or too long"
    if not all(c.isascii() and (c.isalnum() or c in "-_.") for c in raw["id"]):  # ours are hex
        return "entry id holds characters no id has (control characters could forge a listing)"
    if raw["kind"] not in KINDS:
        return f"unknown kind {raw['kind'][:40]!r}"
    if raw["state"] not in STATES:
        return f"unknown state {raw['state'][:40]!r}"
    t = raw["time"]
    if not untrusted.is_finite_number(t):
        return "entry time is not a number"
    for key in ("src", "dst"):
        try:
            os.fsencode(raw[key])
        except UnicodeError:  # e.g. a lone surrogate that is no escaped byte: no file can have this name
            return f"entry field {key!r} is no file name"
    return None


def parse_entries(raw_actions: list) -> tuple[list[Entry], list[str]]:
    """Valid entries become Actions; the rest stay as they were, with a problem line each."""
    entries: list[Entry] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_actions):
        problem = entry_problem(raw)
        if problem is None and raw["id"] in seen:
            problem = f"entry id {raw['id']!r} appears twice"
        if problem is None:
            action = Action(**raw)
            seen.add(action.id)
            entries.append(action)
        else:
            entries.append(raw)
            problems.append(f"journal entry {index + 1} was ignored and kept as it is: {problem}")
    return entries, problems


def _read_document(path: str):
    """The journal's parsed JSON, None when there is none yet; refuses links, non-files and damage."""
    try:
        return untrusted.read_json(path, MAX_JOURNAL_BYTES)
    except untrusted.UntrustedFileError as exc:
        if exc.missing:
            return None
        advice = "; move it away to start a new one" if exc.reason.startswith("is damaged") else ""
        raise JournalDamagedError(f"the journal {exc}; it was left untouched{advice}") from None


def load_journal(path: str) -> tuple[list[Entry], list[str]]:
    """Entries and problem lines of the journal at ``path`` (empty when there is none yet)."""
    doc = _read_document(path)
    if doc is None:
        return [], []
    if not isinstance(doc, dict) or not isinstance(doc.get("actions"), list):
        raise JournalDamagedError(f"the journal {path} is damaged (no list of actions); it was left untouched; "
                                  "move it away to start a new one")
    version = doc.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise JournalDamagedError(f"the journal {path} is damaged (version {str(version)[:40]!r}); it was left untouched")
    if version > FORMAT_VERSION:
        raise JournalDamagedError(f"the journal {path} was written by a newer BalanceLab (format {version}); "
                                  "it was left untouched")
    return parse_entries(doc["actions"])


def fsync_dir(folder: str) -> None:
    """Make a rename, link or unlink in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except (OSError, AttributeError):
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:  # some file systems cannot fsync folders
            raise
    finally:
        os.close(fd)


def save_journal(path: str, entries: list[Entry]) -> None:
    """Write every entry (unreadable ones verbatim) durably, or raise JournalError leaving the old file."""
    payload = {"version": FORMAT_VERSION,
               "actions": [asdict(e) if isinstance(e, Action) else e for e in entries]}
    try:
        text = json.dumps(payload, indent=1, ensure_ascii=True)
        with atomic_file(path, "w", suffix=TEMP_SUFFIX) as fh:
            fh.write(text)
        fsync_dir(os.path.dirname(path))
    except (OSError, ValueError, RecursionError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise JournalError(f"could not write the journal {path} ({reason})") from None


def _looks_like_journal_text(path: str) -> bool:
    """A journal writer's temp file holds JSON text (empty or cut short when killed) under one
    name; anything else under such a name (an image moved there by a crafted entry, a second
    name of a user's file) is not ours to remove."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    try:
        if os.fstat(fd).st_nlink != 1:
            return False
        head = os.read(fd, 64).lstrip()
    finally:
        os.close(fd)
    return not head or head[:1] == b"{"


def sweep_stale_temps(folder: str) -> None:
    """Remove the journal's temp files a killed writer left (call only while holding the lock)."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if name.startswith(".tmp-") and name.endswith(TEMP_SUFFIX):
            full = os.path.join(folder, name)
            try:
                if stat.S_ISREG(os.lstat(full).st_mode) and _looks_like_journal_text(full):
                    os.unlink(full)
            except OSError:
                pass  # harmless: a leftover temp file is swept next time
