"""The journal's everyday behaviour: moves are byte-identical and undoable, interrupted ones are
settled, bad class names and paths get a one-line JournalError, files keep normal permissions,
and two Journal objects on one dataset never lose each other's entries."""
from __future__ import annotations

import hashlib
import json
import os
import stat

import pytest

from balancelab.engine.data.journal import Journal, JournalError
from tests.hostile import write_png


def digest(p):
    return hashlib.sha256(p.read_bytes()).hexdigest()


def journal_doc(root):
    return json.loads((root / ".balancelab" / "journal.json").read_text())


def test_relabel_exclude_and_undo_are_byte_identical(tmp_path):
    a = write_png(tmp_path / "train" / "cat" / "x.png")
    write_png(tmp_path / "train" / "dog" / "x.png", seed=9)  # name clash in the target class
    before = digest(a)
    j = Journal(str(tmp_path))
    act = j.relabel("train/cat/x.png", "dog")
    assert act.dst == "train/dog/x__1.png" and not a.exists()
    assert digest(tmp_path / act.dst) == before
    ex = Journal(str(tmp_path)).exclude("train/dog/x.png")  # a fresh instance reads the journal
    assert ex.dst == "_excluded/train/dog/x.png"
    j2 = Journal(str(tmp_path))
    j2.undo()
    j2.undo()
    assert digest(a) == before and (tmp_path / "train" / "dog" / "x.png").exists()
    with pytest.raises(JournalError, match="nothing to undo"):
        j2.undo()
    assert [x.state for x in Journal(str(tmp_path)).actions] == ["undone", "undone"]


def test_undo_by_id_and_refusals(tmp_path):
    write_png(tmp_path / "a" / "1.png")
    write_png(tmp_path / "a" / "2.png")
    j = Journal(str(tmp_path))
    first = j.relabel("a/1.png", "b")
    j.relabel("a/2.png", "b")
    assert j.undo(first.id).id == first.id and (tmp_path / "a" / "1.png").exists()
    with pytest.raises(JournalError, match="only done actions"):
        j.undo(first.id)
    with pytest.raises(JournalError, match="no action with id"):
        j.undo("feedbeef")
    (tmp_path / "a" / "2.png").write_bytes(b"someone else's file")
    with pytest.raises(JournalError, match="taken by another file"):
        j.undo()
    assert (tmp_path / "a" / "2.png").read_bytes() == b"someone else's file"


def test_interrupted_action_is_settled_on_recover(tmp_path):
    write_png(tmp_path / "a" / "1.png")
    j = Journal(str(tmp_path))
    j.relabel("a/1.png", "b")
    # simulate a crash between 'pending' and the move: journal says pending, file unmoved
    j.actions[-1].state = "pending"
    (tmp_path / "b" / "1.png").rename(tmp_path / "a" / "1.png")
    j._save()
    settled = Journal(str(tmp_path)).recover()
    assert settled[0].state == "rolled-back" and (tmp_path / "a" / "1.png").exists()


def test_an_undo_killed_between_link_and_unlink_is_finished(tmp_path):
    """Undo has its own pending state: an image is never left in two classes, later undos work."""
    one = write_png(tmp_path / "a" / "1.png")
    write_png(tmp_path / "a" / "2.png")
    j = Journal(str(tmp_path))
    j.relabel("a/2.png", "b")
    act = j.relabel("a/1.png", "b")
    j.actions[-1].state = "undoing"  # what a kill after link(), before unlink(), leaves
    j._save()
    os.link(tmp_path / act.dst, one)
    settled = Journal(str(tmp_path)).recover()
    assert [(a.id, a.state) for a in settled] == [(act.id, "undone")]
    assert one.exists() and not (tmp_path / act.dst).exists()
    Journal(str(tmp_path)).undo()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["1.png", "2.png"]
    assert list((tmp_path / "b").iterdir()) == []


@pytest.mark.parametrize("label", ["", ".", "..", "a/b", "a\\b", "a\x00b", "x" * 300, "é" * 200, 5, None, ["a"],
                                   ".hidden", "_excluded", ".balancelab", "a\nb", "\ud800"])
def test_bad_class_names_are_refused_with_one_line(tmp_path, label):
    f = write_png(tmp_path / "a" / "1.png")
    with pytest.raises(JournalError) as info:
        Journal(str(tmp_path)).relabel("a/1.png", label)
    assert "\n" not in str(info.value) and len(str(info.value)) < 400
    assert f.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a"]


@pytest.mark.parametrize("path", [None, 7, "", "../x.png", "/etc/passwd", "a/../../x", "a/missing.png", "a",
                                  ".balancelab/journal.json", "_excluded/a/2.png", "a/link.png", "a/\x00.png"])
def test_bad_source_paths_are_refused_with_one_line(tmp_path, path):
    write_png(tmp_path / "a" / "1.png")
    write_png(tmp_path / "_excluded" / "a" / "2.png")
    os.symlink(tmp_path / "a" / "1.png", tmp_path / "a" / "link.png")
    j = Journal(str(tmp_path))
    j.relabel("a/1.png", "b")
    j.undo()
    for op in (lambda: j.relabel(path, "c"), lambda: j.exclude(path)):
        with pytest.raises(JournalError) as info:
            op()
        assert "\n" not in str(info.value)
    assert [a.state for a in Journal(str(tmp_path)).actions] == ["undone"]
    assert os.path.islink(tmp_path / "a" / "link.png") and (tmp_path / "a" / "1.png").exists()


def test_relabel_into_its_own_class_is_refused(tmp_path):
    write_png(tmp_path / "train" / "a" / "1.png")
    with pytest.raises(JournalError, match="already in class"):
        Journal(str(tmp_path)).relabel("train/a/1.png", "a")


def test_journal_files_get_the_normal_permissions(tmp_path):
    """A teammate sharing the dataset can read the journal (mkstemp alone makes it 0600)."""
    write_png(tmp_path / "a" / "1.png")
    old = os.umask(0o022)
    try:
        Journal(str(tmp_path)).relabel("a/1.png", "b")
    finally:
        os.umask(old)
    mode = stat.S_IMODE(os.stat(tmp_path / ".balancelab" / "journal.json").st_mode)
    assert mode == 0o644


def test_two_journal_objects_on_one_dataset_lose_nothing(tmp_path):
    """Two windows (or the app and the CLI): each change re-reads the journal under the lock."""
    for i in range(4):
        write_png(tmp_path / "a" / f"{i}.png")
    first, second = Journal(str(tmp_path)), Journal(str(tmp_path))
    first.relabel("a/0.png", "b")
    second.relabel("a/1.png", "b")  # second never saw first's entry in memory
    first.exclude("a/2.png")
    second.undo()  # undoes the last action, first's exclude
    kinds = [(a["kind"], a["state"]) for a in journal_doc(tmp_path)["actions"]]
    assert kinds == [("relabel", "done"), ("relabel", "done"), ("exclude", "undone")]
    assert (tmp_path / "a" / "2.png").exists()
