"""Exports create new files only: never open an existing path for writing, never replace one.

``write_new_file`` writes a temporary file beside the target, fsyncs it, then hard-links it to
the target name, which fails if that name exists (``os.replace`` would silently delete a file
the user owns). ``create_exclusive`` opens a fresh file with ``O_EXCL | O_NOFOLLOW``, so a name
that exists, or a symlink planted at it, is refused instead of written through.
Write errors become one-line :class:`RunError` messages and leave no temporary file.
"""
from __future__ import annotations

import errno
import os
import tempfile

from balancelab.engine.core.atomic import give_umask_mode
from balancelab.engine.train.run_folder import RunError


def refuse_existing(path: str) -> None:
    if os.path.lexists(path):
        raise RunError(f"{path} already exists; choose a new file name (exports never overwrite a file)")


def write_error(path: str, exc: OSError) -> RunError:
    return RunError(f"cannot write {path}: {exc.strerror or exc.__class__.__name__}")


def write_new_file(path: str, data: bytes) -> str:
    """Write ``data`` to ``path``, which must not exist; all or nothing."""
    path = os.path.abspath(path)
    refuse_existing(path)
    folder = os.path.dirname(path)
    tmp = None
    try:
        os.makedirs(folder, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-balancelab-", dir=folder)
        try:
            give_umask_mode(fd)  # an export is the user's file: the mode any program would give it
        except BaseException:
            os.close(fd)
            raise
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        _publish(tmp, path)
    except FileExistsError:
        raise RunError(f"{path} already exists; choose a new file name (exports never overwrite a file)") from None
    except OSError as exc:
        raise write_error(path, exc) from None
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    return path


def _publish(tmp: str, path: str) -> None:
    """Give ``tmp`` the name ``path`` without ever replacing an existing ``path``."""
    try:
        os.link(tmp, path)
    except OSError as exc:
        if exc.errno == errno.EEXIST:
            raise FileExistsError(path) from None
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EMLINK):
            raise
        refuse_existing(path)  # a file system without hard links: check, then rename
        os.rename(tmp, path)


def create_exclusive(path: str):
    """A new binary file at ``path`` opened for writing; FileExistsError if the name is taken."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    return os.fdopen(os.open(path, flags, 0o644), "wb")
