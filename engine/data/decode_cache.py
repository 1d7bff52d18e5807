"""Decode every image once into a uint8 ``N x H x W x C`` array, reused by every epoch and run.

The array is built in a ``.npy`` file under the BalanceLab cache folder (keyed by the
files' paths, sizes, mtimes and the target size), written under a temporary name and
renamed when complete. Small caches are then copied into RAM; caches larger than the
memory budget stay memory-mapped, so a big dataset never exhausts RAM.
"""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from balancelab.engine.core.events import Finished, Progress, StopToken
from balancelab.engine.data.imageio import ImageDecodeError, load_array
from balancelab.engine.core.paths import data_home

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


def prune_cache(cache_dir: str, keep: set[str], max_bytes: int | None = None) -> list[str]:
    """Delete the least recently used decoded-image caches beyond ``max_bytes`` (default: 20 GB or
    a quarter of the free disk, whichever is smaller). Only BalanceLab's own cache files are touched."""
    if max_bytes is None:
        try:
            st = os.statvfs(cache_dir)
            max_bytes = min(20 * 1024**3, st.f_bavail * st.f_frsize // 4)
        except (OSError, AttributeError):
            max_bytes = 20 * 1024**3
    entries = []
    for name in os.listdir(cache_dir):
        if name.endswith(".npy") and ".tmp" not in name and len(name) == 44:
            path = os.path.join(cache_dir, name)
            try:
                st = os.stat(path)
            except OSError:
                continue
            entries.append((st.st_atime, st.st_size, path))
    total = sum(size for _, size, _ in entries)
    removed = []
    for _, size, path in sorted(entries):
        if total <= max_bytes:
            break
        if os.path.basename(path)[:-4] in keep:
            continue
        for victim in (path, path[:-4] + ".json"):
            try:
                os.remove(victim)
            except OSError:
                pass
        total -= size
        removed.append(path)
    return removed


def cache_key(paths: list[str], channels: int, size: int) -> str:
    h = hashlib.sha1(f"v1|{channels}|{size}".encode())
    for p in paths:
        try:
            st = os.stat(p)
            h.update(f"{p}|{st.st_size}|{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        except OSError:
            h.update(f"{p}|missing\n".encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def _decode_chunk(paths: list[str], channels: int, size: int) -> tuple[np.ndarray, list[str | None]]:
    out = np.zeros((len(paths), size, size, channels), dtype=np.uint8)
    errors: list[str | None] = []
    for i, p in enumerate(paths):
        try:
            out[i] = load_array(p, channels, size)
            errors.append(None)
        except ImageDecodeError as exc:
            errors.append(exc.reason)
        except Exception as exc:  # a decoder bug must not kill a whole training run
            errors.append(f"cannot decode: {exc}")
    return out, errors


def _chunks(n: int) -> list[tuple[int, int]]:
    return [(i, min(n, i + CHUNK)) for i in range(0, n, CHUNK)]


def decode_images(paths: list[str], channels: int, size: int, stop: StopToken | None = None,
                  workers: int | None = None, cache_dir: str | None = None,
                  phase: str = "decoding") -> Iterator:
    """Yield Progress events, then Finished(DecodedImages) (``stopped`` if the stop token was set)."""
    stop = stop or StopToken()
    n = len(paths)
    cache_dir = cache_dir or str(data_home() / "cache")
    os.makedirs(cache_dir, exist_ok=True)
    key = cache_key(paths, channels, size)
    arr_path = os.path.join(cache_dir, f"{key}.npy")
    meta_path = os.path.join(cache_dir, f"{key}.json")
    nbytes = n * size * size * channels
    in_ram = nbytes <= memory_budget_bytes()
    if os.path.exists(arr_path) and os.path.exists(meta_path):
        try:
            with open(meta_path, encoding="utf-8") as fh:
                meta = json.load(fh)
            arr = np.load(arr_path, mmap_mode="r")
            if arr.shape == (n, size, size, channels):
                ok = np.array(meta["ok"], dtype=bool)
                failures = [tuple(f) for f in meta["failures"]]
                yield Progress(phase, n, n, "decoded images loaded from cache")
                yield Finished(DecodedImages(np.array(arr) if in_ram else arr, ok, failures, not in_ram, True))
                return
        except (OSError, ValueError, KeyError, json.JSONDecodeError):
            pass  # stale or damaged cache: rebuild below
    tmp_path = f"{arr_path}.{os.getpid()}.tmp.npy"
    out = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=np.uint8, shape=(max(n, 0), size, size, channels))
    ok = np.zeros(n, dtype=bool)
    failures: list[tuple[str, str]] = []
    workers = workers if workers is not None else min(4, os.cpu_count() or 1)
    yield Progress(phase, 0, n, f"decoding {n} images to {size}x{size}")
    done = 0
    try:
        ranges = _chunks(n)
        if workers <= 1 or n < PARALLEL_THRESHOLD:
            results = ((r, _decode_chunk(paths[r[0]:r[1]], channels, size)) for r in ranges)
            pool = None
        else:
            from balancelab.engine.data.scanner import pool_context

            pool = ProcessPoolExecutor(max_workers=workers, mp_context=pool_context())
            futures = [(r, pool.submit(_decode_chunk, paths[r[0]:r[1]], channels, size)) for r in ranges]
            results = ((r, f.result()) for r, f in futures)
        try:
            for (a, b), (block, errors) in results:
                out[a:b] = block
                for i, err in enumerate(errors):
                    if err is None:
                        ok[a + i] = True
                    else:
                        failures.append((paths[a + i], err))
                done = b
                yield Progress(phase, done, n)
                if stop.requested:
                    break
        finally:
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        if stop.requested:
            del out
            os.remove(tmp_path)
            yield Finished(None, stopped=True)
            return
        out.flush()
        del out
        os.replace(tmp_path, arr_path)
        meta_tmp = meta_path + ".tmp"
        with open(meta_tmp, "w", encoding="utf-8") as fh:
            json.dump({"ok": ok.tolist(), "failures": failures, "n": n, "size": size, "channels": channels}, fh)
        os.replace(meta_tmp, meta_path)
        prune_cache(cache_dir, keep={key})
    except BaseException:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        raise
    arr = np.load(arr_path, mmap_mode="r")
    yield Finished(DecodedImages(np.array(arr) if in_ram else arr, ok, failures, not in_ram, False))
