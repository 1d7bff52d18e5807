"""Confinement of paths read back from files, and the cross-process lock."""
import os
import subprocess
import sys

import pytest

from balancelab.engine.core.locks import FileLock, LockedError
from balancelab.engine.core.safe_paths import UnsafePathError, confined, same_file


def test_confined_accepts_paths_inside_and_refuses_every_escape(tmp_path):
    (tmp_path / "a").mkdir()
    os.symlink(str(tmp_path.parent), tmp_path / "a" / "out")
    assert confined(str(tmp_path), "a/x.png") == str(tmp_path / "a" / "x.png")
    assert confined(str(tmp_path), "a/./b/x.png") == str(tmp_path / "a" / "b" / "x.png")
    for bad in ["../x", "/etc/passwd", "a/../../x", "a/out/x", "", None, 3, ["a"], "a\x00b", "."]:
        with pytest.raises(UnsafePathError):
            confined(str(tmp_path), bad)


def test_same_file_sees_hard_links(tmp_path):
    a = tmp_path / "a.png"
    a.write_bytes(b"x")
    os.link(a, tmp_path / "b.png")
    (tmp_path / "c.png").write_bytes(b"x")
    assert same_file(str(a), str(tmp_path / "b.png"))
    assert not same_file(str(a), str(tmp_path / "c.png"))
    assert not same_file(str(a), str(tmp_path / "missing.png"))


def test_a_second_process_is_refused_and_a_killed_holder_frees_the_lock(tmp_path):
    path = str(tmp_path / ".lock")
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\n"
                               "from balancelab.engine.core.locks import FileLock\n"
                               f"lock = FileLock({path!r}, 'x').acquire(); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(LockedError, match=f"pid {holder.pid}"):
            FileLock(path, "the dataset").acquire()
    finally:
        holder.kill()
        holder.wait()
    with FileLock(path, "the dataset") as lock:  # SIGKILL released it
        assert lock.held
