"""The decoded-image cache across processes: concurrent writers, a SIGKILLed parent, a real full disk."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from balancelab.engine.data.imageio import load_array
from tests.engine.test_decode_cache_faults import make_images

ROOT = Path(__file__).resolve().parents[2]
PRELUDE = (
    "import os, sys, time\n"
    "import numpy as np\n"
    "import balancelab.engine.data.cache_files as cf\n"
    "import balancelab.engine.data.decode_cache as dc\n"
    "cf.RACY_SECONDS = 0\n"
)


def _python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PRELUDE + code, *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


def _gone(pid: int) -> bool:
    """Not running (a zombie waiting for an init that does not reap counts as gone)."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            return any(line.startswith("State:") and "Z" in line for line in fh)
    except (FileNotFoundError, ProcessLookupError):  # gone before, or while, its status was read
        return True


def _temp_files(folder: Path) -> list[str]:
    return [n for n in os.listdir(folder) if "tmp" in n]


def test_four_processes_sharing_an_empty_cache_all_succeed_with_identical_arrays(tmp_path):
    paths = make_images(tmp_path / "data", n=40, size=24)
    want = np.stack([load_array(p, 3, 16) for p in paths])
    (tmp_path / "paths.txt").write_text("\n".join(paths))
    code = ("dc.CHUNK = 4\n"
            "paths = open(sys.argv[1]).read().split('\\n')\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.001)\n"
            "last = list(dc.decode_images(paths, 3, 16, cache_dir=sys.argv[3], workers=1))[-1]\n"
            "np.save(sys.argv[4], np.asarray(last.result.array))\n")
    for round_ in range(3):
        cache, go = tmp_path / f"cache-{round_}", tmp_path / f"go-{round_}"
        outs = [tmp_path / f"out-{round_}-{i}.npy" for i in range(4)]
        procs = [_python(code, str(tmp_path / "paths.txt"), str(go), str(cache), str(out)) for out in outs]
        time.sleep(1.0)  # let all four start and wait at the line
        go.write_text("")
        for proc in procs:
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, err[-2000:]
        for out in outs:
            assert np.array_equal(np.load(out), want)
        assert _temp_files(cache) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_decode_workers_die_with_a_sigkilled_parent_and_its_temp_file_is_pruned(tmp_path, method):
    paths = make_images(tmp_path / "data", n=8)
    pids = tmp_path / "pids"
    pids.mkdir()
    cache = tmp_path / "cache"
    code = ("import multiprocessing\n"
            "import balancelab.engine.data.worker_pool as wp\n"
            f"wp.pool_context = lambda: multiprocessing.get_context({method!r})\n"
            "import tests.engine.slow_chunk as slow\n"
            "dc._decode_chunk = slow.slow_chunk\n"
            "dc.PARALLEL_THRESHOLD, dc.CHUNK = 1, 2\n"
            f"list(dc.decode_images(sys.argv[1:], 3, 8, cache_dir={str(cache)!r}, workers=2))\n")
    env = {**os.environ, "SLOW_CHUNK_PIDS": str(pids)}
    parent = _python(code, *paths, env=env)
    try:
        deadline = time.monotonic() + 120
        while len(os.listdir(pids)) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.05)
        workers = [int(name) for name in os.listdir(pids)]
        assert len(workers) == 2, parent.communicate()[1][-2000:] if parent.poll() is not None else workers
        assert len(_temp_files(cache)) == 1  # the parent is writing its cache file
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=60)
        deadline = time.monotonic() + 60  # generous: only catches workers that never exit
        while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in workers), [pid for pid in workers if not _gone(pid)]
    finally:
        if parent.poll() is None:
            parent.kill()
        for name in os.listdir(pids):
            try:
                os.kill(int(name), signal.SIGKILL)
            except ProcessLookupError:
                pass
    from balancelab.engine.data.cache_files import prune_cache

    prune_cache(str(cache), keep=set())
    assert _temp_files(cache) == []


@pytest.fixture
def tiny_disk(tmp_path):
    """A 256 KB tmpfs: a real full disk (root only; skipped elsewhere)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mnt)],
                              capture_output=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        pytest.skip("mount is not available")
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True, timeout=60)


@pytest.mark.parametrize("checked", [True, False], ids=["free-space-checked", "disk-fills-while-writing"])
def test_a_really_full_disk_never_kills_the_process(tmp_path, tiny_disk, checked):
    """An old version wrote through a memory map and died of SIGBUS here (exit -7, no message)."""
    paths = make_images(tmp_path / "data", n=40, size=64)
    want = np.stack([load_array(p, 3, 64) for p in paths])
    code = ("" if checked else "dc.free_space_problem = lambda folder, nbytes: None\n") + (
        "events = list(dc.decode_images(sys.argv[3:], 3, 64, cache_dir=sys.argv[1], workers=1))\n"
        "print([e.message for e in events if getattr(e, 'message', None)])\n"
        "np.save(sys.argv[2], events[-1].result.array)\n")
    proc = _python(code, str(tiny_disk / "cache"), str(tmp_path / "out.npy"), *paths)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, (proc.returncode, err[-2000:])
    assert "not saved" in out and ("not enough free disk space" in out if checked else "No space left" in out)
    assert np.array_equal(np.load(tmp_path / "out.npy"), want)
    assert os.listdir(tiny_disk / "cache") == []
