"""Exports never change a user file: basename collisions, crafted split.json, occupied targets,
and a full disk / I/O error / permission error at each write (fault injection)."""
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from balancelab.engine.core.events import Finished
from balancelab.engine.results import export_dataset, new_files
from balancelab.engine.results.export import EXPORTS, export_run
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_folder import RunError
from tests.hostile import write_png

ROOT = Path(__file__).resolve().parents[2]


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(folder: Path) -> list[str]:
    return [str(p) for p in folder.rglob("*") if p.name.startswith((".tmp-", "tmp")) or p.name.endswith(".tmp")]


@pytest.fixture(scope="module")
def collision_run(tmp_path_factory):
    """{0,1}/{batch1,batch2}/img001..020.png (distinct images sharing basenames) and a run on it."""
    base = tmp_path_factory.mktemp("collide")
    data = base / "data"
    for c in ("0", "1"):
        for b in ("batch1", "batch2"):
            for i in range(1, 21):
                write_png(data / c / b / f"img{i:03d}.png", seed=(int(c) * 2 + (b == "batch2")) * 100 + i)
    cfg = TrainConfig(data=str(data), out=str(base / "run"), model="tiny-2conv", epochs=1, image_size=16, seed=0)
    assert isinstance(list(train(cfg))[-1], Finished)
    return data, base / "run"


@pytest.mark.parametrize("copy", [False, True], ids=["hard-links", "copies"])
def test_dataset_export_with_shared_basenames_keeps_every_original(collision_run, tmp_path, monkeypatch, copy):
    data, run = collision_run
    before = checksums(data)
    if copy:  # the file system refuses hard links: the copy fallback once wrote through earlier links
        def no_link(src, dst, *a, **k):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(export_dataset.os, "link", no_link)
    info = export_run("dataset", str(run), str(tmp_path / "out"), str(data))
    assert checksums(data) == before
    split = json.loads((run / "split.json").read_text())
    assert info["files"] == len(split["train"]) and info["method"] == ("copy" if copy else "link")
    rows = list(csv_rows(tmp_path / "out" / "manifest.csv"))
    assert len({r[0] for r in rows}) == len(rows)  # every output has its own name
    for out_rel, src_rel in rows:  # each output is its source's content, under its sub-path
        assert (tmp_path / "out" / out_rel).read_bytes() == (data / src_rel).read_bytes()
        assert out_rel.split("/")[1:] == src_rel.split("/")[1:]


def csv_rows(path: Path):
    import csv

    with open(path, newline="") as fh:
        return list(csv.reader(fh))[1:]


def crafted(run: Path, tmp_path: Path, change) -> Path:
    copy = tmp_path / "crafted-run"
    shutil.copytree(run, copy)
    split = json.loads((copy / "split.json").read_text())
    change(split, tmp_path)
    (copy / "split.json").write_text(json.dumps(split))
    return copy


def _absolute(split, tmp):
    split["train"][0][0] = str(tmp / "outside" / "sentinel.png")


def _dotdot(split, tmp):
    split["train"][0][0] = "../outside/sentinel.png"


def _label(split, tmp):
    split["classes"][0] = "../escape"
    for item in split["train"]:
        item[1] = "../escape" if item[1] == "0" else item[1]


def _symlinked_class(split, tmp):
    split["train"][0][0] = "link/sentinel.png"


@pytest.mark.parametrize("change", [_absolute, _dotdot, _label, _symlinked_class])
def test_crafted_split_json_is_refused_and_nothing_outside_changes(collision_run, tmp_path, change):
    data, run = collision_run
    outside = tmp_path / "outside"
    outside.mkdir()
    sentinel = outside / "sentinel.png"
    sentinel.write_bytes(b"user data")
    link = data / "link"
    os.symlink(outside, link)
    try:
        before = checksums(data)
        with pytest.raises(RunError) as err:
            export_run("dataset", str(crafted(run, tmp_path, change)), str(tmp_path / "out"), str(data))
        assert "\n" not in str(err.value)
        assert checksums(data) == before and sentinel.read_bytes() == b"user data"
        assert sorted(os.listdir(outside)) == ["sentinel.png"] and not (tmp_path / "escape").exists()
        assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
    finally:
        link.unlink()


@pytest.mark.parametrize("change", [_absolute, _dotdot, _label])
def test_read_split_refuses_paths_and_labels_that_leave_their_folder(collision_run, tmp_path, change):
    from balancelab.engine.train.run_folder import read_split

    with pytest.raises(RunError, match="split.json is damaged"):
        read_split(str(crafted(collision_run[1], tmp_path, change)))


@pytest.mark.parametrize("kind", list(EXPORTS))
def test_an_occupied_target_is_refused_and_left_alone(collision_run, tmp_path, kind):
    data, run = collision_run
    target = tmp_path / "mine"
    if EXPORTS[kind].target == "folder":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
        mine = target / "notes.txt"
    else:
        target.write_text("mine")
        mine = target
    with pytest.raises(RunError, match="not empty|already exists"):
        export_run(kind, str(run), str(target), str(data))
    assert mine.read_text() == "mine"


FAULTS = [errno.ENOSPC, errno.EIO, errno.EACCES]


@pytest.mark.parametrize("code", FAULTS, ids=errno.errorcode.get)
@pytest.mark.parametrize("kind", ["report", "torchscript"])
def test_file_export_write_fault_leaves_nothing(collision_run, tmp_path, monkeypatch, kind, code):
    data, run = collision_run

    def failing_fsync(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(new_files.os, "fsync", failing_fsync)
    out = tmp_path / "exports" / f"model.{kind}"
    with pytest.raises(RunError, match=os.strerror(code)) as err:
        export_run(kind, str(run), str(out), str(data))
    assert "\n" not in str(err.value)
    assert not out.exists() and not temp_files(tmp_path)


@pytest.mark.parametrize("code", FAULTS, ids=errno.errorcode.get)
@pytest.mark.parametrize("at", [1, 20, "manifest"])
def test_dataset_export_fault_at_each_write_undoes_it(collision_run, tmp_path, monkeypatch, at, code):
    """Copies (no hard links) failing at the 1st or 20th file, or the manifest: the export is taken
    back, the dataset is byte-for-byte unchanged, no temporary file is left."""
    data, run = collision_run
    before = checksums(data)
    monkeypatch.setattr(export_dataset.os, "link",
                        lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    calls = [0]
    real_copy = shutil.copyfileobj

    def copy(fin, fout, *a, **k):
        calls[0] += 1
        if calls[0] == at:
            fout.write(b"partial")
            raise OSError(code, os.strerror(code))
        return real_copy(fin, fout, *a, **k)

    monkeypatch.setattr(export_dataset.shutil, "copyfileobj", copy)
    if at == "manifest":
        monkeypatch.setattr(new_files.os, "fsync", lambda fd: (_ for _ in ()).throw(OSError(code, os.strerror(code))))
    with pytest.raises(RunError) as err:
        export_run("dataset", str(run), str(tmp_path / "out"), str(data))
    assert "\n" not in str(err.value)
    assert checksums(data) == before
    assert not (tmp_path / "out").exists() and not temp_files(tmp_path)


def test_cli_export_refusals_are_one_line_and_onnx_json_is_clean(collision_run, tmp_path):
    data, run = collision_run
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", "--run", str(run), "--format", "dataset",
                           "--data", str(data), "--out", str(tmp_path / "full")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0 and "not empty" in proc.stderr
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", "--run", str(run), "--format", "onnx",
                           "--json", "--out", str(tmp_path / "m.onnx")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["same_top1"] is True  # stdout holds the JSON and nothing else


def test_exports_take_the_users_umask_and_names_that_are_not_utf8(collision_run, tmp_path):
    """Exports were created 0600 whatever the umask; a report, a dataset export or a TorchScript
    file under a name that is not UTF-8 ended with an unexpected UnicodeEncodeError / TypeError."""
    from balancelab.engine.results.export import export_run

    data, run = collision_run
    odd = os.fsdecode(b"caf\xe9")  # a Latin-1 name on a UTF-8 system
    old = os.umask(0o022)
    try:
        for kind, name in (("report", f"{odd}.html"), ("torchscript", f"{odd}.pt"), ("dataset", odd)):
            info = export_run(kind, str(run), str(tmp_path / name), str(data))
            path = Path(info["path"])
            written = path / "manifest.csv" if kind == "dataset" else path
            assert written.stat().st_mode & 0o777 == 0o644, (kind, oct(written.stat().st_mode))
    finally:
        os.umask(old)
