"""Atomic file writes: a temporary file in the target folder, fsync, then os.replace.

A crash at any moment leaves either the previous complete file or the new one, never half.
"""
from __future__ import annotations

import csv
import json
import os

import tempfile
import threading
from contextlib import contextmanager


@contextmanager
def atomic_file(path: str, mode: str = "w", suffix: str = "", errors: str = "strict"):
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=suffix, dir=folder)
    try:
        try:
            give_umask_mode(fd)
        except BaseException:
            os.close(fd)
            raise
        kwargs = {} if "b" in mode else {"encoding": "utf-8", "newline": "", "errors": errors}
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def give_umask_mode(fd: int) -> None:
    """mkstemp makes 0600; give the file the mode open() would have under the user's umask."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, 0o666 & ~_current_umask())


def _current_umask() -> int:
    """The process umask, read without changing it where the OS allows (os.umask is not thread-safe)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


_UMASK_LOCK = threading.Lock()


def write_text_atomic(path: str, text: str) -> None:
    with atomic_file(path, "w") as fh:
        fh.write(text)


def write_json_atomic(path: str, data) -> None:
    """Readable UTF-8 JSON; where a file name is not UTF-8 (a lone surrogate escape of a byte), every
    non-ASCII character is written as a \\u escape instead, which json reads back to the same name."""
    text = json.dumps(data, indent=2, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(data, indent=2)
    write_text_atomic(path, text)


def write_csv_atomic(path: str, header: list[str], rows) -> None:
    """A CSV file; a file name that is not UTF-8 is written as its own bytes (``surrogateescape``),
    so a reader using the same error handler gets the name back exactly."""
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(rows)
    with atomic_file(path, "w", errors="surrogateescape") as fh:
        fh.write(buf.getvalue())
