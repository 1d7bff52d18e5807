"""Fault injection in the spirit of SQLite's: every file-system call of every journal operation
fails in turn (ENOSPC from then on, or a one-off EIO / EACCES); after each, nothing is lost,
nothing is left half done, a fresh Journal recovers cleanly and undo still works. Plus the
SIGKILL loop of bench/journal_kill.py, run short."""
from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from balancelab.engine.data.journal import Journal, JournalError
from bench.journal_kill import IoHook, check_recovered, make_tree, operation_cases

REPO = Path(__file__).resolve().parents[2]


class Fault:
    """Raise ``err`` at call ``at``; when ``lasting`` (a full disk), at every write call from then on."""

    def __init__(self, at: int, err: int, lasting: bool) -> None:
        self.at, self.err, self.lasting = at, err, lasting
        self.first_hit: int | None = None

    def __call__(self, index: int, name: str, writes: bool) -> None:
        # a full disk fails every write from then on, never a read or an unlink
        if (index >= self.at and writes) if self.lasting else index == self.at:
            if self.first_hit is None:
                self.first_hit = index
            raise OSError(self.err, os.strerror(self.err))


@pytest.fixture
def work_dir(tmp_path):
    """A RAM folder when there is one: the faults are injected, real fsyncs only cost time here."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="balancelab-journal-", dir=shm))
        yield folder
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
    else:
        yield tmp_path


@pytest.mark.parametrize("err,lasting", [(errno.ENOSPC, True), (errno.EIO, False), (errno.EACCES, False)],
                         ids=["disk-full", "EIO", "EACCES"])
def test_a_failing_call_anywhere_loses_nothing(work_dir, err, lasting):
    root = str(work_dir / "ds")
    original = make_tree(root)
    checked = {}
    for name, (setup, operation) in operation_cases(root).items():
        at = 0
        while True:
            setup()
            fault = Fault(at, err, lasting)
            hook = IoHook(fault).install()
            try:
                operation()
            except JournalError as exc:
                assert "\n" not in str(exc)
            finally:
                hook.uninstall()
            try:
                check_recovered(root, original, killed=False)
            except AssertionError as exc:
                raise AssertionError(f"{name}, fault at call {at}: {exc}") from None
            if fault.first_hit is None:
                break
            at = fault.first_hit + 1
        checked[name] = at
    assert all(n >= 10 for n in checked.values()), checked  # each operation really made its calls


def test_a_failed_save_is_not_persisted_by_the_next_one(tmp_path):
    """The reproduced defect: a pending entry whose save failed stayed in memory, the next save
    wrote it, and recover() then unlinked an image that was never moved (15 became 14)."""
    root = str(tmp_path / "ds")
    original = make_tree(root)
    journal = Journal(root)
    def disk_full_on_write(index: int, name: str, writes: bool) -> None:
        if name == "file.write":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    hook = IoHook(disk_full_on_write).install()
    try:
        with pytest.raises(JournalError, match="No space left"):
            journal.relabel("train/cat/0.bin", "dog")
    finally:
        hook.uninstall()
    journal.exclude("train/cat/1.bin")
    assert [a.kind for a in Journal(root).actions] == ["exclude"]
    check_recovered(root, original)


def test_recover_never_unlinks_when_both_names_are_different_files(tmp_path):
    root = tmp_path / "ds"
    original = make_tree(str(root))
    journal = Journal(str(root))
    action = journal.relabel("train/cat/0.bin", "dog")
    other = root / "train" / "cat" / "0.bin"
    other.write_bytes(b"a new file the user put here")
    journal._entries[-1].state = "pending"
    journal._save()
    settled = Journal(str(root)).recover()
    assert settled == [] and other.read_bytes() == b"a new file the user put here"
    assert (root / action.dst).exists()
    j = Journal(str(root))
    j.recover()
    assert any("different files; kept both" in p for p in j.problems)
    other.unlink()  # the user resolves it; recovery then completes the move
    assert [a.state for a in Journal(str(root)).recover()] == ["done"]
    check_recovered(str(root), original)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="the kill loop forks")
def test_sigkill_at_any_point_loses_nothing(work_dir):
    result = subprocess.run(
        [sys.executable, str(REPO / "bench" / "journal_kill.py"), "--sweep", "--stride", "3",
         "--iterations", "16", "--dir", str(work_dir)],
        capture_output=True, text=True, timeout=900, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all checks passed" in result.stdout
    assert result.stdout.count("then recovered: OK") == 7
