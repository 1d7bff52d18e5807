"""The decoded-image cache on disk: ``<key>.npy`` (pixels) + ``<key>.json`` (index), both untrusted.

Writers stream into a private temp file (``<key>.npy.<pid>.<random>.tmp``) with ordinary
writes, never through a memory map (a full disk would raise SIGBUS and kill the process),
hold an flock on it while alive, and publish with ``os.replace``: readers see a complete file
or none. Readers validate everything they load; anything odd is a cache miss. Pruning removes
temp files whose writer is gone (unlocked, pid not running) and old caches beyond a size budget.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import tempfile
import time

import numpy as np

from balancelab.engine.core.locks import try_lock_fd
from balancelab.engine.core.untrusted import OPEN_FLAGS, read_json

CACHE_VERSION = 4  # 4: content digests are BLAKE3 (3: SHA-256, 2: BLAKE2b): old entries never mix with new ones
#: Kept free beyond the cache itself, so the cache never fills the disk for everyone else.
FREE_SPACE_MARGIN = 64 * 1024**2
_ENTRY = re.compile(r"^[0-9a-f]{40}\.npy$")
#: Our temp files, and those of older versions (``<key>.npy.<pid>.tmp.npy``, ``<key>.json.tmp``).
_TEMP = re.compile(r"^[0-9a-f]{40}\.(?:npy|json)\.(?:(\d+)\.)?.*tmp(?:\.npy)?$")


class CacheWriteError(OSError):
    """The cache could not be written and the images are too many to keep in memory instead."""


def cache_key(paths: list[str], channels: int, size: int) -> str:
    """Names the decoded array of exactly these files in this state (see :func:`key_and_newest_change`)."""
    return key_and_newest_change(paths, channels, size)[0]


def key_and_newest_change(paths: list[str], channels: int, size: int) -> tuple[str, int]:
    """(cache key, newest ctime among the files in ns).

    Size and mtime alone miss a swap of two same-size files with equal mtimes (anyone can set
    mtime); the inode and ctime cannot be forged: any rename, rewrite or utime sets ctime to
    the kernel's clock. Stat-based rather than a content hash, so a cache hit costs one stat
    per file instead of reading the whole dataset again. The one gap, a change within the
    same clock tick as the previous one, is closed by :func:`recently_changed`.
    """
    sigs, newest = file_signatures(paths)
    return key_from_signatures(sigs, channels, size), newest


def file_signatures(paths: list[str]) -> tuple[list[str], int]:
    """One ``path|dev|ino|size|mtime|ctime`` line per file (``path|missing`` if gone), and the
    newest ctime in ns: what a cache key is made of, kept per file by the canonical cache."""
    lines = []
    newest = 0
    for p in paths:
        try:
            st = os.stat(p)
        except OSError:
            lines.append(f"{p}|missing")
            continue
        lines.append(f"{p}|{st.st_dev}|{st.st_ino}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}")
        if st.st_ctime_ns > newest:  # the kernel's clock; mtime can be anything
            newest = st.st_ctime_ns
    return lines, newest


def key_from_signatures(sigs: list[str], channels: int, size: int) -> str:
    text = f"v{CACHE_VERSION}|{channels}|{size}\n" + "".join(line + "\n" for line in sigs)
    return hashlib.sha1(text.encode("utf-8", "surrogateescape")).hexdigest()


#: Files changed less than this before decoding are not cached: a second change within the
#: same timestamp tick (coarse on some file systems) would leave their stat, and so the key, unchanged.
RACY_SECONDS = 2.0


def recently_changed(newest_change_ns: int) -> bool:
    return newest_change_ns >= time.time_ns() - int(RACY_SECONDS * 1e9)


def load_cached(folder: str, key: str, paths: list[str], shape: tuple[int, ...]):
    """(memory-mapped array, ok, failures) of a complete, valid cache entry, or None (a miss)."""
    try:
        meta = read_json(os.path.join(folder, f"{key}.json"), 1024**2 + 8192 * len(paths))
        index = _valid_index(meta, paths, shape)
        arr_path = os.path.join(folder, f"{key}.npy")
        if index is None or not stat.S_ISREG(os.lstat(arr_path).st_mode):
            return None
        arr = np.load(arr_path, mmap_mode="r", allow_pickle=False)
        if (not isinstance(arr, np.memmap) or arr.dtype != np.uint8 or arr.shape != shape
                or not arr.flags.c_contiguous or os.path.getsize(arr_path) != arr.offset + arr.nbytes):
            return None
        return (arr, *index)
    except Exception:  # a damaged or crafted entry is a miss, never a crash
        return None


def _valid_index(meta, paths: list[str], shape: tuple[int, ...]):
    n = shape[0]
    if not isinstance(meta, dict) or meta.get("version") != CACHE_VERSION:
        return None
    if [meta.get("n"), meta.get("size"), meta.get("channels")] != [n, shape[1], shape[3]]:
        return None
    ok, failures = meta.get("ok"), meta.get("failures")
    if not isinstance(ok, list) or len(ok) != n or not set(map(type, ok)) <= {bool}:
        return None
    if not isinstance(failures, list) or len(failures) != ok.count(False):
        return None
    known = set(paths) if failures else set()
    if not all(isinstance(f, list) and len(f) == 2 and f[0] in known and isinstance(f[1], str) for f in failures):
        return None
    return np.array(ok, dtype=bool), [(f[0], f[1]) for f in failures]


def free_space_problem(folder: str, nbytes: int) -> str | None:
    """Why ``nbytes`` should not be written to ``folder`` now, or None."""
    try:
        st = os.statvfs(folder)
    except (OSError, AttributeError):
        return None
    free = st.f_bavail * st.f_frsize
    if free < nbytes + FREE_SPACE_MARGIN:
        return f"not enough free disk space in {folder} (needs {_mb(nbytes + FREE_SPACE_MARGIN)}, {_mb(free)} free)"
    return None


def _mb(n: int) -> str:
    return f"{n / 1024**2:.0f} MB"


class CacheWriter:
    """Streams an ``.npy`` into a private temp file; publishes it atomically, or leaves nothing.

    Any OSError (ENOSPC, EIO, EACCES...) while writing is kept in ``error`` and the temp file
    removed at once; the caller then keeps its in-memory copy. Nothing here raises OSError.
    """

    def __init__(self, folder: str, key: str, shape: tuple[int, ...]) -> None:
        self.folder, self.key = folder, key
        self.error: str | None = None
        self.tmp_path: str | None = None
        self._fd: int | None = None
        try:
            self._fd, self.tmp_path = _locked_temp(folder, f"{key}.npy")
            header = io.BytesIO()
            np.lib.format.write_array_header_1_0(header, {"descr": "|u1", "fortran_order": False, "shape": shape})
            _write_all(self._fd, header.getvalue())
        except OSError as exc:
            self._fail(exc)

    def write(self, block: np.ndarray) -> None:
        if self.error is None:
            try:
                _write_all(self._fd, np.ascontiguousarray(block, dtype=np.uint8))
            except OSError as exc:
                self._fail(exc)

    def finish(self) -> None:
        """Make the temp file's contents durable (before it is mapped or published)."""
        if self.error is None:
            try:
                os.fsync(self._fd)
            except OSError as exc:
                self._fail(exc)

    def publish(self, ok: np.ndarray, failures: list[tuple[str, str]], shape: tuple[int, ...],
                extra: dict | None = None) -> None:
        """Move the array into place, then its index (a reader needs both, so it never sees half).
        ``extra`` adds fields to the index (the canonical cache's paths, signatures and digests)."""
        if self.error is not None:
            return
        meta = {"version": CACHE_VERSION, "n": shape[0], "size": shape[1], "channels": shape[3],
                "ok": ok.tolist(), "failures": [list(f) for f in failures], **(extra or {})}
        try:
            os.replace(self.tmp_path, os.path.join(self.folder, f"{self.key}.npy"))
            self.tmp_path = None
            publish_bytes(self.folder, f"{self.key}.json", json.dumps(meta).encode())
        except OSError as exc:
            self._fail(exc)
        self.close()

    def _fail(self, exc: OSError) -> None:
        self.error = f"{exc.strerror or exc}"
        self.discard()

    def discard(self) -> None:
        if self.tmp_path is not None:
            _remove(self.tmp_path)
            self.tmp_path = None
        self.close()

    def close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:
                pass


def _locked_temp(folder: str, final_name: str) -> tuple[int, str]:
    """A new private temp file for ``final_name``, locked for as long as this process lives."""
    fd, path = tempfile.mkstemp(prefix=f"{final_name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        if not try_lock_fd(fd):
            raise OSError("cache temp file locked by another process")
    except BaseException:
        os.close(fd)
        _remove(path)
        raise
    return fd, path


def publish_bytes(folder: str, final_name: str, data: bytes) -> None:
    fd, tmp = _locked_temp(folder, final_name)
    try:
        _write_all(fd, data)
        os.fsync(fd)
        os.replace(tmp, os.path.join(folder, final_name))
    except BaseException:
        _remove(tmp)
        raise
    finally:
        os.close(fd)


def _write_all(fd: int, data) -> None:
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view):]


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except OSError:
        pass


def _writer_gone(path: str, name: str) -> bool:
    """True when no live process writes this temp file: its lock is free and its pid is not running."""
    try:
        fd = os.open(path, OPEN_FLAGS)
    except OSError:
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode) or not try_lock_fd(fd):
            return False
    finally:
        os.close(fd)
    match = _TEMP.match(name)
    pid = int(match.group(1)) if match and match.group(1) else 0
    return not _pid_running(pid)


def _pid_running(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, but belongs to someone else
        return True
    return True


def prune_cache(cache_dir: str, keep: set[str], max_bytes: int | None = None) -> list[str]:
    """Delete temp files of dead writers, then the least recently used caches beyond ``max_bytes``
    (default: 20 GB or a quarter of the free disk, whichever is smaller). Only BalanceLab's own
    cache files (by name) are ever touched."""
    if max_bytes is None:
        try:
            st = os.statvfs(cache_dir)
            max_bytes = min(20 * 1024**3, st.f_bavail * st.f_frsize // 4)
        except (OSError, AttributeError):
            max_bytes = 20 * 1024**3
    try:
        names = os.listdir(cache_dir)
    except OSError:
        return []
    removed, entries = [], []
    for name in names:
        path = os.path.join(cache_dir, name)
        if _TEMP.match(name):
            if _writer_gone(path, name):
                _remove(path)
                removed.append(path)
        elif _ENTRY.match(name):
            try:
                st = os.lstat(path)
            except OSError:
                continue
            entries.append((st.st_atime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if os.path.basename(path)[:-4] in keep:
            continue
        for victim in (path, path[:-4] + ".json"):
            _remove(victim)
        total -= size
        removed.append(path)
    return removed


def touch(path: str) -> None:
    """Mark a cache entry as used now (atime is often not updated: relatime, noatime)."""
    try:
        now = time.time()
        os.utime(path, (now, os.lstat(path).st_mtime), follow_symlinks=False)
    except (OSError, NotImplementedError):
        pass
