"""Journaled, undoable file actions on a dataset: relabel (move to another class folder) and
exclude (move to ``_excluded/`` inside the dataset root). Nothing is ever deleted.

The journal ``.balancelab/journal.json`` in the dataset root is rewritten atomically. Each
action is recorded as ``pending`` before the file moves and ``done`` after, so an action
interrupted half way is completed or rolled back by :meth:`Journal.recover` on next start.
Moves never overwrite: a name clash gets a numbered suffix.
"""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass

from balancelab.engine.core.atomic import write_json_atomic

JOURNAL_DIR = ".balancelab"
EXCLUDED_DIR = "_excluded"


class JournalError(Exception):
    pass


@dataclass
class Action:
    id: str
    kind: str  # "relabel" or "exclude"
    src: str  # relative to the dataset root
    dst: str
    time: float
    state: str  # "pending", "done", "undone", "rolled-back"
    note: str = ""


def _safe_rel(root: str, rel_path: str) -> str:
    full = os.path.normpath(os.path.join(root, rel_path))
    if os.path.commonpath([os.path.abspath(root), os.path.abspath(full)]) != os.path.abspath(root):
        raise JournalError(f"path outside the dataset: {rel_path}")
    return full


def _move_no_overwrite(src: str, dst: str) -> None:
    """Atomic move that refuses to replace an existing file (link + unlink, else rename)."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise JournalError(f"target already exists: {dst}") from None
    except OSError:
        if os.path.exists(dst):
            raise JournalError(f"target already exists: {dst}") from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _free_name(root: str, rel_path: str) -> str:
    base, ext = os.path.splitext(rel_path)
    candidate, n = rel_path, 1
    while os.path.lexists(os.path.join(root, candidate)):
        candidate = f"{base}__{n}{ext}"
        n += 1
    return candidate


class Journal:
    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)
        self.path = os.path.join(self.root, JOURNAL_DIR, "journal.json")
        self.actions: list[Action] = []
        if os.path.exists(self.path):
            try:
                with open(self.path, encoding="utf-8") as fh:
                    self.actions = [Action(**a) for a in json.load(fh)["actions"]]
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise JournalError(f"the journal {self.path} is damaged ({exc}); it was left untouched") from None

    def _save(self) -> None:
        write_json_atomic(self.path, {"version": 1, "actions": [asdict(a) for a in self.actions]})

    def _do(self, kind: str, src: str, dst: str, note: str = "") -> Action:
        src_full = _safe_rel(self.root, src)
        if not os.path.isfile(src_full):
            raise JournalError(f"file not found: {src}")
        dst = _free_name(self.root, dst)
        _safe_rel(self.root, dst)
        action = Action(uuid.uuid4().hex[:12], kind, src, dst, time.time(), "pending", note)
        self.actions.append(action)
        self._save()
        try:
            _move_no_overwrite(src_full, os.path.join(self.root, dst))
        except (OSError, JournalError):
            action.state = "rolled-back"
            self._save()
            raise
        action.state = "done"
        self._save()
        return action

    def relabel(self, rel_path: str, new_label: str) -> Action:
        """Move ``split/old_label/.../name`` to ``split/new_label/name`` (or ``new_label/name`` when flat)."""
        parts = rel_path.replace(os.sep, "/").split("/")
        if "/" in new_label or new_label in ("", ".", ".."):
            raise JournalError(f"invalid class name: {new_label!r}")
        from balancelab.engine.data.layout import SPLIT_ALIASES

        prefix = parts[:1] if len(parts) >= 3 and parts[0].lower() in SPLIT_ALIASES else []
        dst = "/".join(prefix + [new_label, parts[-1]])
        return self._do("relabel", rel_path, dst, note=new_label)

    def exclude(self, rel_path: str) -> Action:
        return self._do("exclude", rel_path, f"{EXCLUDED_DIR}/{rel_path}")

    def undoable(self) -> list[Action]:
        return [a for a in self.actions if a.state == "done"]

    def undo(self, action_id: str | None = None) -> Action:
        """Undo one action (default: the last done one) by moving the file back."""
        candidates = self.undoable()
        if action_id is not None:
            candidates = [a for a in candidates if a.id == action_id]
        if not candidates:
            raise JournalError("nothing to undo")
        action = candidates[-1]
        dst_full = os.path.join(self.root, action.dst)
        if not os.path.isfile(dst_full):
            raise JournalError(f"cannot undo: {action.dst} is no longer there")
        _move_no_overwrite(dst_full, _safe_rel(self.root, action.src))
        action.state = "undone"
        self._save()
        return action

    def recover(self) -> list[Action]:
        """Finish or roll back actions interrupted half way; returns the actions it settled."""
        settled = []
        for action in self.actions:
            if action.state != "pending":
                continue
            src_exists = os.path.exists(os.path.join(self.root, action.src))
            dst_exists = os.path.exists(os.path.join(self.root, action.dst))
            if dst_exists and not src_exists:
                action.state = "done"
            elif dst_exists and src_exists:  # link made, unlink not yet: finish the move
                os.unlink(os.path.join(self.root, action.src))
                action.state = "done"
            else:
                action.state = "rolled-back"
            settled.append(action)
        if settled:
            self._save()
        return settled
