"""`demo-dataset DIR --force` rebuilds the demo without losing what the user did to the old one:
it deleted the whole tree, the journal and the user's own images included."""
from __future__ import annotations

import hashlib

from balancelab.engine.cli.main import main


def checksums(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_curated_demo_is_kept_beside_the_rebuilt_one(tmp_path, capsys):
    demo = tmp_path / "demo"
    assert main(["demo-dataset", str(demo)]) == 0
    pristine = checksums(demo)
    assert main(["demo-dataset", str(demo), "--force"]) == 0  # unchanged: replaced, nothing kept beside it
    assert checksums(demo) == pristine and sorted(p.name for p in tmp_path.iterdir()) == ["demo"]
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
