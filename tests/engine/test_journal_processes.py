"""Two processes on one dataset's journal: a held lock gives a clear one-line JournalError after a
short wait; processes changing the journal at the same time never lose an entry."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from balancelab.engine.data.journal import Journal, JournalBusyError

HOLD_LOCK = textwrap.dedent("""
    import sys
    from balancelab.engine.core.locks import FileLock
    lock = FileLock(sys.argv[1], "this dataset's journal").acquire()
    print("ready", flush=True)
    sys.stdin.read()  # hold it until the test closes our stdin
""")

RELABEL_MANY = textwrap.dedent("""
    import sys
    from balancelab.engine.data.journal import Journal, JournalBusyError
    root, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    for i in range(count):
        for attempt in range(50):  # a busy journal is a clear refusal; a script may simply retry
            try:
                Journal(root).relabel(f"a/{prefix}{i}.bin", "b")
                break
            except JournalBusyError:
                pass
        else:
            sys.exit(f"journal busy 50 times in a row for {prefix}{i}")
""")


def test_a_held_lock_gives_a_clear_one_line_error(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.bin").write_bytes(b"one")
    journal = Journal(str(tmp_path))
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".balancelab" / "journal.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        for op in (lambda: journal.relabel("a/1.bin", "b"), journal.recover, journal.undo):
            with pytest.raises(JournalBusyError) as info:
                op()
            message = str(info.value)
            assert "\n" not in message and f"in use by another BalanceLab process (pid {holder.pid}" in message
        assert (tmp_path / "a" / "1.bin").exists() and journal.actions == []
    finally:
        holder.stdin.close()
        holder.wait(timeout=120)
    assert journal.relabel("a/1.bin", "b").state == "done"  # free again once the holder is gone


def test_a_killed_holder_frees_the_lock(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "1.bin").write_bytes(b"one")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / ".balancelab" / "journal.lock")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "ready"
    holder.kill()
    holder.wait(timeout=120)
    holder.stdin.close()
    holder.stdout.close()
    assert Journal(str(tmp_path)).relabel("a/1.bin", "b").state == "done"


def test_two_processes_relabelling_at_once_lose_no_entry(tmp_path):
    count = 12
    (tmp_path / "a").mkdir()
    for prefix in ("p", "q"):
        for i in range(count):
            (tmp_path / "a" / f"{prefix}{i}.bin").write_bytes(f"{prefix}{i}".encode())
    workers = [subprocess.Popen([sys.executable, "-c", RELABEL_MANY, str(tmp_path), prefix, str(count)],
                                stderr=subprocess.PIPE, text=True) for prefix in ("p", "q")]
    for w in workers:
        _, err = w.communicate(timeout=600)
        assert w.returncode == 0, err
    actions = json.loads((tmp_path / ".balancelab" / "journal.json").read_text())["actions"]
    assert len(actions) == 2 * count and {a["state"] for a in actions} == {"done"}
    assert sorted(a["src"] for a in actions) == sorted(f"a/{p}{i}.bin" for p in "pq" for i in range(count))
    assert sorted(os.listdir(tmp_path / "b")) == sorted(f"{p}{i}.bin" for p in "pq" for i in range(count))
    assert os.listdir(tmp_path / "a") == []
