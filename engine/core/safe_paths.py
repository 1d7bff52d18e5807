"""Paths read back from BalanceLab's own files are untrusted input.

A journal, split.json, predictions.csv or cache index can be crafted (or damaged) to point
anywhere. Everything that turns such a string into a path to read, write, move or delete goes
through :func:`confined`, which refuses absolute paths, ``..``, NUL bytes and symlinked folders
that lead out of the root; and nothing is unlinked while it might be the only copy
(:func:`same_file`).
"""
from __future__ import annotations

import os


class UnsafePathError(ValueError):
    """A path from a file we read back points outside the folder it must stay in."""


def confined(root: str, rel_path: object, *, allow_root: bool = False) -> str:
    """The absolute path of ``rel_path`` inside ``root``, or :class:`UnsafePathError`.

    ``rel_path`` must be a relative string (``/`` or the OS separator). The result is checked
    both lexically and after resolving symlinks of its parent folders, so a symlinked class
    folder cannot carry a move or a write outside the root. The last component itself is not
    resolved: callers decide whether a symlink there is acceptable (it usually is not).
    """
    if not isinstance(rel_path, str) or not rel_path:
        raise UnsafePathError(f"not a path: {rel_path!r}")
    if "\x00" in rel_path:
        raise UnsafePathError(f"path contains a NUL byte: {rel_path!r}")
    if os.path.isabs(rel_path) or rel_path.startswith(("/", "\\")) or (
            os.name == "nt" and len(rel_path) > 1 and rel_path[1] == ":"):
        raise UnsafePathError(f"absolute path where a relative one is required: {rel_path}")
    parts = rel_path.replace("\\", "/").split("/")
    if ".." in parts:
        raise UnsafePathError(f"path leaves its folder: {rel_path}")
    real_root = os.path.realpath(root)
    full = os.path.normpath(os.path.join(real_root, *[p for p in parts if p not in ("", ".")]))
    if full == real_root and not allow_root:
        raise UnsafePathError(f"path is the folder itself: {rel_path!r}")
    real_parent = os.path.realpath(os.path.dirname(full))
    if not _is_within(real_parent, real_root) or not _is_within(full, real_root):
        raise UnsafePathError(f"path leads outside {root}: {rel_path}")
    return full


def lies_inside(path: str, root: str) -> bool:
    """Whether ``path`` (existing or not) is ``root`` or below it once links are resolved: a folder
    we would write into must not be inside the user's dataset."""
    return _is_within(os.path.realpath(path), os.path.realpath(root))


def _is_within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives
        return False


def same_file(a: str, b: str) -> bool:
    """True when ``a`` and ``b`` are the same file on disk (hard links or one path)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def is_regular_file(path: str) -> bool:
    """A regular file, not a FIFO, socket, device, folder or a symlink to one of those."""
    import stat

    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False
