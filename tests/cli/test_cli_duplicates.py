"""`duplicates --run`: embedding similarity from a trained run; a bad run folder is one line
on stderr and exit 2, never a traceback."""
from __future__ import annotations

import json
import shutil

from balancelab.engine.cli.main import main


def _one_error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("error:"), captured.err
    return lines[0]


def test_missing_run_folder(demo_root, tmp_path, capsys):
    assert main(["duplicates", str(demo_root), "--run", str(tmp_path / "nope")]) == 2
    assert "does not exist" in _one_error_line(capsys)


def test_a_folder_that_is_no_run(demo_root, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["duplicates", str(demo_root), "--run", str(tmp_path / "empty")]) == 2
    assert "embeddings" in _one_error_line(capsys)


def test_a_run_with_a_damaged_checkpoint(demo_root, tiny_run, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_run, broken)
    (broken / "best.pt").write_bytes(b"not a checkpoint")
    assert main(["duplicates", str(demo_root), "--run", str(broken)]) == 2
    assert "embeddings" in _one_error_line(capsys)


def test_run_with_exact_only_is_refused(demo_root, tiny_run, capsys):
    assert main(["duplicates", str(demo_root), "--run", str(tiny_run), "--exact-only"]) == 2
    assert "--exact-only" in _one_error_line(capsys)


def test_duplicates_with_a_run_reports_grades(demo_root, tiny_run, tmp_path, capsys):
    data = tmp_path / "data"
    shutil.copytree(demo_root, data)
    first = sorted((data / "train" / "3").iterdir())[0]
    shutil.copy(first, data / "test" / "3" / "leaked.png")  # an exact copy leaking into test
    assert main(["duplicates", str(data), "--run", str(tiny_run), "--max-distance", "0.0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    leaked = [g for g in out["groups"] if "test/3/leaked.png" in g["paths"]]
    assert len(leaked) == 1 and leaked[0]["grade"] == "exact" and leaked[0]["leakage"]
    assert all(g["grade"] in ("exact", "near", "look-alike") for g in out["groups"])
