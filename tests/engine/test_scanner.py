import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from balancelab.engine.core.events import Finished, Progress, StopToken
from balancelab.engine.data.scanner import LayoutError, scan, scan_sync
from tests.hostile import make_problem_tree, write_png

ROOT = Path(__file__).resolve().parents[2]


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_flat_layout_counts_and_ratio(tmp_path):
    for label, n in (("a", 8), ("b", 2), ("c", 4)):
        for i in range(n):
            write_png(tmp_path / label / f"{i}.png", seed=hash((label, i)) % 2**32)
    result = scan_sync(str(tmp_path))
    assert result.layout == "flat"
    assert result.class_counts() == {"a": 8, "b": 2, "c": 4}
    assert result.imbalance_ratio() == 4.0
    assert result.problems == []
    assert result.grayscale


def test_every_planted_problem_is_reported_exactly(tmp_path):
    planted = make_problem_tree(tmp_path)
    before = checksums(tmp_path)
    result = scan_sync(str(tmp_path), workers=1)
    found = {(p.path, p.kind) for p in result.problems}
    for path, kind in planted.items():
        assert (path, kind) in found, f"missing {kind} for {path}: {sorted(found)}"
    # no readable image is reported as a problem except the planted duplicate
    problem_paths = {p.path for p in result.problems}
    assert problem_paths - set(planted) == {"train/cat/cat_0.png"}  # the duplicate partner
    assert result.class_counts("train") == {"bird": 0, "cat": 6, "dog": 3}
    assert result.class_counts("test") == {"cat": 3, "dog": 2}
    assert checksums(tmp_path) == before, "scanning must never modify a file"


def test_parallel_scan_matches_sequential(tmp_path, monkeypatch):
    import balancelab.engine.data.scanner as scanner

    make_problem_tree(tmp_path)
    for i in range(60):
        write_png(tmp_path / "train" / "dog" / f"extra_{i}.png", seed=1000 + i)
    seq = scan_sync(str(tmp_path), workers=1)
    monkeypatch.setattr(scanner, "PARALLEL_THRESHOLD", 10)
    monkeypatch.setattr(scanner, "CHUNK", 7)
    par = scan_sync(str(tmp_path), workers=2)
    assert [i.path for i in par.images] == [i.path for i in seq.images]
    assert [(p.path, p.kind) for p in par.problems] == [(p.path, p.kind) for p in seq.problems]


def test_split_aliases_hidden_and_metadata_files(tmp_path):
    write_png(tmp_path / "training" / "x" / "1.png")
    write_png(tmp_path / "training" / "y" / "1.png", seed=5)
    write_png(tmp_path / "valid" / "x" / "1.png", seed=6)
    write_png(tmp_path / "valid" / "y" / "1.png", seed=7)
    (tmp_path / "training" / "x" / ".DS_Store").write_bytes(b"\0\0junk")
    (tmp_path / "training" / "x" / "Thumbs.db").write_bytes(b"junk")
    (tmp_path / ".git").mkdir()
    result = scan_sync(str(tmp_path))
    assert result.splits == ["train", "val"]
    assert result.problems == []
    assert {p.path for p in result.ignored} >= {"training/x/.DS_Store", "training/x/Thumbs.db"}


def test_missing_root_and_no_classes(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        scan_sync(str(tmp_path / "nope"))
    with pytest.raises(LayoutError, match="no class folders"):
        scan_sync(str(tmp_path))


def test_scan_can_be_stopped(tmp_path):
    for i in range(30):
        write_png(tmp_path / "a" / f"{i}.png", seed=i)
        write_png(tmp_path / "b" / f"{i}.png", seed=100 + i)
    import balancelab.engine.data.scanner as scanner

    stop = StopToken()
    events = []
    old = scanner.CHUNK
    scanner.CHUNK = 10
    try:
        for ev in scan(str(tmp_path), stop=stop, workers=1):
            events.append(ev)
            if isinstance(ev, Progress) and ev.done >= 10:
                stop.request()
    finally:
        scanner.CHUNK = old
    final = events[-1]
    assert isinstance(final, Finished) and final.stopped
    assert len(final.result.images) < 60
    assert not final.result.complete


def run_cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ})


def test_cli_scan_json_contract(tmp_path):
    planted = make_problem_tree(tmp_path)
    proc = run_cli("scan", str(tmp_path), "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["classes"] == [{"name": "bird", "count": 0}, {"name": "cat", "count": 11}, {"name": "dog", "count": 7}]
    assert data["total_images"] == 18
    assert data["imbalance_ratio"] == pytest.approx(11 / 7)
    assert set(data["splits"]) == {"train", "val", "test"}
    assert {"name": "cat", "count": 6} in data["splits"]["train"]
    paths = {p["path"] for p in data["problems"]}
    assert set(planted) <= paths
    assert all(set(p) >= {"path", "reason"} for p in data["problems"])


def test_cli_scan_errors_and_table(tmp_path):
    proc = run_cli("scan", str(tmp_path / "missing"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr
    proc = run_cli("scan", str(tmp_path))
    assert proc.returncode == 2 and "no class folders" in proc.stderr
    write_png(tmp_path / "a" / "1.png")
    write_png(tmp_path / "b" / "1.png", seed=3)
    proc = run_cli("scan", str(tmp_path))
    assert proc.returncode == 0 and "Imbalance ratio" in proc.stdout and "█" in proc.stdout


def test_demo_dataset_is_long_tailed_real_data(demo_root):
    result = scan_sync(str(demo_root))
    counts = result.class_counts("train")
    assert list(counts) == [str(d) for d in range(10)]
    values = list(counts.values())
    assert values == sorted(values, reverse=True) and values[0] / values[-1] >= 10
    assert set(result.class_counts("test").values()) == {30}
    assert result.problems == []


def test_parallel_scan_from_a_script_without_main_guard(tmp_path):
    """Worker processes must not re-run the caller's script (no `if __name__ == "__main__"` here)."""
    for i in range(40):
        write_png(tmp_path / "data" / ("a" if i % 2 else "b") / f"{i}.png", seed=i)
    script = tmp_path / "user_script.py"
    script.write_text(
        "import balancelab.engine.data.scanner as s\n"
        "s.PARALLEL_THRESHOLD = 5\n"
        "s.CHUNK = 4\n"
        f"r = s.scan_sync({str(tmp_path / 'data')!r}, workers=2)\n"
        "print('IMAGES', len(r.images))\n")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("IMAGES") == 1 and "IMAGES 40" in proc.stdout


def test_imbalance_is_reported_per_split_with_the_training_split_first(demo_root):
    result = scan_sync(str(demo_root))
    counts = result.class_counts("train")
    assert result.training_split == "train"
    assert result.imbalance_ratio("train") == max(counts.values()) / min(counts.values())
    assert result.imbalance_ratio("test") == 1.0  # the demo's balanced test split
    assert result.imbalance_ratio() < result.imbalance_ratio("train")  # pooling splits hides the imbalance
    assert result.describe_imbalance().startswith(f"train {result.imbalance_ratio('train'):.1f}:1 (test 1.0:1")
    summary = result.to_json_dict()
    assert summary["training_imbalance_ratio"] == result.imbalance_ratio("train")
    assert summary["imbalance_ratio_per_split"] == {"train": result.imbalance_ratio("train"), "test": 1.0}


def test_leakage_and_conflicting_labels_become_warnings_for_a_training(tmp_path):
    """The GUI started training on a dataset whose test image was copied into train, and reported
    the test figures as if clean; the warnings now come from the scan's own findings."""
    import shutil

    from balancelab.engine.data.splits import data_warnings

    for split in ("train", "test"):
        for c in ("a", "b"):
            for i in range(4):
                write_png(tmp_path / split / c / f"{i}.png", seed=hash((split, c, i)) % 2**32)
    assert data_warnings(scan_sync(str(tmp_path))) == []
    shutil.copy(tmp_path / "test" / "a" / "0.png", tmp_path / "train" / "a" / "copy.png")  # leaks
    shutil.copy(tmp_path / "train" / "b" / "1.png", tmp_path / "train" / "a" / "which.png")  # two labels
    warnings = data_warnings(scan_sync(str(tmp_path)))
    assert len(warnings) == 2 and "more than one split" in warnings[0] and "more than one class" in warnings[1]


def test_a_problem_is_described_without_saying_its_kind_twice():
    from balancelab.engine.data.layout import Problem

    assert Problem("a.png", "truncated", "truncated: no PNG IEND chunk").describe() == "truncated: no PNG IEND chunk"
    assert Problem("a.png", "zero-byte", "zero-byte file").describe() == "zero-byte file"
    assert Problem("b.png", "duplicate", "identical content to c.png").describe() == \
        "duplicate: identical content to c.png"


def test_the_imbalance_among_trained_classes_leaves_out_a_class_too_small_to_train(tmp_path):
    from balancelab.engine.data.splits import trainable_classes, trained_imbalance_ratio, why_not_trainable

    for label, n in (("big", 6), ("small", 3), ("single", 1)):
        for i in range(n):
            write_png(tmp_path / label / f"{i}.png", seed=hash((label, i)) % 1000)
    result = scan_sync(str(tmp_path))
    trainable = trainable_classes(result)
    assert trainable[0] == ["big", "small"] and list(trainable[1]) == ["single"]
    assert result.imbalance_ratio(result.training_split) == 6.0  # the data as it is
    assert trained_imbalance_ratio(result, trainable[0]) == 2.0  # what a model is trained on
    assert why_not_trainable(result, trainable) is None
    assert "found 1" in why_not_trainable(result, (["big"], {"small": "x", "single": "y"}))
