"""Hostile datasets, files changing under us, interruption, resource limits."""
import csv
import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from balancelab.engine.train.checkpoints import load_checkpoint
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.data.imageio import load_array
from balancelab.engine.data.scanner import scan_sync
from balancelab.engine.train.run import train
from tests.hostile import make_hostile_tree, write_png

ROOT = Path(__file__).resolve().parents[2]


def checksums(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink() and ".balancelab" not in p.parts}


@pytest.fixture
def hostile(tmp_path):
    root = tmp_path / "hostile"
    problems, readable, ignored = make_hostile_tree(root)
    return root, problems, readable, ignored


def test_scan_reports_each_hostile_input_precisely(hostile):
    root, problems, readable, ignored = hostile
    before = checksums(root)
    result = scan_sync(str(root))
    found = {(p.path, p.kind) for p in result.problems}
    for path, kind in problems.items():
        assert (path, kind) in found, (path, kind, sorted(found))
    assert {img.path for img in result.images} == readable
    ignored_paths = {p.path for p in result.ignored}
    assert ignored <= ignored_paths
    assert any(p.kind == "symlink-loop" for p in result.ignored) or "train/cat/loop" not in {i.path for i in result.images}
    assert checksums(root) == before


def test_every_mode_decodes_consistently(hostile):
    root, _, readable, _ = hostile
    for rel in readable:
        rgb = load_array(str(root / rel), 3, 16)
        gray = load_array(str(root / rel), 1, 16)
        assert rgb.shape == (16, 16, 3) and gray.shape == (16, 16, 1)
        assert rgb.dtype == np.uint8
    # 16-bit data is rescaled, not clipped to white
    assert load_array(str(root / "train/cat/sixteen_bit.png"), 1, 16).mean() < 250
    # EXIF orientation is applied: a 30x10 image rotated 90 degrees is portrait before the square crop
    from balancelab.engine.data.imageio import open_image

    assert open_image(str(root / "train/cat/exif_rotated.jpg")).size == (10, 30)
    # transparency composites on white instead of black
    from PIL import Image

    t = root / "transparent.png"
    Image.new("RGBA", (8, 8), (0, 0, 0, 0)).save(t)
    assert load_array(str(t), 3, 8).min() == 255


def test_training_uses_every_readable_image_and_changes_no_file(hostile, tmp_path):
    root, _, readable, _ = hostile
    before = checksums(root)
    cfg = TrainConfig(data=str(root), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1, batch_size=8, val_fraction=0.3)
    events = list(train(cfg))
    assert isinstance(events[-1], Finished), events[-1]
    split = __import__("json").loads((tmp_path / "run" / "split.json").read_text())
    used = {p for part in ("train", "val", "test") for p, _ in (split[part] or [])}
    assert used == readable
    with open(tmp_path / "run" / "skipped.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    left_out = sorted(scan_sync(str(root)).left_out_files())
    assert sorted(map(tuple, rows)) == left_out and left_out and not {p for p, _ in left_out} & readable
    assert checksums(root) == before


def test_file_deleted_between_scan_and_training_is_skipped_and_listed(tmp_path):
    for label in ("a", "b"):
        for i in range(6):
            write_png(tmp_path / "data" / label / f"{i}.png", seed=hash((label, i)) % 2**32)
    result = scan_sync(str(tmp_path / "data"))
    (tmp_path / "data" / "a" / "3.png").unlink()
    cfg = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1, val_fraction=0.3)
    events = list(train(cfg, scan_result=result))
    assert isinstance(events[-1], Finished), events[-1]
    with open(tmp_path / "run" / "skipped.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))[1:]
    assert rows == [["a/3.png", "file no longer exists"]]


def test_dataset_renamed_while_open_fails_cleanly(tmp_path):
    for label in ("a", "b"):
        for i in range(4):
            write_png(tmp_path / "data" / label / f"{i}.png", seed=hash((label, i, 1)) % 2**32)
    result = scan_sync(str(tmp_path / "data"))
    os.rename(tmp_path / "data", tmp_path / "renamed")
    cfg = TrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1)
    last = list(train(cfg, scan_result=result))[-1]
    assert isinstance(last, Failed) and "does not exist" in last.message


def test_big_cache_falls_back_to_memory_mapping(demo_root, tmp_path, monkeypatch):
    import balancelab.engine.data.decode_cache as tc

    monkeypatch.setattr(tc, "memory_budget_bytes", lambda: 0)
    monkeypatch.setenv("BALANCELAB_HOME", str(tmp_path / "home"))
    cfg = TrainConfig(data=str(demo_root), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1)
    last = list(train(cfg))[-1]
    assert isinstance(last, Finished), last
    decoded = [ev for ev in tc.decode_images([str(p) for p in sorted(demo_root.rglob("*.png"))[:5]], 1, 28)]
    assert decoded[-1].result.memory_mapped


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_permission_denied_file_and_folder(tmp_path):
    for label in ("a", "b"):
        for i in range(3):
            write_png(tmp_path / label / f"{i}.png", seed=i)
    locked_file = tmp_path / "a" / "0.png"
    locked_dir = tmp_path / "b" / "sub"
    write_png(locked_dir / "x.png")
    os.chmod(locked_file, 0)
    os.chmod(locked_dir, 0)
    try:
        result = scan_sync(str(tmp_path))
    finally:
        os.chmod(locked_file, 0o644)
        os.chmod(locked_dir, 0o755)
    kinds = {(p.path, p.kind) for p in result.problems}
    assert ("a/0.png", "unreadable") in kinds and ("b/sub", "unreadable") in kinds


def test_kill_at_random_points_leaves_a_loadable_resumable_run(demo_root, tmp_path):
    """SIGKILL a training process at several random moments; the run always loads and resumes."""
    out = tmp_path / "run"
    args = [sys.executable, str(ROOT / "main.py"), "train", "--data", str(demo_root), "--model", "tiny-2conv",
            "--epochs", "5", "--batch-size", "4", "--out", str(out), "--resume"]
    rng = random.Random(1)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for attempt in range(2):
        proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not (out / "last.pt").exists() and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        time.sleep(rng.uniform(0.0, 0.8))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait()
        state = load_checkpoint(str(out / "last.pt"))  # never a half-written checkpoint
        assert state["epoch"] >= 1
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    metrics = __import__("json").loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4, 5]


def test_mismatched_checkpoints_give_clear_errors(demo_root, tmp_path):
    import torch

    from balancelab.engine.train.checkpoints import CheckpointError, save_checkpoint
    from balancelab.engine.results.inference import evaluate_run, load_run_model
    from balancelab.engine.train.run_folder import RunError

    cfg = TrainConfig(data=str(demo_root), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1)
    assert isinstance(list(train(cfg))[-1], Finished)
    # a dataset with a class the model never saw
    other = tmp_path / "other"
    for label in ("0", "cat"):
        for i in range(3):
            write_png(other / label / f"{i}.png", seed=i + len(label))
    with pytest.raises(RunError, match="not trained on: cat"):
        evaluate_run(str(tmp_path / "run"), str(other), split="all")
    # a checkpoint whose weights belong to another architecture
    state = load_checkpoint(str(tmp_path / "run" / "best.pt"))
    state["model_name"] = "mnist-classic"
    save_checkpoint(state, str(tmp_path / "run" / "best.pt"))
    with pytest.raises(CheckpointError, match="does not match its architecture"):
        load_run_model(str(tmp_path / "run"))
    # a file that is a plain tensor, not a checkpoint dict
    torch.save(torch.zeros(3), tmp_path / "run" / "best.pt")
    with pytest.raises(CheckpointError, match="not a BalanceLab checkpoint"):
        load_run_model(str(tmp_path / "run"))


def test_out_of_memory_is_reported_with_advice(demo_root, tmp_path, monkeypatch):
    import torch

    import balancelab.engine.train.run as training

    def boom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        yield  # pragma: no cover

    monkeypatch.setattr(training, "train_one_epoch", boom)
    cfg = TrainConfig(data=str(demo_root), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1)
    last = list(train(cfg))[-1]
    assert isinstance(last, Failed) and "lower the batch size" in last.message


def test_decoded_image_cache_is_pruned_oldest_first(tmp_path):
    from balancelab.engine.data.decode_cache import prune_cache

    for i, key in enumerate(("a" * 40, "b" * 40, "c" * 40)):
        path = tmp_path / f"{key}.npy"
        path.write_bytes(b"\0" * 1000)
        (tmp_path / f"{key}.json").write_text("{}")
        os.utime(path, (1000 + i, 1000 + i))
    (tmp_path / "user-file.npy").write_bytes(b"\0" * 5000)  # not ours: never touched
    removed = prune_cache(str(tmp_path), keep={"a" * 40}, max_bytes=1500)
    assert [os.path.basename(p) for p in removed] == ["b" * 40 + ".npy", "c" * 40 + ".npy"]  # a is in use
    assert (tmp_path / ("a" * 40 + ".npy")).exists() and (tmp_path / "user-file.npy").exists()
    assert not (tmp_path / ("b" * 40 + ".json")).exists()


def test_class_folders_linked_to_the_disk_or_back_into_the_dataset_are_skipped(tmp_path):
    """A class folder linked to ``/`` scanned the whole disk (218,901 files) as one class, and one
    linked to the dataset itself made a class of copies of every image. Storage elsewhere, or in
    a hidden folder of the dataset, linked in as a class is still read."""
    from balancelab.engine.data.scanner import scan_sync

    root = tmp_path / "data"
    for c in ("a", "b"):
        for i in range(3):
            write_png(root / c / f"{i}.png", seed=i + (10 if c == "b" else 0))
    elsewhere = tmp_path / "store" / "c"
    for i in range(3):
        write_png(elsewhere / f"{i}.png", seed=20 + i)
    hidden_store = root / ".store" / "d"  # a folder of the dataset the scan does not walk, linked in
    for i in range(3):
        write_png(hidden_store / f"{i}.png", seed=30 + i)
    (root / "disk").symlink_to("/", target_is_directory=True)
    (root / "again").symlink_to(root, target_is_directory=True)
    (root / "c").symlink_to(elsewhere, target_is_directory=True)
    (root / "d").symlink_to(hidden_store, target_is_directory=True)
    (root / "b" / "nested-root").symlink_to(tmp_path, target_is_directory=True)  # holds the dataset: a loop
    result = scan_sync(str(root))
    assert sorted(result.classes) == ["a", "b", "c", "d"] and len(result.images) == 12
    skipped = {p.path: p.reason for p in result.ignored if p.kind == "symlink-loop"}
    assert set(skipped) == {"disk", "again", "b/nested-root"}
    assert "containing the dataset" in skipped["disk"]


@pytest.mark.parametrize("where", ["load", "open"])
def test_anything_pillow_raises_on_a_file_is_that_files_problem(tmp_path, monkeypatch, where):
    """A crafted file can make a Pillow plugin raise struct.error or ZeroDivisionError: that file is
    corrupt, the others are read."""
    import struct

    from PIL import Image

    from balancelab.engine.data import imageio

    write_png(tmp_path / "a.png", seed=1)
    data = (tmp_path / "a.png").read_bytes()

    def broken(*args, **kwargs):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(Image.Image, "load", broken) if where == "load" else monkeypatch.setattr(
        imageio, "_open_any", broken)
    with pytest.raises(imageio.ImageDecodeError) as info:
        imageio.decode_array(data, 1, 8, "a.png")
    assert info.value.kind == "corrupt" and "unpack requires" in info.value.reason


def test_a_bug_in_our_own_code_is_not_reported_as_corrupt_files(tmp_path, monkeypatch):
    """The deep check and the training cache caught every exception per file: a bug of ours (here
    in the digest) marked every good image "corrupt", inviting the user to exclude them."""
    from balancelab.engine.data import decode_cache, deep_check

    write_png(tmp_path / "a.png", seed=1)
    path = str(tmp_path / "a.png")

    def bug(data):
        raise KeyError("a bug")

    monkeypatch.setattr(deep_check, "content_digest", bug)
    with pytest.raises(KeyError):
        deep_check._decode_chunk([path], 1, 8)
    monkeypatch.setattr(decode_cache, "load_array", lambda p, c, s: np.zeros((9, 9, 1), dtype=np.uint8))
    with pytest.raises(ValueError):  # a block of the wrong shape: not "cannot decode" for the file
        decode_cache._decode_chunk([path], 1, 8)
