"""Decode every image once into a uint8 ``N x H x W x C`` array, reused by every epoch and run.

The array is also saved under the BalanceLab cache folder (see :mod:`cache_files` for the
file format, keys and how concurrent writers, crashes and full disks are handled). Datasets
that fit the memory budget are kept in RAM and the disk copy is only a cache: if it cannot be
written they train anyway. Larger ones are served memory-mapped from the complete cache file,
so a big dataset never exhausts RAM.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import numpy as np

from balancelab.engine.core.events import EventStream, Finished, Progress, StopToken
from balancelab.engine.core.paths import usable_cache_dir
from balancelab.engine.data.cache_files import (CacheWriteError, CacheWriter, cache_key, free_space_problem,
                                                 key_and_newest_change, load_cached, prune_cache, recently_changed,
                                                 touch)
from balancelab.engine.data.canonical import CANONICAL_SIZE, Canonical, derive, find_covering
from balancelab.engine.data.imageio import ImageDecodeError, load_array

__all__ = ["DecodedImages", "CacheWriteError", "cache_key", "decode_images", "memory_budget_bytes", "prune_cache"]

log = logging.getLogger("balancelab")
_logged: set[str] = set()

PARALLEL_THRESHOLD = 1500
CHUNK = 256


@dataclass
class DecodedImages:
    array: np.ndarray  # N x H x W x C uint8 (in RAM or memory-mapped)
    ok: np.ndarray  # bool per requested path
    failures: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    memory_mapped: bool = False
    from_disk_cache: bool = False


def memory_budget_bytes() -> int:
    """A quarter of physical memory: beyond that the cache stays memory-mapped."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.25)
    except (ValueError, OSError, AttributeError):
        return 2 * 1024**3


def _decode_chunk(paths: list[str], channels: int, size: int) -> tuple[np.ndarray, list[str | None]]:
    out = np.zeros((len(paths), size, size, channels), dtype=np.uint8)
    errors: list[str | None] = []
    for i, p in enumerate(paths):
        try:
            out[i] = load_array(p, channels, size)
            errors.append(None)
        except ImageDecodeError as exc:
            errors.append(exc.reason)
    return out, errors


def _chunks(n: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + CHUNK)) for i in range(0, n, CHUNK)]


def decode_images(paths: list[str], channels: int, size: int, stop: StopToken | None = None,
                  workers: int | None = None, cache_dir: str | None = None,
                  phase: str = "decoding") -> EventStream[DecodedImages | None]:
    """Yield Progress events, then Finished(DecodedImages) (``stopped`` if the stop token was set).

    Raises :class:`CacheWriteError` only when the images exceed the memory budget and the cache
    cannot be written either; every other cache problem is a Progress message and a fallback.
    """
    stop = stop or StopToken()
    n = len(paths)
    shape = (n, size, size, channels)
    in_ram = n * size * size * channels <= memory_budget_bytes()
    folder, warning = usable_cache_dir(cache_dir)
    if warning:
        yield _warning(phase, 0, n, warning)
    key, newest_change = key_and_newest_change(paths, channels, size)
    if folder is not None and n:
        cached = load_cached(folder, key, paths, shape)
        if cached is not None:
            arr, ok, failures = cached
            touch(os.path.join(folder, f"{key}.npy"))
            yield Progress(phase, n, n, "decoded images loaded from cache")
            yield Finished(DecodedImages(np.array(arr) if in_ram else arr, ok, failures, not in_ram, True))
            return
        prune_cache(folder, keep={key})
    # Files changed in the last seconds are not cached: a second change within the same
    # timestamp tick would leave the key unchanged. They are cached once they have settled.
    publish = not recently_changed(newest_change)
    if in_ram and not publish:
        folder = None
    covering = find_covering(paths, cache_dir) if n and size <= CANONICAL_SIZE else None
    for event in _decode_all(paths, shape, stop, workers, folder, key, in_ram, publish, phase, covering):
        yield event
        if isinstance(event, Finished):
            return


def _decode_all(paths: list[str], shape: tuple[int, ...], stop: StopToken, workers: int | None,
                folder: str | None, key: str, in_ram: bool, publish: bool, phase: str,
                covering: tuple[Canonical, np.ndarray] | None = None):
    """Progress events, then Finished(DecodedImages), or Finished(None, stopped=True).

    With ``covering`` (the folder's canonical decoded copy and the rows of ``paths`` in it),
    the images are derived from it by a resize: no file is read or decoded again."""
    n, size, channels = shape[0], shape[1], shape[3]
    out = np.zeros(shape, dtype=np.uint8) if in_ram else None
    ok = np.zeros(n, dtype=bool)
    failures: list[tuple[str, str]] = []
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    source = "from the decoded cache" if covering is not None else "decoding"
    yield Progress(phase, 0, n, f"{source}: {n} images to {size}x{size}")
    pool, writer = None, None
    try:
        ranges = _chunks(n)
        if covering is not None:
            canon, rows = covering
            results = ((r, derive(canon, rows[r[0]:r[1]], channels, size)) for r in ranges)
        elif workers <= 1 or n < PARALLEL_THRESHOLD:
            results = ((r, _decode_chunk(paths[r[0]:r[1]], channels, size)) for r in ranges)
        else:
            from balancelab.engine.data.worker_pool import process_pool

            pool = process_pool(workers)
            futures = [(r, pool.submit(_decode_chunk, paths[r[0]:r[1]], channels, size)) for r in ranges]
            results = ((r, f.result()) for r, f in futures)
        writer, note = _open_writer(folder, key, shape)  # after the pool forked: workers never hold its fd
        if writer is None and out is None:
            raise CacheWriteError(_too_big_message(shape, note))
        if note:
            yield _warning(phase, 0, n, note)
        for (a, b), (block, errors) in results:
            if out is not None:
                out[a:b] = block
            if writer is not None:
                writer.write(block)
                if writer.error is not None:
                    if out is None:
                        raise CacheWriteError(_too_big_message(shape, f"writing the cache failed: {writer.error}"))
                    yield _warning(phase, a, n, f"decoded-image cache not saved ({writer.error}); "
                                                "keeping the images in memory")
                    writer = None
            for i, err in enumerate(errors):
                if err is None:
                    ok[a + i] = True
                else:
                    failures.append((paths[a + i], err))
            yield Progress(phase, b, n)
            if stop.requested:
                yield Finished(None, stopped=True)
                return
        if writer is None:
            yield Finished(DecodedImages(out, ok, failures, False, False))
            return
        writer.finish()
        mapped = None
        if out is None and writer.error is None:
            mapped = np.load(writer.tmp_path, mmap_mode="r")  # this inode stays valid after the rename
        if publish:
            writer.publish(ok, failures, shape)
        else:
            writer.discard()  # the mapping keeps the data until it is dropped
        if out is None:
            if mapped is None:
                raise CacheWriteError(_too_big_message(shape, f"writing the cache failed: {writer.error}"))
            yield Finished(DecodedImages(mapped, ok, failures, True, False))
            return
        if writer.error is not None:
            yield _warning(phase, n, n, f"decoded-image cache not saved ({writer.error})")
        yield Finished(DecodedImages(out, ok, failures, False, False))
    finally:
        if writer is not None:
            writer.discard()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _warning(phase: str, done: int, total: int, message: str) -> Progress:
    """A cache fallback: shown as progress in the app, logged for the CLI (which shows no progress off a tty)."""
    if message not in _logged:  # once per process: each split would repeat it
        _logged.add(message)
        log.warning("%s", message)
    return Progress(phase, done, total, message)


def _open_writer(folder: str | None, key: str, shape: tuple[int, ...]) -> tuple[CacheWriter | None, str | None]:
    """A cache writer, or None and why not (no usable folder, not enough free space, cannot create)."""
    if folder is None:
        return None, None
    if shape[0] == 0:
        return None, None
    nbytes = int(np.prod(shape))
    problem = free_space_problem(folder, nbytes)
    if problem is not None:
        return None, f"decoded-image cache not saved: {problem}"
    writer = CacheWriter(folder, key, shape)
    if writer.error is not None:
        return None, f"decoded-image cache not saved ({writer.error}); keeping the images in memory"
    return writer, None


def _too_big_message(shape: tuple[int, ...], why: str | None) -> str:
    gb = int(np.prod(shape)) / 1024**3
    return (f"cannot keep {shape[0]} decoded images ({gb:.1f} GB) in memory and cannot cache them on disk"
            f" ({why or 'no usable cache folder'}): free disk space or set BALANCELAB_HOME to a larger disk")
