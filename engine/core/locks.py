"""One writer at a time: an advisory lock file shared by every BalanceLab process.

The app and the CLI take the same lock (``fcntl.flock`` on a file beside what they write), so a
second process gets a clear refusal instead of interleaving its writes. The kernel drops the
lock when the holder dies (SIGKILL included), so a stale lock never blocks anyone. The lock file
records who holds it, for the message.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import time


class LockedError(RuntimeError):
    """Another process holds the lock; the message says which, for the user."""


class FileLock:
    """An exclusive, non-blocking, re-entrant-per-object lock on ``path``."""

    def __init__(self, path: str, what: str) -> None:
        self.path = path
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "FileLock":
        if self._fd is not None:
            return self
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
                     | getattr(os, "O_NONBLOCK", 0), 0o666)  # a FIFO planted under the name must not block
        try:
            _lock(fd)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise LockedError(f"{self.what} is in use by another BalanceLab process{holder}; "
                              "close it or wait for it to finish") from None
        except BaseException:
            os.close(fd)
            raise
        try:
            st = os.fstat(fd)
            # the holder note rewrites the file: only a plain file with this one name (a hard link
            # planted under the lock's name would carry the truncation into someone's file)
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
                info = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, info, 0)
        except OSError:
            pass  # the lock itself is what matters; the holder note is a courtesy
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            _unlock(fd)
        finally:
            os.close(fd)

    def __enter__(self) -> "FileLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lock must not outlive its object
        try:
            self.release()
        except Exception:
            pass


def _read_holder(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0) or b"{}")
        if isinstance(info, dict) and isinstance(info.get("pid"), int):
            return f" (pid {info['pid']} on {info.get('host', '?')})"
    except (OSError, ValueError):
        pass
    return ""


try:
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
except ImportError:  # Windows
    import msvcrt

    def _lock(fd: int) -> None:
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            raise BlockingIOError from None

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, 0)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def held_by_another(path: str) -> bool:
    """Whether another process holds the lock at ``path``, found without writing anything (taking the
    lock with FileLock would rewrite its holder note: a reader must leave the folder it reads as it is)."""
    try:
        # O_NONBLOCK: a FIFO planted under the lock's name must not hang the reader until a writer comes
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
                     | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        return False
    try:
        if not try_lock_fd(fd):
            return True
        _unlock(fd)
        return False
    finally:
        os.close(fd)


def try_lock_fd(fd: int) -> bool:
    """Lock an already open file exclusively without blocking; False when another process holds it.
    For files that are their own lock (a cache writer's temp file), where FileLock's holder note
    would overwrite the contents."""
    try:
        _lock(fd)
        return True
    except BlockingIOError:
        return False
