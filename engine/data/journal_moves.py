"""Moving one file inside a dataset so that a crash at any instant can be settled from disk alone.

A move is ``link(source, target)`` then ``unlink(source)``: at every instant the file is at the
source, at both (one inode, two names) or at the target, never nowhere and never overwriting
anything. :func:`settle` looks at which of those it is and finishes or reverts the move. Nothing
is unlinked unless the other name is verified to be the same plain file (same inode), so the
only copy of anything is never deleted.
"""
from __future__ import annotations

import errno
import os
import stat

from balancelab.engine.core.safe_paths import same_file
from balancelab.engine.data.journal_store import JournalError, fsync_dir

#: link() failures that mean "this file system has no hard links", not "this move is wrong".
_NO_HARD_LINKS = {errno.EPERM, errno.EXDEV, errno.EMLINK, getattr(errno, "ENOTSUP", -1),
                  getattr(errno, "EOPNOTSUPP", -1)}

_LINK_CAN_NOT_FOLLOW = os.link in os.supports_follow_symlinks


def is_plain_file(path: str) -> bool:
    """A regular file and not a symlink (lstat), so moving or unlinking it touches only itself."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except (OSError, ValueError):
        return False


def _same_plain_file(a: str, b: str) -> bool:
    return is_plain_file(a) and is_plain_file(b) and same_file(a, b)


def resolved_name(path: str) -> str:
    """``path`` with the links of its folders followed (the last component kept as it is): two
    spellings of one directory entry give the same string."""
    return os.path.join(os.path.realpath(os.path.dirname(path)), os.path.basename(path))


def move_no_overwrite(source: str, target: str) -> None:
    """Move a plain file (absolute, already confined paths); refuses to replace anything."""
    if not is_plain_file(source):
        raise JournalError(f"not a plain file: {source}")
    if os.path.lexists(target):
        raise JournalError(f"the target already exists: {target}")
    os.makedirs(os.path.dirname(target), exist_ok=True)
    try:
        if _LINK_CAN_NOT_FOLLOW:  # source was checked to be a plain file; still, never link through a link
            os.link(source, target, follow_symlinks=False)
        else:
            os.link(source, target)
    except FileExistsError:
        raise JournalError(f"the target already exists: {target}") from None
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS or os.path.lexists(target):
            raise
        os.rename(source, target)  # no hard links here; we hold the journal lock, target checked free
    else:
        if not _same_plain_file(source, target):  # replaced behind our back: keep both, settle reports it
            raise JournalError(f"{source} changed while it was being moved; both names were kept")
        try:
            os.unlink(source)
        except OSError:
            try:  # take the second name away again, so the move is cleanly not done
                if _same_plain_file(source, target):
                    os.unlink(target)
            except OSError:
                pass  # both names left: settle() finishes or reverts it from disk
            raise
    fsync_dir(os.path.dirname(target))
    fsync_dir(os.path.dirname(source))


def settle(source: str, target: str, *, prefer_finish: bool) -> tuple[bool | None, str]:
    """Bring an interrupted move of ``source`` to ``target`` to an end.

    Returns (True, note) when the file is now at the target only, (False, note) when it is at the
    source only or nowhere, and (None, reason) when it left things as they are because they are not
    what our move produces (both names exist as different files, or a non-file is in the way).
    """
    at_source, at_target = os.path.lexists(source), os.path.lexists(target)
    if at_target and not at_source:
        if is_plain_file(target):
            return True, ""
        return None, f"{target} is not a plain file; left as it is"
    if at_source and not at_target:
        return False, ""
    if not at_source:
        return False, "the file is at neither place (removed outside BalanceLab?)"
    if not _same_plain_file(source, target):
        return None, f"{source} and {target} are both present and different files; kept both"
    if os.lstat(source).st_nlink < 2 or os.path.normcase(resolved_name(source)) == os.path.normcase(
            resolved_name(target)):  # one name reached two ways (case, links in the path): never unlink it
        return None, f"{source} and {target} are one name of one file; left as it is"
    drop = source if prefer_finish else target
    os.unlink(drop)
    fsync_dir(os.path.dirname(drop))
    return prefer_finish, ""
