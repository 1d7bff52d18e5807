"""SIGKILL the journal at every instant, then check that nothing was lost and undo still works.

    python bench/journal_kill.py --iterations 300          # random kills (by time and by I/O call)
    python bench/journal_kill.py --sweep --iterations 0    # a kill before every I/O call of each operation

Each iteration forks a child that relabels, excludes, undoes and recovers on a small tree of
tiny files and kills it (SIGKILL) either after a random delay or just before its N-th file-system
call. The parent then opens the dataset, recovers, and checks: every file exists exactly once
with its original content, no journal temp file or unsettled entry is left, and undoing every
action restores the original tree path for path. Linux/macOS only (fork).

The I/O hook and the checks are also used by tests/engine/test_journal_faults.py.
"""
from __future__ import annotations

import argparse
import builtins
import hashlib
import os
import random
import signal
import sys
import time
import traceback
from collections import Counter
from typing import Callable

from balancelab.engine.data.journal import Journal, JournalError

CLASSES = ("cat", "dog", "bird")
#: Calls that change the disk, and so can fail with ENOSPC; the hook sees them as writes.
_WRITE_CALLS = {"write", "pwrite", "fsync", "replace", "rename", "link", "mkdir", "ftruncate", "fchmod",
                "file.write", "file.flush"}
_OS_CALLS = ("open", "write", "pwrite", "fsync", "replace", "rename", "link", "unlink", "remove", "mkdir",
             "fchmod", "ftruncate")


class IoHook:
    """Calls ``on_call(index, name, writes)`` before each file-system call made while installed.

    ``on_call`` may raise (fault injection) or kill the process (crash injection). Covers the os
    functions the journal and the atomic writer use, ``open`` and the files ``os.fdopen`` returns.
    """

    def __init__(self, on_call: Callable[[int, str, bool], None]) -> None:
        self.on_call = on_call
        self.calls = 0
        self._saved: list[tuple[object, str, object]] = []

    def _hit(self, name: str, writes: bool) -> None:
        index = self.calls
        self.calls += 1
        self.on_call(index, name, writes)

    def _wrap(self, owner, attr: str, name: str, writes: Callable[..., bool]) -> None:
        real = getattr(owner, attr)

        def hooked(*args, **kwargs):
            self._hit(name, writes(*args, **kwargs))
            return real(*args, **kwargs)

        self._saved.append((owner, attr, real))
        setattr(owner, attr, hooked)

    def install(self) -> "IoHook":
        for call in _OS_CALLS:
            if call == "open":
                self._wrap(os, "open", "open", lambda path, flags, *a, **k: bool(flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)))
            elif hasattr(os, call):
                self._wrap(os, call, call, lambda *a, _c=call, **k: _c in _WRITE_CALLS)
        self._wrap(builtins, "open", "open", lambda file, mode="r", *a, **k: any(c in mode for c in "wax+"))
        real_fdopen = os.fdopen
        hook = self

        class HookedFile:
            def __init__(self, fh) -> None:
                self._fh = fh

            def write(self, data):
                hook._hit("file.write", True)
                return self._fh.write(data)

            def flush(self):
                hook._hit("file.flush", True)
                return self._fh.flush()

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self._fh.__exit__(*exc)

            def __getattr__(self, attr):
                return getattr(self._fh, attr)

        def fdopen(*args, **kwargs):
            return HookedFile(real_fdopen(*args, **kwargs))

        self._saved.append((os, "fdopen", real_fdopen))
        os.fdopen = fdopen
        return self

    def uninstall(self) -> None:
        while self._saved:
            owner, attr, real = self._saved.pop()
            setattr(owner, attr, real)


# --- the tree and the checks ---------------------------------------------------------------
def make_tree(root: str, per_class: int = 3, seed: int = 0) -> dict[str, str]:
    """A split tree of tiny files with name clashes across classes; returns path -> sha256."""
    rng = random.Random(seed)
    for cls in CLASSES:
        os.makedirs(os.path.join(root, "train", cls), exist_ok=True)
        for i in range(per_class):
            with open(os.path.join(root, "train", cls, f"{i}.bin"), "wb") as fh:
                fh.write(f"{cls}-{i}-".encode() + rng.randbytes(16))
    return snapshot(root)


def snapshot(root: str) -> dict[str, str]:
    """Every file under ``root`` except the journal folder: relative path -> sha256."""
    found = {}
    for folder, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d != ".balancelab"]
        for name in files:
            full = os.path.join(folder, name)
            with open(full, "rb") as fh:
                found[os.path.relpath(full, root).replace(os.sep, "/")] = hashlib.sha256(fh.read()).hexdigest()
    return found


def distinct_files(root: str) -> Counter:
    """Content hashes of the distinct files (inodes) under ``root``: two names of one file count once."""
    seen: dict[tuple[int, int], str] = {}
    for rel, digest in snapshot(root).items():
        st = os.lstat(os.path.join(root, rel))
        seen[(st.st_dev, st.st_ino)] = digest
    return Counter(seen.values())


def dataset_files(root: str) -> list[str]:
    """The files still in the dataset (not excluded), by name only."""
    train = os.path.join(root, "train")
    return sorted(f"train/{cls}/{name}" for cls in os.listdir(train) for name in os.listdir(os.path.join(train, cls)))


def journal_temps(root: str) -> list[str]:
    folder = os.path.join(root, ".balancelab")
    return [n for n in os.listdir(folder) if n.startswith(".tmp-")] if os.path.isdir(folder) else []


def check_recovered(root: str, original: dict[str, str], *, killed: bool = True) -> str:
    """Open + recover; assert nothing lost or duplicated, nothing pending, no temp file; undo all.

    ``killed=False`` (the writer got an exception, it was not killed) also requires that it left
    no temp file and no file under two names before recovery. Returns a one-line summary; raises
    AssertionError with what is wrong."""
    if not killed:
        assert not journal_temps(root), f"temp files left: {journal_temps(root)}"
        assert distinct_files(root) == Counter(original.values()), f"files lost or duplicated: {sorted(snapshot(root))}"
    journal = Journal(root)
    settled = journal.recover()
    assert not journal.problems, journal.problems
    now = snapshot(root)
    assert Counter(now.values()) == Counter(original.values()), f"files lost or duplicated: {sorted(now)}"
    left = [a for a in journal.actions if a.state in ("pending", "undoing")]
    assert not left, f"unsettled after recover: {left}"
    assert not journal_temps(root), f"temp files left: {journal_temps(root)}"
    undone = 0
    while True:
        try:
            journal.undo()
            undone += 1
        except JournalError as exc:
            assert "nothing to undo" in str(exc), f"undo failed: {exc}"
            break
    assert snapshot(root) == original, "undoing every action did not restore the tree"
    return f"settled {len(settled)}, undid {undone}"


# --- the child and the loop ------------------------------------------------------------------
def random_operations(root: str, rng: random.Random, count: int) -> None:
    """What a killed child does: a random mix of relabel, exclude, undo and recover."""
    journal = Journal(root)
    for _ in range(count):
        op = rng.choice(("relabel", "relabel", "exclude", "undo", "recover"))
        try:
            if op in ("relabel", "exclude"):
                path = rng.choice(dataset_files(root))
                if op == "exclude":
                    journal.exclude(path)
                else:
                    journal.relabel(path, rng.choice([c for c in CLASSES if f"/{c}/" not in path]))
            elif op == "undo":
                journal.undo()
            else:
                journal.recover()
        except JournalError:
            pass


def run_child(work: Callable[[], None], kill_at: int | None = None, kill_after_s: float | None = None) -> tuple[bool, int]:
    """Fork, run ``work`` in the child, SIGKILL it at I/O call ``kill_at`` or after ``kill_after_s``.

    Returns (killed, number of I/O calls the child made when it was not killed)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_end)

            def on_call(index: int, name: str, writes: bool) -> None:
                if index == kill_at:
                    os.kill(os.getpid(), signal.SIGKILL)

            hook = IoHook(on_call).install()
            try:
                work()
            finally:
                hook.uninstall()
            os.write(write_end, str(hook.calls).encode())
        except BaseException:
            traceback.print_exc()
            code = 1
        os._exit(code)
    os.close(write_end)
    if kill_after_s is not None:
        time.sleep(kill_after_s)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    with os.fdopen(read_end, "rb") as fh:
        calls = int(fh.read() or b"0")
    if os.WIFEXITED(status) and os.WEXITSTATUS(status) != 0:
        raise AssertionError("the child failed with an unexpected exception (see its traceback above)")
    return os.WIFSIGNALED(status), calls


def _reset_journal_if_long(root: str) -> None:
    """Keep saves cheap over hundreds of iterations: everything is undone, so history can go."""
    if len(Journal(root).actions) > 400:
        os.remove(os.path.join(root, ".balancelab", "journal.json"))


def random_kills(root: str, original: dict[str, str], iterations: int, seed: int) -> Counter:
    """``iterations`` random kills, half by time and half by I/O call index."""
    rng = random.Random(seed)
    tally: Counter = Counter()
    for i in range(iterations):
        child_rng = random.Random(rng.random())
        work = lambda r=child_rng: random_operations(root, r, 8)  # noqa: E731
        if i % 2:
            killed, _ = run_child(work, kill_after_s=rng.uniform(0.0, 0.03))
        else:
            killed, _ = run_child(work, kill_at=rng.randrange(0, 400))
        tally["killed" if killed else "finished before the kill"] += 1
        check_recovered(root, original)
        _reset_journal_if_long(root)
    return tally


def operation_cases(root: str) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """name -> (set-up, operation): each journal operation, from a state where it has work to do."""
    a, b = "train/cat/0.bin", "train/dog/1.bin"

    def halted_at_unlink(step: Callable[[Journal], object]) -> Callable[[], None]:
        """Set-up: run ``step`` but stop dead just before its first unlink (a crash mid-move)."""
        def setup() -> None:
            class Halt(BaseException):
                pass

            def on_call(index: int, name: str, writes: bool) -> None:
                if name == "unlink":
                    raise Halt

            hook = IoHook(on_call).install()
            try:
                step(Journal(root))
            except Halt:
                pass
            finally:
                hook.uninstall()
        return setup

    return {
        "relabel": (lambda: None, lambda: Journal(root).relabel(a, "dog")),
        "exclude": (lambda: None, lambda: Journal(root).exclude(b)),
        "undo": (lambda: (Journal(root).relabel(a, "bird"), Journal(root).exclude(b)), lambda: Journal(root).undo()),
        "recover a move": (halted_at_unlink(lambda j: j.relabel(a, "dog")), lambda: Journal(root).recover()),
        "recover an undo": (lambda: (Journal(root).exclude(b), halted_at_unlink(lambda j: j.undo())()),
                            lambda: Journal(root).recover()),
        # a batch: two files of one name into one class, and two exclusions (consumed to its end)
        "relabel many": (lambda: None, lambda: list(Journal(root).relabel_many([a, "train/dog/0.bin"], "bird"))),
        "exclude many": (lambda: None, lambda: list(Journal(root).exclude_many([b, "train/cat/2.bin"]))),
    }


def sweep(root: str, original: dict[str, str], stride: int = 1) -> Counter:
    """For each operation, a kill before each of its I/O calls in turn (every ``stride``-th), then the checks."""
    tally: Counter = Counter()
    for name, (setup, operation) in operation_cases(root).items():
        kill_at = 0
        while True:
            setup()
            killed, _ = run_child(operation, kill_at=kill_at)
            check_recovered(root, original)
            _reset_journal_if_long(root)
            if not killed:
                break
            tally[name] += 1
            kill_at += stride
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=300, help="random kills")
    parser.add_argument("--sweep", action="store_true", help="also kill before every I/O call of each operation")
    parser.add_argument("--stride", type=int, default=1, help="with --sweep: kill before every N-th call only")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", default=None, help="work folder (default: a new temporary one)")
    args = parser.parse_args(argv)
    import tempfile

    start = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        root = os.path.join(tmp, "dataset")
        original = make_tree(root, seed=args.seed)
        if args.sweep:
            for name, kills in sweep(root, original, max(1, args.stride)).items():
                print(f"sweep {name}: killed before {kills} of its I/O calls in turn, then recovered: OK")
        tally = random_kills(root, original, args.iterations, args.seed)
        print(f"random kills: {args.iterations} iterations ({dict(tally)}); after each: recover, "
              f"{len(original)} files present exactly once with their content, no temp file, "
              "nothing pending, undo of every action restores the tree: OK")
    print(f"all checks passed in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
