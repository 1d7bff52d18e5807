"""Relabel and exclude many files as one batch: one lock, two journal saves, each file undoable."""
from __future__ import annotations

import errno
import os

import pytest

from balancelab.engine.core.events import Finished, Progress, StopToken
from balancelab.engine.data import journal as journal_module
from balancelab.engine.data.journal import Journal
from tests.hostile import write_png


def tree(root):
    for cls in ("cat", "dog"):
        for i in range(3):
            write_png(root / "train" / cls / f"{i}.png", seed=hash((cls, i)) % 1000)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.png")}


def files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*.png") if ".balancelab" not in p.parts}


def finish(events):
    events = list(events)
    assert all(isinstance(e, Progress) for e in events[:-1]) and isinstance(events[-1], Finished)
    return events[-1].result


def test_a_batch_moves_each_file_once_keeps_clashing_names_and_undoes_file_by_file(tmp_path, monkeypatch):
    original = tree(tmp_path)
    saves = []
    real_save = journal_module.save_journal
    monkeypatch.setattr(journal_module, "save_journal", lambda *a: (saves.append(1), real_save(*a)))
    j = Journal(str(tmp_path))
    wanted = ["train/cat/0.png", "train/dog/0.png", "train/cat/0.png", "train/bird/9.png", "train/dog/1.png"]
    batch = finish(j.relabel_many(wanted, "bird"))
    assert len(saves) == 2  # one pending record of every move, one of their outcomes; 500 single moves made 1,000
    assert [a.src for a in batch.done] == ["train/cat/0.png", "train/dog/0.png", "train/dog/1.png"]
    assert {a.dst for a in batch.done} == {"train/bird/0.png", "train/bird/0__1.png", "train/bird/1.png"}
    assert [r for r, _ in batch.refused] == ["train/bird/9.png"] and "not found" in batch.refused[0][1]
    assert not batch.failure and not batch.stopped
    assert sorted(files(tmp_path).values()) == sorted(original.values())
    for _ in batch.done:
        j.undo()
    assert files(tmp_path) == original


def test_a_stopped_batch_records_what_it_did_not_move_as_rolled_back(tmp_path):
    original = tree(tmp_path)
    stop = StopToken()
    j = Journal(str(tmp_path))
    events = j.exclude_many(["train/cat/0.png", "train/cat/1.png", "train/cat/2.png"], stop)
    first = next(events)
    assert isinstance(first, Progress) and first.done == 1
    stop.request()
    batch = finish(events)
    assert batch.stopped and [a.src for a in batch.done] == ["train/cat/0.png"]
    states = {a.src: a.state for a in Journal(str(tmp_path)).actions}
    assert states == {"train/cat/0.png": "done", "train/cat/1.png": "rolled-back", "train/cat/2.png": "rolled-back"}
    assert os.path.exists(tmp_path / "train/cat/1.png") and os.path.exists(tmp_path / "_excluded/train/cat/0.png")
    j.undo()
    assert files(tmp_path) == original


def test_a_move_failing_mid_batch_ends_it_and_loses_nothing(tmp_path, monkeypatch):
    original = tree(tmp_path)
    calls = []
    real_move = journal_module.move_no_overwrite

    def move(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_move(src, dst)

    monkeypatch.setattr(journal_module, "move_no_overwrite", move)
    j = Journal(str(tmp_path))
    batch = finish(j.exclude_many(["train/dog/0.png", "train/dog/1.png", "train/dog/2.png"]))
    assert len(calls) == 2 and "No space left" in batch.failure and "train/dog/1.png" in batch.failure
    assert [a.src for a in batch.done] == ["train/dog/0.png"]
    assert {a.src: a.state for a in Journal(str(tmp_path)).actions} == {
        "train/dog/0.png": "done", "train/dog/1.png": "rolled-back", "train/dog/2.png": "rolled-back"}
    j.undo()
    assert files(tmp_path) == original


def test_a_bad_class_name_refuses_the_whole_batch_before_anything_moves(tmp_path):
    original = tree(tmp_path)
    with pytest.raises(journal_module.JournalError, match="invalid class name"):
        list(Journal(str(tmp_path)).relabel_many(["train/cat/0.png"], "../up"))
    assert files(tmp_path) == original


def test_a_move_that_went_through_before_the_disk_failed_is_reported_done(tmp_path, monkeypatch):
    """The file moved, then a folder's fsync failed: the batch listed it as not moved, so the views
    kept showing it where it was."""
    original = tree(tmp_path)
    real_move = journal_module.move_no_overwrite
    calls = []

    def move_then_fail(src, dst):
        real_move(src, dst)
        calls.append(src)
        if len(calls) == 2:
            raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(journal_module, "move_no_overwrite", move_then_fail)
    batch = finish(Journal(str(tmp_path)).exclude_many(["train/dog/0.png", "train/dog/1.png", "train/dog/2.png"]))
    assert [a.src for a in batch.done] == ["train/dog/0.png", "train/dog/1.png"]
    assert "was done, but the disk then reported" in batch.failure
    states = {a.src: a.state for a in Journal(str(tmp_path)).actions}
    assert states == {"train/dog/0.png": "done", "train/dog/1.png": "done", "train/dog/2.png": "rolled-back"}
    j = Journal(str(tmp_path))
    j.undo()
    j.undo()
    assert files(tmp_path) == original


def test_a_file_gone_since_planning_is_refused_alone_and_the_batch_goes_on(tmp_path, monkeypatch):
    tree(tmp_path)
    real_move = journal_module.move_no_overwrite

    def vanish_first(src, dst):
        if src.endswith("cat/0.png"):
            os.unlink(src)  # removed by something else between planning and moving
        real_move(src, dst)

    monkeypatch.setattr(journal_module, "move_no_overwrite", vanish_first)
    batch = finish(Journal(str(tmp_path)).exclude_many(["train/cat/0.png", "train/cat/1.png"]))
    assert [a.src for a in batch.done] == ["train/cat/1.png"] and not batch.failure
    assert [r for r, _ in batch.refused] == ["train/cat/0.png"]


def test_names_differing_only_in_case_never_clash_in_one_batch(tmp_path):
    """On a case-insensitive file system Cat.png and cat.png into one class clashed and ended the batch."""
    write_png(tmp_path / "train" / "a" / "Cat.png", seed=1)
    write_png(tmp_path / "train" / "b" / "cat.png", seed=2)
    batch = finish(Journal(str(tmp_path)).relabel_many(["train/a/Cat.png", "train/b/cat.png"], "c"))
    assert sorted(a.dst for a in batch.done) == ["train/c/Cat.png", "train/c/cat__1.png"]


def test_nothing_else_changes_one_journal_while_its_batch_runs(tmp_path):
    """The file lock is re-entrant per object: an exclusion made between a batch's steps settled the
    batch's pending moves as rolled back, and released the lock under it."""
    tree(tmp_path)
    j = Journal(str(tmp_path))
    events = j.exclude_many(["train/dog/0.png", "train/dog/1.png", "train/dog/2.png"])
    next(events)
    with pytest.raises(journal_module.JournalBusyError):
        j.exclude("train/cat/0.png")
    batch = finish(events)
    assert len(batch.done) == 3
    assert {a.state for a in Journal(str(tmp_path)).actions} == {"done"}
