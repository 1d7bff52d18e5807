"""Reading users' files: special files never block or exhaust memory, and BalanceLab's own
folders are never scanned as classes."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import balancelab.engine.data.imageio as imageio
from balancelab.engine.data.imageio import ImageDecodeError, load_array, read_bytes
from balancelab.engine.data.layout import LayoutError
from balancelab.engine.data.scanner import scan_sync
from tests.hostile import write_png

ROOT = Path(__file__).resolve().parents[2]
posix_only = pytest.mark.skipif(os.name != "posix", reason="FIFOs, sockets and /dev/zero are POSIX")


def _special_files(folder: Path) -> dict[str, str]:
    """Plant a FIFO, a socket, a /dev/zero link and a 2 GB sparse file; returns name -> expected kind.
    The socket is bound (and closed) so the file stays; the caller keeps nothing open."""
    os.mkfifo(folder / "fifo.png")
    os.symlink("/dev/zero", folder / "zero.png")
    os.symlink("/dev/urandom", folder / "urandom.png")
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(str(folder / "sock.png"))
    finally:
        sock.close()
    with open(folder / "huge.png", "wb") as fh:
        fh.truncate(2 * 1024**3)  # sparse: no disk used
    return {"fifo.png": "special-file", "zero.png": "special-file", "urandom.png": "special-file",
            "sock.png": "special-file", "huge.png": "too-large"}


def _dataset(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "data"
    for label in ("a", "b"):
        for i in range(6):
            write_png(root / label / f"{i}.png", seed=hash((label, i)) % 2**32)
    return root, _special_files(root / "a")


@posix_only
def test_read_bytes_refuses_special_and_huge_files_with_a_reason(tmp_path):
    _special_files(tmp_path)
    reasons = {}
    for name in ("fifo.png", "zero.png", "urandom.png", "sock.png", "huge.png"):
        with pytest.raises(ImageDecodeError) as err:
            read_bytes(str(tmp_path / name))
        reasons[name] = err.value.reason
    assert "FIFO" in reasons["fifo.png"] and "socket" in reasons["sock.png"]
    assert "device" in reasons["zero.png"] and "device" in reasons["urandom.png"]
    assert reasons["huge.png"] == "file too large (2048 MB > 256 MB limit)"


def test_read_bytes_reads_at_most_the_limit(tmp_path):
    path = tmp_path / "x.png"
    path.write_bytes(b"\x89PNG" + b"\0" * 1000)
    assert read_bytes(str(path), limit=1004) == path.read_bytes()
    with pytest.raises(ImageDecodeError, match=r"file too large"):
        read_bytes(str(path), limit=1003)


@posix_only
def test_a_fifo_swapped_in_after_the_check_does_not_block(tmp_path, monkeypatch):
    """The race: the path was a regular file when checked, a FIFO when opened. The open is
    non-blocking and the opened file is checked again, so this returns at once."""
    os.mkfifo(tmp_path / "x.png")
    monkeypatch.setattr(imageio, "is_regular_file", lambda path: True)
    with pytest.raises(ImageDecodeError, match="FIFO"):
        read_bytes(str(tmp_path / "x.png"))


@posix_only
def test_every_reader_refuses_special_files(tmp_path):
    """Decode cache and prediction use load_array, thumbnails open_image: all go through read_bytes."""
    expected = _special_files(tmp_path)
    for name, kind in expected.items():
        with pytest.raises(ImageDecodeError) as err:
            load_array(str(tmp_path / name), 3, 8)
        assert err.value.kind == kind
        with pytest.raises(ImageDecodeError):
            imageio.open_image(str(tmp_path / name))


@posix_only
def test_scan_reports_special_files_and_finishes(tmp_path):
    root, expected = _dataset(tmp_path)
    code = ("import json, sys\nfrom balancelab.engine.data.scanner import scan_sync\n"
            "r = scan_sync(sys.argv[1])\n"
            "print(json.dumps([[p.path, p.kind, p.reason] for p in r.problems]), len(r.images))")
    done = subprocess.run([sys.executable, "-c", code, str(root)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    problems_json, n_images = done.stdout.rsplit(" ", 1)
    problems = {path: (kind, reason) for path, kind, reason in __import__("json").loads(problems_json)}
    assert int(n_images) == 12
    for name, kind in expected.items():
        assert problems[f"a/{name}"][0] == kind, problems


@posix_only
def test_one_epoch_training_finishes_with_special_files_skipped(tmp_path):
    root, expected = _dataset(tmp_path)
    out = tmp_path / "run"
    args = [sys.executable, str(ROOT / "main.py"), "train", "--data", str(root), "--model", "tiny-2conv",
            "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "BALANCELAB_HOME": str(tmp_path / "home")}
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (out / "metrics.json").exists()


def test_balancelab_output_folders_are_never_classes(tmp_path):
    root = tmp_path / "data"
    for label in ("a", "b"):
        write_png(root / label / "0.png")
    write_png(root / "run-1" / "checkpoints" / "x.png")
    (root / "run-1" / ".balancelab-run").write_text("")
    write_png(root / "_excluded" / "a" / "1.png")
    (root / ".balancelab").mkdir()
    (root / ".balancelab" / "journal.json").write_text("[]")
    write_png(root / "b" / "nested-run" / "y.png")
    (root / "b" / "nested-run" / ".balancelab-run").write_text("")
    result = scan_sync(str(root))
    assert result.classes == ["a", "b"]
    assert sorted(img.path for img in result.images) == ["a/0.png", "b/0.png"]
    ignored = {p.path: p.kind for p in result.ignored}
    assert ignored["run-1"] == ignored["_excluded"] == ignored[".balancelab"] == "balancelab-output"
    assert ignored["b/nested-run"] == "balancelab-output"


def test_run_folders_inside_split_folders_are_skipped(tmp_path):
    root = tmp_path / "data"
    for split in ("train", "val"):
        for label in ("a", "b"):
            write_png(root / split / label / "0.png")
    write_png(root / "train" / "my-run" / "x.png")
    (root / "train" / "my-run" / ".balancelab-run").write_text("")
    result = scan_sync(str(root))
    assert result.classes == ["a", "b"]
    assert {p.path: p.kind for p in result.ignored}["train/my-run"] == "balancelab-output"


def test_scanning_a_run_folder_is_refused_in_one_line(tmp_path):
    write_png(tmp_path / "a" / "0.png")
    (tmp_path / ".balancelab-run").write_text("")
    with pytest.raises(LayoutError, match="is a BalanceLab run folder"):
        scan_sync(str(tmp_path))


def test_training_with_an_unwritable_home_uses_a_temporary_cache(tmp_path):
    """A cache must never be why training fails: HOME below a regular file cannot be created."""
    root = tmp_path / "data"
    for label in ("a", "b"):
        for i in range(6):
            write_png(root / label / f"{i}.png", seed=hash((label, i, 3)) % 2**32)
    (tmp_path / "file").write_text("")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("BALANCELAB_HOME", "XDG_DATA_HOME")}
    env.update(HOME=str(tmp_path / "file" / "home"), TMPDIR=str(tmp_path / "tmp"))
    args = [sys.executable, str(ROOT / "main.py"), "train", "--data", str(root), "--model", "tiny-2conv",
            "--epochs", "1", "--batch-size", "4", "--device", "cpu", "--out", str(tmp_path / "run")]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stderr.count("is not usable (Not a directory); using " + str(tmp_path / "tmp")) == 1, done.stderr
