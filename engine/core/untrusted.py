"""Reading back files that anyone could have written: run files, journals, cache indexes.

Git treats its own metadata as hostile; so does BalanceLab. This is the one reader for them: it
opens without following a link or blocking on a FIFO, refuses anything but a regular file of
plausible size, and turns every way a JSON file can be damaged (bad UTF-8, bad syntax, nesting
deep enough to exhaust the stack, a number thousands of digits long) into one
:class:`UntrustedFileError` with a one-line message. Callers check the parsed value's types.
"""
from __future__ import annotations

import errno
import json
import math
import os
import stat

#: never follow a planted link, never wait on a FIFO, never leak the descriptor into a child
OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
#: run files (split.json lists every image path; a million paths fit), out-of-fold indexes
MAX_JSON_BYTES = 256 * 1024**2


class UntrustedFileError(ValueError):
    """Why a file could not be read back: ``str()`` is ``"<path> <reason>"``, one line."""

    def __init__(self, path: str, reason: str, missing: bool = False) -> None:
        super().__init__(f"{path} {reason}")
        self.path, self.reason, self.missing = path, reason, missing


def is_finite_number(value: object) -> bool:
    """A real, finite number as read back from a file (JSON, a checkpoint): not a bool, not text,
    not NaN or infinite, and not an integer too large for a float (``math.isfinite(10**400)``
    raises OverflowError instead of answering)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of the regular file at ``path`` (at most ``limit``), never through a link."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except FileNotFoundError:
        raise UntrustedFileError(path, "does not exist", missing=True) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise UntrustedFileError(path, "is a symbolic link, not a regular file") from None
        raise UntrustedFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    except ValueError:  # a NUL in the name
        raise UntrustedFileError(path, "is not a usable file name") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UntrustedFileError(path, "is not a regular file")
        if st.st_size > limit:
            raise UntrustedFileError(path, f"is implausibly large ({st.st_size} bytes)")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, limit + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:  # it grew while we read it
            raise UntrustedFileError(path, f"is implausibly large (over {limit} bytes)")
        return b"".join(chunks)
    except OSError as exc:
        raise UntrustedFileError(path, f"cannot be read ({exc.strerror or exc})") from None
    finally:
        os.close(fd)


def parse_json(data: bytes, path: str):
    """``data`` parsed as JSON; any damage becomes an :class:`UntrustedFileError` naming ``path``."""
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UntrustedFileError(path, "is damaged (not UTF-8 text)") from None
    except RecursionError:
        raise UntrustedFileError(path, "is damaged (nested too deeply)") from None
    except ValueError as exc:
        reason = str(exc).splitlines()[0][:200] if str(exc) else "not JSON"
        if "int_max_str_digits" in reason or "digits" in reason and "limit" in reason.lower():
            reason = "a number thousands of digits long"  # Python's own advice is no help to the user
        raise UntrustedFileError(path, f"is damaged ({reason})") from None


def read_json(path: str, limit: int = MAX_JSON_BYTES):
    """The JSON value in the regular file at ``path``; its types are the caller's to check."""
    return parse_json(read_regular(path, limit), path)
