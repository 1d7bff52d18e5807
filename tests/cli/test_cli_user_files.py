"""Commands that write folders never lose a file of the user's: `demo-dataset DIR --force`
deleted a curated demo (its journal and the user's own images included), and `label-issues
--out` wrote over the user's files and into the dataset."""
from __future__ import annotations

import hashlib

from balancelab.engine.cli.main import main


def checksums(folder):
    """Every file's content; the journal's lock file holds only a note of its last holder."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != "journal.lock"}


def test_a_curated_demo_is_kept_beside_the_rebuilt_one(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert main(["demo-dataset", str(demo)]) == 0
    pristine = checksums(demo)
    assert main(["demo-dataset", str(demo), "--force"]) == 0  # unchanged: replaced, nothing kept beside it
    assert checksums(demo) == pristine and sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    from balancelab.engine.data.journal import Journal

    Journal(str(demo))  # the app opened it: a journal folder and lock, no curation
    assert main(["demo-dataset", str(demo), "--force"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
    assert main(["demo-dataset", str(tmp_path / "demo" / ".."), "--force"]) == 2  # the parent is no demo: refused
    capsys.readouterr()

    first = sorted((demo / "train" / "0").iterdir())[0]
    (demo / "train" / "1" / "my_photo.png").write_bytes(first.read_bytes())  # the user's own image
    assert main(["exclude", str(demo), f"train/0/{first.name}"]) == 0  # through the journal
    curated = checksums(demo)
    capsys.readouterr()
    assert main(["demo-dataset", str(demo), "--force"]) == 0
    out, err = capsys.readouterr()
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("demo.before-rebuild-")]
    assert len(kept) == 1 and str(kept[0]) in err and "held changes" in err
    assert checksums(kept[0]) == curated  # every file of the curated demo, its journal included
    assert checksums(demo) == pristine and out.strip() == str(demo)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".demo-")]  # no staging folder left


def test_a_folder_that_is_no_demo_is_refused_in_one_line(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert main(["demo-dataset", str(mine), "--force"]) == 2
    err = capsys.readouterr().err
    assert "is not a BalanceLab demo dataset" in err and len(err.strip().splitlines()) == 1
    assert (mine / "notes.txt").read_text() == "mine" and not [p for p in tmp_path.iterdir() if p.name != "mine"]


def test_label_issues_never_writes_over_the_users_files_or_into_the_dataset(demo_root, tmp_path, capsys):
    """`label-issues --out` replaced a label_issues.csv of the user's, and wrote fold runs into the
    dataset itself (they then scanned as a class of unreadable files)."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "label_issues.csv").write_text("my notes")
    assert main(["label-issues", "--data", str(demo_root), "--out", str(mine), "--folds", "2", "--epochs", "1"]) == 2
    assert "already holds files" in capsys.readouterr().err and (mine / "label_issues.csv").read_text() == "my notes"
    before = checksums(demo_root)
    inside = demo_root / "li"
    assert main(["label-issues", "--data", str(demo_root), "--out", str(inside), "--folds", "2", "--epochs", "1"]) == 2
    assert "inside the dataset" in capsys.readouterr().err and not inside.exists() and checksums(demo_root) == before


def test_a_rebuild_that_cannot_put_the_new_demo_in_place_puts_the_old_one_back(tmp_path, monkeypatch):
    from balancelab.engine.data import demo_dataset

    demo = tmp_path / "demo"
    demo_dataset.build_demo_dataset(demo)
    (demo / "train" / "1" / "mine.png").write_bytes(b"my own file")
    real_replace, calls = demo_dataset.os.replace, []

    def second_fails(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # the new demo into place: the disk refuses
            raise OSError(28, "No space left on device")
        real_replace(src, dst)

    monkeypatch.setattr(demo_dataset.os, "replace", second_fails)
    import pytest

    with pytest.raises(OSError):
        demo_dataset.rebuild_demo_dataset(demo)
    monkeypatch.undo()
    assert (demo / "train" / "1" / "mine.png").read_bytes() == b"my own file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
