"""The decoded-image cache under write faults, damaged entries and swapped files.

Every write the cache makes (temp file creation, each write, fsync, each rename) fails in turn
with ENOSPC, EIO and EACCES: decoding still returns the right pixels (or, when the images do
not fit in memory, one clear error), leaves no temp file, and the next run rebuilds cleanly.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import balancelab.engine.data.cache_files as cache_files
import balancelab.engine.data.decode_cache as decode_cache
from balancelab.engine.core.events import Finished, Progress
from balancelab.engine.data.decode_cache import CacheWriteError, decode_images
from balancelab.engine.data.imageio import load_array


def make_images(folder: Path, n: int = 6, size: int = 12, fmt: str = "BMP") -> list[str]:
    """Same-size files (BMP is uncompressed): swapping two keeps every size equal."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 255, (size, size, 3), dtype=np.uint8)
        path = folder / f"{i}.{fmt.lower()}"
        Image.fromarray(arr, "RGB").save(path, fmt)
        paths.append(str(path))
    return paths


def run(paths, cache_dir, size=8):
    events = list(decode_images(paths, 3, size, cache_dir=str(cache_dir), workers=1))
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1].result, [e.message for e in events if isinstance(e, Progress) and e.message]


def expected(paths, size=8):
    return np.stack([load_array(p, 3, size) for p in paths])


def leftovers(cache_dir: Path) -> list[str]:
    return sorted(n for n in os.listdir(cache_dir) if not cache_files._ENTRY.match(n) and not n.endswith(".json")
                  or "tmp" in n)


@pytest.fixture(autouse=True)
def settled_files(monkeypatch):
    """Files written by the test itself are seconds old at most; cache them anyway."""
    monkeypatch.setattr(cache_files, "RACY_SECONDS", 0)
    monkeypatch.setattr(decode_cache, "CHUNK", 2)  # several block writes per cache file


class Faults:
    """Wraps the write-side calls of the cache; the ``fail_at``-th call raises ``err``."""

    CALLS = ("write", "fsync", "replace")

    def __init__(self, monkeypatch, fail_at: int | None = None, err: int = errno.ENOSPC, short_writes: bool = False):
        self.count, self.fail_at, self.err, self.names = 0, fail_at, err, []
        real_os, real_mkstemp = cache_files.os, tempfile.mkstemp
        faults = self

        class FaultyOs:
            def __getattr__(self, name):
                attr = getattr(real_os, name)
                if name not in Faults.CALLS:
                    return attr

                def call(*args, **kwargs):
                    faults.hit(name)
                    if name == "write" and short_writes:
                        return attr(args[0], args[1][:max(1, len(args[1]) // 3)])
                    return attr(*args, **kwargs)
                return call

        def mkstemp(*args, **kwargs):
            faults.hit("mkstemp")
            return real_mkstemp(*args, **kwargs)

        monkeypatch.setattr(cache_files, "os", FaultyOs())
        monkeypatch.setattr(cache_files.tempfile, "mkstemp", mkstemp)

    def hit(self, name: str) -> None:
        self.names.append(name)
        self.count += 1
        if self.count - 1 == self.fail_at:
            raise OSError(self.err, os.strerror(self.err))


def count_calls(monkeypatch, paths, cache_dir) -> list[str]:
    with monkeypatch.context() as m:
        faults = Faults(m)
        run(paths, cache_dir)
    return faults.names


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO, errno.EACCES])
def test_a_failure_at_every_cache_write_still_decodes_and_leaves_nothing(tmp_path, monkeypatch, err):
    paths = make_images(tmp_path / "data")
    want = expected(paths)
    calls = count_calls(monkeypatch, paths, tmp_path / "probe")
    assert calls.count("mkstemp") == 2 and calls.count("replace") == 2 and calls.count("write") >= 4
    for index in range(len(calls)):
        cache_dir = tmp_path / f"cache-{index}"
        with monkeypatch.context() as m:
            Faults(m, fail_at=index, err=err)
            result, messages = run(paths, cache_dir)
        assert np.array_equal(result.array, want), (index, calls[index])
        assert result.ok.all() and not result.from_disk_cache
        assert leftovers(cache_dir) == [], (index, calls[index])
        assert any("not saved" in msg and os.strerror(err) in msg for msg in messages), (index, messages)
        again, _ = run(paths, cache_dir)  # the next run rebuilds cleanly ...
        assert np.array_equal(again.array, want)
        third, _ = run(paths, cache_dir)  # ... and the one after is served from it
        assert third.from_disk_cache and np.array_equal(third.array, want)
        assert leftovers(cache_dir) == []


def test_short_writes_still_produce_a_complete_cache(tmp_path, monkeypatch):
    paths = make_images(tmp_path / "data")
    with monkeypatch.context() as m:
        Faults(m, short_writes=True)
        run(paths, tmp_path / "cache")
    result, _ = run(paths, tmp_path / "cache")
    assert result.from_disk_cache and np.array_equal(result.array, expected(paths))


def test_too_big_for_memory_and_unwritable_is_one_clear_error(tmp_path, monkeypatch):
    paths = make_images(tmp_path / "data")
    monkeypatch.setattr(decode_cache, "memory_budget_bytes", lambda: 0)
    calls = count_calls(monkeypatch, paths, tmp_path / "probe")
    for index in range(len(calls)):
        cache_dir = tmp_path / f"cache-{index}"
        with monkeypatch.context() as m:
            Faults(m, fail_at=index)
            try:
                result, _ = run(paths, cache_dir)
            except CacheWriteError as exc:
                assert "No space left on device" in str(exc) and "\n" not in str(exc)
            else:  # the array was complete (mapped before its rename): only publishing failed
                assert index >= calls.index("replace") and result.memory_mapped, (index, calls[index])
                assert np.array_equal(np.asarray(result.array), expected(paths))
        assert leftovers(cache_dir) == [], (index, calls[index])
        again, _ = run(paths, cache_dir)
        assert again.memory_mapped and np.array_equal(np.asarray(again.array), expected(paths))


def test_not_enough_free_space_is_checked_first(tmp_path, monkeypatch):
    paths = make_images(tmp_path / "data")
    monkeypatch.setattr(cache_files, "FREE_SPACE_MARGIN", 1 << 60)
    result, messages = run(paths, tmp_path / "cache")
    assert np.array_equal(result.array, expected(paths))
    assert any("not enough free disk space" in m for m in messages)
    assert os.listdir(tmp_path / "cache") == []


@pytest.mark.parametrize("damage", ["truncate-npy", "garbage-json", "wrong-shape", "crafted-failure-path",
                                    "symlinked-npy", "ok-not-bools", "pickle-npy", "huge-json"])
def test_a_damaged_or_crafted_entry_is_a_miss(tmp_path, damage):
    paths = make_images(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    run(paths, cache_dir)
    key = cache_files.cache_key(paths, 3, 8)
    npy, meta_path = cache_dir / f"{key}.npy", cache_dir / f"{key}.json"
    meta = json.loads(meta_path.read_text())
    if damage == "truncate-npy":
        os.truncate(npy, npy.stat().st_size - 10)
    elif damage == "garbage-json":
        meta_path.write_text("{not json")
    elif damage == "wrong-shape":
        np.save(npy, np.zeros((6, 8, 8, 1), np.uint8))
    elif damage == "crafted-failure-path":
        meta["ok"][0] = False
        meta["failures"] = [["/etc/passwd", "x"]]
        meta_path.write_text(json.dumps(meta))
    elif damage == "symlinked-npy":
        target = tmp_path / "user-file.npy"
        os.replace(npy, target)
        os.symlink(target, npy)
    elif damage == "ok-not-bools":
        meta["ok"] = [1] * 6
        meta_path.write_text(json.dumps(meta))
    elif damage == "pickle-npy":
        np.save(npy, np.array([{"a": 1}] * 6, dtype=object), allow_pickle=True)
    elif damage == "huge-json":
        meta_path.write_text(" " * (2 * 1024**2) + json.dumps(meta))
    result, _ = run(paths, cache_dir)
    assert not result.from_disk_cache and np.array_equal(result.array, expected(paths))
    assert all(isinstance(f[0], str) and f[0] in paths for f in result.failures)
    if damage == "symlinked-npy":
        assert not npy.is_symlink()  # replaced by our own file; the link target is untouched
        assert (tmp_path / "user-file.npy").exists()
    assert run(paths, cache_dir)[0].from_disk_cache


def test_swapped_same_size_files_with_equal_mtimes_are_never_stale(tmp_path):
    paths = make_images(tmp_path / "data")
    cache_dir = tmp_path / "cache"
    a, b = paths[0], paths[1]
    assert os.path.getsize(a) == os.path.getsize(b)
    first, _ = run(paths, cache_dir)
    assert run(paths, cache_dir)[0].from_disk_cache
    times = os.stat(a).st_atime_ns, os.stat(a).st_mtime_ns
    # 1: swap by renaming, then give both the old mtime
    os.rename(a, a + ".x")
    os.rename(b, a)
    os.rename(a + ".x", b)
    for p in (a, b):
        os.utime(p, ns=times)
    swapped, _ = run(paths, cache_dir)
    assert np.array_equal(swapped.array[0], first.array[1]) and np.array_equal(swapped.array[1], first.array[0])
    # 2: rewrite in place (same inode, same size), mtime restored
    data_a, data_b = Path(a).read_bytes(), Path(b).read_bytes()
    time.sleep(0.05)
    for p, data in ((a, data_b), (b, data_a)):
        with open(p, "r+b") as fh:
            fh.write(data)
        os.utime(p, ns=times)
    rewritten, _ = run(paths, cache_dir)
    assert np.array_equal(rewritten.array, first.array)


def test_files_changed_just_now_are_decoded_but_not_cached(tmp_path, monkeypatch):
    """A change within the same timestamp tick as the previous one leaves stat unchanged: such
    files are not cached until they are a few seconds old."""
    monkeypatch.setattr(cache_files, "RACY_SECONDS", 60)
    paths = make_images(tmp_path / "data")
    result, _ = run(paths, tmp_path / "cache")
    assert np.array_equal(result.array, expected(paths))
    assert not any(n.endswith(".npy") for n in os.listdir(tmp_path / "cache"))


def test_pruning_removes_temp_files_of_dead_writers_only(tmp_path):
    import subprocess
    import sys

    key = "a" * 40
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = [tmp_path / f"{key}.npy.{dead_pid}.x1.tmp", tmp_path / f"{key}.npy.{dead_pid}.tmp.npy",
             tmp_path / f"{key}.json.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 100)
    writer = cache_files.CacheWriter(str(tmp_path), "b" * 40, (1, 2, 2, 1))  # alive and locked
    alive_unlocked = tmp_path / f"{'c' * 40}.npy.{os.getpid()}.x2.tmp"  # its pid runs: not removed
    alive_unlocked.write_bytes(b"\0")
    user_file = tmp_path / "notes.tmp"
    user_file.write_text("mine")
    try:
        removed = cache_files.prune_cache(str(tmp_path), keep=set())
        assert sorted(removed) == sorted(str(p) for p in stale)
        assert os.path.exists(writer.tmp_path) and alive_unlocked.exists() and user_file.exists()
    finally:
        writer.discard()


def test_unwritable_cache_location_falls_back_with_a_warning(tmp_path, monkeypatch):
    paths = make_images(tmp_path / "data")
    blocker = tmp_path / "home-is-a-file"
    blocker.write_text("")
    monkeypatch.setenv("BALANCELAB_HOME", str(blocker / "sub"))  # cannot be created, even by root
    events = list(decode_images(paths, 3, 8, workers=1))
    assert isinstance(events[-1], Finished)
    assert np.array_equal(events[-1].result.array, expected(paths))
    warnings = [e.message for e in events if isinstance(e, Progress) and "not usable" in (e.message or "")]
    assert len(warnings) == 1 and str(blocker / "sub") in warnings[0]
    assert "\n" not in warnings[0]


def test_no_usable_cache_folder_at_all_keeps_images_in_memory(tmp_path, monkeypatch):
    import balancelab.engine.core.paths as paths_mod

    paths = make_images(tmp_path / "data")
    blocker = tmp_path / "file"
    blocker.write_text("")
    monkeypatch.setattr(paths_mod, "_private_temp_cache", lambda: None)
    result, messages = run(paths, blocker / "cache")
    assert np.array_equal(result.array, expected(paths))
    assert any("keeping decoded images in memory only" in m for m in messages)


def test_two_writers_of_the_same_key_interleaved_step_by_step(tmp_path):
    """Deterministic version of the four-process race: each writer has its own temp files,
    so whichever publishes last simply replaces an identical entry."""
    paths = make_images(tmp_path / "data", n=9)
    cache_dir = str(tmp_path / "cache")
    gens = [decode_images(paths, 3, 8, cache_dir=cache_dir, workers=1) for _ in range(2)]
    last = [None, None]
    while any(g is not None for g in gens):
        for i, gen in enumerate(gens):
            if gen is not None:
                try:
                    last[i] = next(gen)
                except StopIteration:
                    gens[i] = None
    want = expected(paths)
    for event in last:
        assert isinstance(event, Finished) and np.array_equal(event.result.array, want)
    assert leftovers(tmp_path / "cache") == []
    assert run(paths, tmp_path / "cache")[0].from_disk_cache


def test_files_changed_just_now_and_too_big_for_memory_are_served_but_not_published(tmp_path, monkeypatch):
    monkeypatch.setattr(cache_files, "RACY_SECONDS", 60)
    monkeypatch.setattr(decode_cache, "memory_budget_bytes", lambda: 0)
    paths = make_images(tmp_path / "data")
    result, _ = run(paths, tmp_path / "cache")
    assert result.memory_mapped and np.array_equal(np.asarray(result.array), expected(paths))
    assert os.listdir(tmp_path / "cache") == []
