"""The journal commands: journal, relabel, exclude, undo, recover (text and --json); every
JournalError is one line on stderr with exit code 2, never a traceback."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from balancelab.engine.cli.main import main


@pytest.fixture
def ds(tmp_path):
    for cls in ("cat", "dog"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        (tmp_path / "train" / cls / "1.bin").write_bytes(cls.encode())
    return tmp_path


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_relabel_exclude_list_and_undo(ds, capsys):
    code, out, _ = run(capsys, "relabel", ds, "train/cat/1.bin", "dog", "--json")
    moved = json.loads(out)["actions"][0]
    assert code == 0 and moved["dst"] == "train/dog/1__1.bin" and moved["state"] == "done"
    code, out, _ = run(capsys, "exclude", ds, "train/dog/1.bin")
    assert code == 0 and "exclude" in out and "train/dog/1.bin -> _excluded/train/dog/1.bin" in out
    code, out, _ = run(capsys, "journal", ds)
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2 and lines[0].startswith(moved["id"]) and "done" in lines[0]
    code, out, _ = run(capsys, "undo", ds, "--id", moved["id"], "--json")
    assert code == 0 and json.loads(out)["actions"][0]["state"] == "undone"
    assert (ds / "train" / "cat" / "1.bin").read_bytes() == b"cat"
    code, out, _ = run(capsys, "undo", ds)
    assert code == 0 and (ds / "train" / "dog" / "1.bin").read_bytes() == b"dog"
    code, out, _ = run(capsys, "journal", ds, "--json")
    assert [a["state"] for a in json.loads(out)["actions"]] == ["undone", "undone"]


def test_a_new_class_is_made_only_when_asked_for(ds, capsys):
    code, out, _ = run(capsys, "relabel", ds, "train/cat/1.bin", "bird", "--new-class")
    assert code == 0 and (ds / "train" / "bird" / "1.bin").read_bytes() == b"cat"


def test_recover_reports_what_it_settled(ds, capsys):
    run(capsys, "relabel", ds, "train/cat/1.bin", "dog")
    path = ds / ".balancelab" / "journal.json"
    doc = json.loads(path.read_text())
    doc["actions"][0]["state"] = "pending"  # as if killed after the move, before recording it
    path.write_text(json.dumps(doc))
    code, out, _ = run(capsys, "recover", ds, "--json")
    assert code == 0 and [a["state"] for a in json.loads(out)["actions"]] == ["done"]
    code, out, _ = run(capsys, "recover", ds)
    assert code == 0 and out.strip() == "nothing to recover"


@pytest.mark.parametrize("argv,expected", [
    (("relabel", "{ds}", "train/cat/1.bin", "a/b"), "invalid class name"),
    (("relabel", "{ds}", "train/cat/missing.bin", "dog"), "file not found"),
    (("relabel", "{ds}", "train/cat/1.bin", "dog "), "starts or ends with white space"),  # read as "dog" in a list
    (("relabel", "{ds}", "train/cat/1.bin", "dgo"), "there is no class 'dgo'"),  # a typo made a new class
    (("exclude", "{ds}", "../outside.bin"), "leaves its folder"),
    (("undo", "{ds}"), "nothing to undo"),
    (("undo", "{ds}", "--id", "nope"), "no action with id"),
    (("journal", "{ds}/missing"), "not a folder"),
    (("recover", "{ds}/train/cat/1.bin"), "not a folder"),
])
def test_errors_are_one_line_and_exit_2(ds, capsys, argv, expected):
    code, out, err = run(capsys, *[a.format(ds=ds) for a in argv])
    assert code == 2 and out == "" and expected in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("content", [b"{not json", b"[" * 100_000, b'{"version": 2, "actions": 5}'])
def test_a_damaged_journal_is_exit_2_for_every_command(ds, capsys, content):
    (ds / ".balancelab").mkdir()
    (ds / ".balancelab" / "journal.json").write_bytes(content)
    for argv in (("journal", ds), ("relabel", ds, "train/cat/1.bin", "dog"), ("exclude", ds, "train/cat/1.bin"),
                 ("undo", ds), ("recover", ds)):
        code, out, err = run(capsys, *argv)
        assert code == 2 and "damaged" in err and err.count("\n") == 1
    assert (ds / ".balancelab" / "journal.json").read_bytes() == content
    assert (ds / "train" / "cat" / "1.bin").exists()


def test_a_crafted_entry_is_listed_as_a_warning(ds, capsys):
    (ds / ".balancelab").mkdir()
    (ds / ".balancelab" / "journal.json").write_text(json.dumps({"version": 2, "actions": [
        {"id": "x", "kind": "relabel", "src": "a", "dst": None, "time": 1, "state": "done"}]}))
    code, out, _ = run(capsys, "journal", ds)
    assert code == 0 and "the journal is empty" in out and "warning: journal entry 1 was ignored" in out


def test_names_that_are_not_utf8_or_hold_a_newline_print_as_valid_utf8_one_line_each(ds):
    """The output is UTF-8 JSON (a raw 0xff byte made it invalid) from which the exact bytes of the
    name come back, and a text line per action even when a name holds a newline."""
    main_py = Path(__file__).resolve().parents[2] / "main.py"
    folder = os.fsencode(ds / "train" / "cat")
    for name in (b"\xff.bin", b"two\nlines.bin"):
        with open(os.path.join(folder, name), "wb") as fh:
            fh.write(b"x")
        rel = os.fsdecode(b"train/cat/" + name)
        subprocess.run([sys.executable, str(main_py), "exclude", str(ds), rel], check=True, capture_output=True)
    listed = subprocess.run([sys.executable, str(main_py), "journal", str(ds), "--json"], check=True, capture_output=True)
    sources = {os.fsencode(a["src"]) for a in json.loads(listed.stdout.decode("utf-8"))["actions"]}
    assert sources == {b"train/cat/\xff.bin", b"train/cat/two\nlines.bin"}
    text = subprocess.run([sys.executable, str(main_py), "journal", str(ds)], check=True, capture_output=True)
    lines = text.stdout.decode("utf-8").splitlines()
    assert len(lines) == 2 and all("exclude" in line for line in lines)
