"""Crafted and damaged journals: the journal is untrusted input. A sentinel file outside the
dataset must keep its content and its place whatever the journal says; a damaged file is refused
as a whole and left byte for byte; a bad entry is refused and kept while the rest still works."""
from __future__ import annotations

import hashlib
import json
import os

import pytest

from balancelab.engine.data.journal import Journal, JournalError, UnsafeEntryError

SENTINEL = b"the user's own file, outside the dataset"


@pytest.fixture
def ds(tmp_path):
    root = tmp_path / "ds"
    for cls in ("cat", "dog"):
        (root / "train" / cls).mkdir(parents=True)
        (root / "train" / cls / "0.bin").write_bytes(cls.encode() * 10)
    (root / ".balancelab").mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "sentinel.txt").write_bytes(SENTINEL)
    (root / "train" / "evil").symlink_to(outside, target_is_directory=True)  # a class folder leading out
    (root / "train" / "cat" / "link.bin").symlink_to(outside / "sentinel.txt")
    return root, outside / "sentinel.txt"


def sentinel_intact(sentinel) -> bool:
    return sentinel.is_file() and not sentinel.is_symlink() and \
        hashlib.sha256(sentinel.read_bytes()).digest() == hashlib.sha256(SENTINEL).digest()


def entry(state="done", src="train/cat/1.bin", dst="train/dog/1.bin", **extra):
    return {"id": extra.pop("id", "c0ffee"), "kind": extra.pop("kind", "relabel"), "src": src, "dst": dst,
            "time": extra.pop("time", 1.0), "state": state, "note": "", **extra}


def write_journal(root, doc) -> bytes:
    data = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    (root / ".balancelab" / "journal.json").write_bytes(data)
    return data


def crafted_entries(sentinel):
    absolute = str(sentinel)
    return {
        "pending src ..": entry("pending", src="../outside/sentinel.txt", dst="train/cat/0.bin"),
        "pending src absolute": entry("pending", src=absolute, dst="train/cat/0.bin"),
        "pending dst absolute": entry("pending", src="train/cat/0.bin", dst=absolute),
        "done dst absolute": entry("done", src="train/cat/new.bin", dst=absolute),
        "done dst ..": entry("done", src="train/cat/new.bin", dst="../outside/sentinel.txt"),
        "pending via symlinked class": entry("pending", src="train/evil/sentinel.txt", dst="train/cat/0.bin"),
        "done via symlinked class": entry("done", src="train/cat/new.bin", dst="train/evil/sentinel.txt"),
        "undoing via symlinked class": entry("undoing", src="train/evil/sentinel.txt", dst="train/cat/0.bin"),
        "done dst is a symlink out": entry("done", src="train/dog/link.bin", dst="train/cat/link.bin"),
        "pending src is a symlink out": entry("pending", src="train/cat/link.bin", dst="train/dog/link.bin"),
        "NUL in path": entry("pending", src="train/cat/0.bin\x00", dst="train/cat/0.bin"),
        # one file named twice: settling such a 'move' would unlink the file's only name
        "pending src is dst": entry("pending", src="train/cat/0.bin", dst="train/cat/0.bin"),
        "undoing one file spelled twice": entry("undoing", src="train/dog/0.bin", dst="train//dog/./0.bin"),
        "done src is dst": entry("done", src="train/cat/0.bin", dst="train/cat/0.bin"),
        "done dst is the journal": entry("done", src="train/cat/j.bin", dst=".balancelab/journal.json"),
        "pending src in the journal folder": entry("pending", src=".balancelab/journal.json", dst="train/cat/j.bin"),
        "time with 400 digits": entry(time=10 ** 400),
        "path no file system can name": entry("pending", src="train/cat/\ud800.bin", dst="train/dog/0.bin"),
        "dst null": entry("done", dst=None),
        "src number": entry("pending", src=5),
        "dst list": entry("done", dst=["train", "dog"]),
        "dst object": entry("done", dst={"path": absolute}),
        "time text": entry(time="yesterday"),
        "id number": entry(id=7),
        "unknown state": entry("exploded"),
        "unknown kind": entry(kind="delete"),
        "extra key": entry(force=True),
        "missing keys": {"id": "x", "src": absolute},
        "not an object": ["pending", absolute, "train/cat/0.bin"],
        "a string": absolute,
    }


@pytest.mark.parametrize("name", list(crafted_entries("/x")))
def test_a_crafted_entry_is_refused_and_kept_while_the_rest_works(ds, name):
    root, sentinel = ds
    crafted = crafted_entries(sentinel)[name]
    write_journal(root, {"version": 2, "actions": [crafted]})
    journal = Journal(str(root))
    journal.recover()
    with pytest.raises(JournalError):
        journal.undo()  # only the crafted entry could be undone, and it is refused or unreadable
    if isinstance(crafted, dict) and isinstance(crafted.get("id"), str):
        with pytest.raises(JournalError):
            journal.undo(crafted["id"])
    action = journal.relabel("train/cat/0.bin", "dog")  # the rest of the journal still works
    assert Journal(str(root)).undo().id == action.id
    assert sentinel_intact(sentinel)
    assert (root / "train" / "cat" / "0.bin").read_bytes() == b"cat" * 10
    assert (root / "train" / "dog" / "0.bin").read_bytes() == b"dog" * 10
    saved = json.loads((root / ".balancelab" / "journal.json").read_text())["actions"]
    if name == "pending src is a symlink out":  # the move never happened: rolled back, link untouched
        crafted = dict(crafted, state="rolled-back")
        assert (root / "train" / "cat" / "link.bin").is_symlink()
    assert saved[0] == crafted and len(saved) == 2  # kept verbatim, untouched
    assert sorted(os.listdir(sentinel.parent)) == ["sentinel.txt"]


def test_an_unsafe_entry_is_reported_by_recover_and_undo_by_id(ds):
    root, sentinel = ds
    write_journal(root, {"version": 2, "actions": [
        entry("pending", src="../outside/sentinel.txt", dst="train/cat/0.bin", id="a1"),
        entry("done", src="train/cat/new.bin", dst=str(sentinel), id="a2"),
        entry("done", dst=None, id="a3")]})
    journal = Journal(str(root))
    assert any("entry 3 was ignored" in p for p in journal.problems)
    assert journal.recover() == []
    assert any("a1 was refused" in p for p in journal.problems)
    with pytest.raises(UnsafeEntryError, match="absolute path"):
        journal.undo("a2")
    assert sentinel_intact(sentinel) and (root / "train" / "cat" / "0.bin").exists()


def deep(n: int) -> bytes:
    return b'{"version": 2, "actions": [' + b"[" * n + b"]" * n + b"]}"


DAMAGED = {
    "not JSON": b"{this is not json",
    "empty file": b"",
    "100k-deep nesting": deep(100_000),
    "deep nesting in a field": b'{"version": 2, "actions": [{"dst": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
    "a list": b"[]",
    "actions not a list": b'{"version": 2, "actions": {"a": 1}}',
    "no actions": b'{"version": 2}',
    "version text": b'{"version": "2", "actions": []}',
    "version from the future": b'{"version": 99, "actions": []}',
    "not UTF-8": b'{"version": 2, "actions": ["\xff\xfe"]}',
    "NUL bytes": b"\x00" * 64,
    "a 5000-digit version": b'{"version": ' + b"9" * 5000 + b', "actions": []}',
}


@pytest.mark.parametrize("name", list(DAMAGED))
def test_a_damaged_journal_is_refused_with_one_line_and_left_untouched(ds, name):
    root, sentinel = ds
    data = write_journal(root, DAMAGED[name])
    with pytest.raises(JournalError) as info:
        Journal(str(root)).recover()
    assert "\n" not in str(info.value) and "left untouched" in str(info.value)
    assert "sys." not in str(info.value)  # no Python internals in a user's message
    assert (root / ".balancelab" / "journal.json").read_bytes() == data
    assert sentinel_intact(sentinel)


def test_a_journal_that_is_a_link_or_a_folder_is_refused(ds):
    root, sentinel = ds
    path = root / ".balancelab" / "journal.json"
    path.symlink_to(sentinel)
    with pytest.raises(JournalError, match="not a regular file"):
        Journal(str(root))
    path.unlink()
    path.mkdir()
    with pytest.raises(JournalError, match="not a regular file"):
        Journal(str(root))
    assert sentinel_intact(sentinel)


def test_a_journal_folder_linked_outside_is_never_written(ds):
    root, sentinel = ds
    (root / ".balancelab").rmdir()
    (root / ".balancelab").symlink_to(sentinel.parent, target_is_directory=True)
    with pytest.raises(JournalError, match="unsafe"):
        Journal(str(root)).relabel("train/cat/0.bin", "dog")
    assert sorted(os.listdir(sentinel.parent)) == ["sentinel.txt"] and sentinel_intact(sentinel)
    assert (root / "train" / "cat" / "0.bin").exists()


def test_moves_never_lead_through_a_symlinked_class_folder(ds):
    root, sentinel = ds
    journal = Journal(str(root))
    with pytest.raises(JournalError, match="outside"):
        journal.relabel("train/evil/sentinel.txt", "cat")
    with pytest.raises(JournalError, match="outside"):
        journal.relabel("train/cat/0.bin", "evil")
    with pytest.raises(JournalError, match="plain file"):
        journal.exclude("train/cat/link.bin")
    assert sentinel_intact(sentinel) and sorted(os.listdir(sentinel.parent)) == ["sentinel.txt"]
    assert journal.actions == []


def test_settling_never_unlinks_the_only_name_of_a_file(tmp_path):
    from balancelab.engine.data.journal_moves import settle

    only = tmp_path / "a.bin"
    only.write_bytes(b"only copy")
    for prefer_finish in (True, False):  # one name reached by two spellings: left as it is
        outcome, note = settle(str(only), str(tmp_path / "." / "a.bin"), prefer_finish=prefer_finish)
        assert outcome is None and "one name" in note and only.read_bytes() == b"only copy"
    second = tmp_path / "b.bin"
    os.link(only, second)  # a move interrupted after link(): two names, one file
    assert settle(str(only), str(second), prefer_finish=True) == (True, "")
    assert not only.exists() and second.read_bytes() == b"only copy"


def test_an_entry_leading_into_the_journal_folder_through_a_link_is_refused(tmp_path):
    """undo moved an image to .balancelab/.tmp-x.journal-tmp through a link `meta -> .balancelab`,
    and the next change swept it away as a stale temp file."""
    root = tmp_path / "ds"
    (root / "train" / "cat").mkdir(parents=True)
    image = root / "train" / "cat" / "cat1.png"
    image.write_bytes(b"the user's image")
    (root / ".balancelab").mkdir()
    (root / "meta").symlink_to(".balancelab", target_is_directory=True)
    write_journal(root, {"version": 2, "actions": [
        entry("done", src="meta/.tmp-x.journal-tmp", dst="train/cat/cat1.png", id="e1", kind="exclude")]})
    j = Journal(str(root))
    with pytest.raises(JournalError):
        j.undo()
    Journal(str(root)).recover()
    assert image.read_bytes() == b"the user's image"
    assert not (root / ".balancelab" / ".tmp-x.journal-tmp").exists()


def test_the_temp_sweep_removes_only_journal_text_with_one_name(tmp_path):
    from balancelab.engine.data.journal_store import sweep_stale_temps

    folder = tmp_path / ".balancelab"
    folder.mkdir()
    (folder / ".tmp-a.journal-tmp").write_bytes(b'{"version": 2, "act')  # a killed writer's
    (folder / ".tmp-b.journal-tmp").write_bytes(b"")
    (folder / ".tmp-c.journal-tmp").write_bytes(b"\x89PNG\r\n\x1a\n...")  # not ours
    user = tmp_path / "user.txt"
    user.write_bytes(b'{"a user file that is JSON"}')
    os.link(user, folder / ".tmp-d.journal-tmp")  # a second name of a user's file
    sweep_stale_temps(str(folder))
    assert sorted(p.name for p in folder.iterdir()) == [".tmp-c.journal-tmp", ".tmp-d.journal-tmp"]
    assert user.read_bytes() == b'{"a user file that is JSON"}'


def test_a_pending_entry_naming_one_file_two_ways_never_unlinks_it(tmp_path):
    """A dataset of hard links (cp -al, or BalanceLab's own dataset export) and a class folder
    linked under a second name: recover saw "two names of one file" and unlinked the dataset's
    only name of it."""
    original = tmp_path / "orig"
    (original / "train" / "cat").mkdir(parents=True)
    (original / "train" / "cat" / "cat1.png").write_bytes(b"image")
    root = tmp_path / "ds"
    (root / "train" / "cat").mkdir(parents=True)
    os.link(original / "train" / "cat" / "cat1.png", root / "train" / "cat" / "cat1.png")
    (root / "train" / "alias").symlink_to("cat", target_is_directory=True)
    (root / ".balancelab").mkdir()
    write_journal(root, {"version": 2, "actions": [
        entry("pending", src="train/cat/cat1.png", dst="train/alias/cat1.png", id="x1")]})
    j = Journal(str(root))
    j.recover()
    assert (root / "train" / "cat" / "cat1.png").read_bytes() == b"image"
    assert any("same file" in p for p in j.problems)


def test_a_lock_file_with_another_name_is_locked_but_never_rewritten(tmp_path):
    """The holder note truncated whatever a hard link planted under the lock's name led to: a
    user's file, or the journal itself."""
    root = tmp_path / "ds"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "cat" / "0.bin").write_bytes(b"x")
    (root / ".balancelab").mkdir()
    outside = tmp_path / "notes.txt"
    outside.write_bytes(b"the user's notes")
    os.link(outside, root / ".balancelab" / "journal.lock")
    j = Journal(str(root))
    j.relabel("train/cat/0.bin", "dog")
    j.undo()
    assert outside.read_bytes() == b"the user's notes"
    (root / ".balancelab" / "journal.lock").unlink()
    os.link(root / ".balancelab" / "journal.json", root / ".balancelab" / "journal.lock")
    before = (root / ".balancelab" / "journal.json").read_bytes()
    Journal(str(root)).recover()  # takes the lock, changes nothing
    assert (root / ".balancelab" / "journal.json").read_bytes() == before


def test_an_entry_id_with_control_characters_is_refused_not_printed(tmp_path):
    root = tmp_path / "ds"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "cat" / "c0.png").write_bytes(b"x")
    (root / ".balancelab").mkdir()
    write_journal(root, {"version": 2, "actions": [entry("done", src="train/dog/c0.png", dst="train/cat/c0.png",
                                                         id="a1\x1b[2K\rffff")]})
    j = Journal(str(root))
    assert j.actions == [] and any("no id has" in p for p in j.problems)


def test_the_journal_folder_is_refused_in_any_case(tmp_path):
    """On macOS and Windows '.BalanceLab' is the journal folder itself."""
    root = tmp_path / "ds"
    (root / "train" / "cat").mkdir(parents=True)
    (root / "train" / "cat" / "c.png").write_bytes(b"image")
    (root / ".balancelab").mkdir()
    write_journal(root, {"version": 2, "actions": [
        entry("done", src=".BalanceLab/.tmp-x.journal-tmp", dst="train/cat/c.png", id="e1", kind="exclude")]})
    with pytest.raises(JournalError):
        Journal(str(root)).undo()
    assert (root / "train" / "cat" / "c.png").read_bytes() == b"image"
