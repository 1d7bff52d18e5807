"""Run folders never overwrite or mix: occupied --out refused, one writer at a time, interrupted
runs recognisable as incomplete, checkpoint writes that survive a full disk, damaged run files
giving one-line errors everywhere they are read."""
import errno
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from balancelab.engine.core import atomic
from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.core.paths import RUN_MARKER, new_run_dir
from balancelab.engine.results.export import export_run
from balancelab.engine.results.inference import evaluate_run, load_run_model
from balancelab.engine.results.loaded_run import load_run
from balancelab.engine.results.report import write_report
from balancelab.engine.train.checkpoints import CheckpointError, CheckpointKeeper, load_checkpoint
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_events import EpochEnd
from balancelab.engine.train.run_folder import RunError, RunFolderWriter, incomplete_reason, list_runs, read_state
from tests.hostile import write_png

ROOT = Path(__file__).resolve().parents[2]


def checksums(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def temp_files(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob("*") if p.name.startswith(".tmp-")]


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    """Two classes of 12 images and a class with a single image (it never reaches validation)."""
    data = tmp_path_factory.mktemp("small") / "data"
    for c, n in (("a", 12), ("b", 12), ("rare", 1)):
        for i in range(n):
            write_png(data / c / f"{i}.png", seed=hash(c) % 1000 + i)
    return data


def cfg(data, out, **kw) -> TrainConfig:
    return TrainConfig(**{"data": str(data), "out": str(out), "model": "tiny-2conv", "epochs": 1, "image_size": 16,
                          "batch_size": 8, "seed": 0, **kw})


@pytest.fixture(scope="module")
def finished_run(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    last = list(train(cfg(small_data, out)))[-1]
    assert isinstance(last, Finished), last
    return out


def test_a_finished_run_is_marked_complete_and_lists_classes_missing_from_validation(finished_run):
    assert read_state(str(finished_run)) == "complete" and incomplete_reason(str(finished_run)) is None
    metrics = json.loads((finished_run / "metrics.json").read_text())
    # a one-image class can never be validated: it is left out of training, and metrics.json says why
    assert "only 1 training image" in metrics["excluded_classes"]["rare"] and "rare" not in metrics["classes"]
    assert metrics["classes_without_validation_images"] == []


def test_out_holding_user_files_is_refused_untouched(small_data, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text('{"my": "settings"}')
    (mine / "history.csv").write_text("my,history\n")
    before = checksums(mine)
    for resume in (False, True):
        last = list(train(cfg(small_data, mine, resume=resume)))[-1]
        assert isinstance(last, Failed) and "not a BalanceLab run" in last.message and "\n" not in last.message
    assert checksums(mine) == before and sorted(os.listdir(mine)) == ["config.json", "history.csv"]


def test_second_training_into_a_finished_run_is_refused_without_resume(small_data, finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = checksums(run)
    last = list(train(cfg(small_data, run, seed=7)))[-1]
    assert isinstance(last, Failed) and "--resume" in last.message
    assert checksums(run) == before


def test_a_reserved_folder_is_a_run_folder_the_scanner_can_skip(small_data):
    folder = new_run_dir(str(small_data), "x")
    assert os.listdir(folder) == [RUN_MARKER] and read_state(str(folder)) == "reserved"
    assert isinstance(list(train(cfg(small_data, folder)))[-1], Finished)
    assert read_state(str(folder)) == "complete"


HOLD = """
import sys, time
from balancelab.engine.train.run_folder import RunFolderWriter
w = RunFolderWriter(sys.argv[1]).open()
print("held", flush=True)
time.sleep(600)
"""


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(small_data, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(run)], stdout=subprocess.PIPE, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    try:
        assert proc.stdout.readline().strip() == "held"
        last = list(train(cfg(small_data, run, resume=True)))[-1]
        assert isinstance(last, Failed) and "in use by another BalanceLab process" in last.message
        assert "still being written" in incomplete_reason(str(run))
    finally:
        proc.kill()
        proc.wait()
    # the holder died (SIGKILL): the kernel freed the lock; the folder reads as interrupted
    lock = run / ".balancelab-run.lock"
    note, stamp = lock.read_bytes(), lock.stat().st_mtime_ns
    assert "incomplete" in incomplete_reason(str(run))
    assert lock.read_bytes() == note and lock.stat().st_mtime_ns == stamp  # reading a run never rewrites its lock
    with RunFolderWriter(str(run), resume=True):
        pass


KILLED_WHILE_DECODING = """
import sys, time
from balancelab.engine.train import run as run_module
from balancelab.engine.train.config import TrainConfig


def decoding(*args, **kwargs):  # the minutes of decoding before a resumed run's first write
    print("decoding", flush=True)
    time.sleep(600)
    yield


run_module._prepare_data = decoding
settings = dict(model="tiny-2conv", epochs=2, image_size=16, batch_size=8, seed=0, resume=True)
list(run_module.train(TrainConfig(sys.argv[1], sys.argv[2], **settings)))
"""


def test_a_finished_run_killed_while_its_resume_decodes_stays_finished(small_data, tmp_path):
    """Opening a finished run to train it further marked it "running" at once, so a SIGKILL while
    the data was still decoding left it listed as interrupted, and evaluate refused it, although
    no file of it had changed."""
    run = tmp_path / "run"
    assert isinstance(list(train(cfg(small_data, run)))[-1], Finished)
    before = checksums(run)
    proc = subprocess.Popen([sys.executable, "-c", KILLED_WHILE_DECODING, str(small_data), str(run)],
                            stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert proc.stdout.readline().strip() == "decoding"
    finally:
        proc.kill()
        proc.wait()
    assert read_state(str(run)) == "complete" and incomplete_reason(str(run)) is None
    assert [r["dir"] for r in list_runs(str(tmp_path))] == [str(run)]
    assert {k: v for k, v in checksums(run).items() if not k.endswith(".lock")} == \
        {k: v for k, v in before.items() if not k.endswith(".lock")}


def test_a_run_that_fails_before_metrics_is_incomplete_for_every_reader(small_data, finished_run, tmp_path, monkeypatch):
    from balancelab.engine.train import run_folder

    run = tmp_path / "run"
    real_write = run_folder.write_predictions

    def write_predictions(*a, **k):  # the disk fills up while predictions.csv is written
        def fsync(fd):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        with monkeypatch.context() as m:
            m.setattr(atomic.os, "fsync", fsync)
            return real_write(*a, **k)

    monkeypatch.setattr(run_folder, "write_predictions", write_predictions)
    last = list(train(cfg(small_data, run)))[-1]
    monkeypatch.undo()
    assert isinstance(last, Failed) and "No space left on device" in last.message and "\n" not in last.message
    assert f"continue with `resume {run}`" in last.message  # the epochs trained are not lost
    assert not temp_files(run) and read_state(str(run)) == "incomplete"
    assert (run / "best.pt").exists()
    for read in (lambda: evaluate_run(str(run), str(small_data)), lambda: load_run_model(str(run)),
                 lambda: write_report(str(run), str(tmp_path / "r.html")),
                 lambda: export_run("torchscript", str(run), str(tmp_path / "m.pt")),
                 lambda: load_run({"dir": str(run), "name": "run", "config": {}, "metrics": {}})):
        with pytest.raises(RunError, match="incomplete"):
            read()
    assert list_runs(str(tmp_path)) == []
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "evaluate", "--run", str(run), "--data", str(small_data)],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and "incomplete" in proc.stderr and "Traceback" not in proc.stderr
    # --resume finishes it
    assert isinstance(list(train(cfg(small_data, run, resume=True)))[-1], Finished)
    assert read_state(str(run)) == "complete" and len(list_runs(str(tmp_path))) == 1


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EIO, errno.EACCES], ids=errno.errorcode.get)
@pytest.mark.parametrize("where", ["mkstemp", "write", "fsync", "replace"])
def test_checkpoint_write_fault_keeps_the_previous_checkpoint(tmp_path, monkeypatch, code, where):
    keeper = CheckpointKeeper(str(tmp_path), "val_balanced_accuracy")
    state = {"model": {"w": torch.zeros(3)}, "model_name": "tiny-2conv", "classes": ["a", "b"], "in_channels": 1,
             "image_size": 16}
    keeper.step(1, 0.5, lambda best: {**state, "epoch": 1, "best_metric": best})
    before = {name: (tmp_path / name).read_bytes() for name in ("best.pt", "last.pt")}

    def boom(*a, **k):
        raise OSError(code, os.strerror(code))

    if where == "write":
        real_fdopen = atomic.os.fdopen

        class Failing:
            def __init__(self, fh):
                self.fh = fh

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                return self.fh.__exit__(*exc)

            def write(self, data):
                self.fh.write(bytes(data)[:10])
                boom()

        monkeypatch.setattr(atomic.os, "fdopen", lambda *a, **k: Failing(real_fdopen(*a, **k)))
    else:
        target = atomic.tempfile if where == "mkstemp" else atomic.os
        monkeypatch.setattr(target, where, boom)
    with pytest.raises(CheckpointError) as err:
        keeper.step(2, 0.9, lambda best: {**state, "epoch": 2, "best_metric": best, "model": {"w": torch.ones(3)}})
    monkeypatch.undo()
    assert os.strerror(code) in str(err.value) and "previous checkpoint is kept" in str(err.value)
    assert {name: (tmp_path / name).read_bytes() for name in ("best.pt", "last.pt")} == before
    assert load_checkpoint(str(tmp_path / "last.pt"))["epoch"] == 1 and not temp_files(tmp_path)


def test_disk_full_during_a_training_checkpoint_is_one_clear_failure(small_data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    data_before = checksums(small_data)
    real = atomic.os.fsync
    armed = [False]

    def fsync(fd):
        if armed[0]:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    events = []
    for ev in train(cfg(small_data, run, epochs=2)):
        events.append(ev)
        if isinstance(ev, EpochEnd):
            armed[0] = True  # the disk is full from epoch 2's checkpoint on
    monkeypatch.undo()
    last = events[-1]
    assert isinstance(last, Failed) and "No space left on device" in last.message
    assert "enforce fail" not in last.message and not last.detail and "\n" not in last.message
    assert load_checkpoint(str(run / "last.pt"))["epoch"] == 1 and load_checkpoint(str(run / "best.pt"))["epoch"] == 1
    assert not temp_files(run) and checksums(small_data) == data_before
    assert "incomplete" in incomplete_reason(str(run))


def _metrics(value):
    return lambda run: (run / "metrics.json").write_text(json.dumps(value))


def _config(change):
    def apply(run):
        config = json.loads((run / "config.json").read_text())
        config.update(change)
        (run / "config.json").write_text(json.dumps(config))
    return apply


def _predictions(row):
    def apply(run):
        lines = (run / "predictions.csv").read_text().splitlines()
        lines[1] = row
        (run / "predictions.csv").write_text("\n".join(lines) + "\n")
    return apply


DAMAGE = {
    "metrics-list": _metrics([]),
    "metrics-empty": _metrics({}),
    "metrics-wrong-types": lambda run: (run / "metrics.json").write_text(json.dumps(
        {**json.loads((run / "metrics.json").read_text()), "confusion_matrix": "x"})),
    "config-unknown-strategy": _config({"strategy": "magic"}),
    "config-wrong-types": _config({"seed": "zero", "model": 3}),
    "predictions-bad-row": _predictions("a/0.png,a"),
    "predictions-not-a-number": _predictions("a/0.png,a,a,x,0.1,0.1"),
    "predictions-dotdot": _predictions("../../outside.png,a,a,0.4,0.3,0.3"),
    "predictions-absolute": _predictions("/etc/passwd,a,a,0.4,0.3,0.3"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_run_files_give_one_line_errors_everywhere(finished_run, tmp_path, damage):
    parent = tmp_path / "runs"
    run = parent / "run"
    shutil.copytree(finished_run, run)
    DAMAGE[damage](run)
    listed = list_runs(str(parent))
    if damage.startswith(("metrics", "config")):
        assert listed == []  # left out of the Results tab's list, not a crash
    else:  # the Results tab loads it: one RunError line instead of a traceback
        with pytest.raises(RunError) as err:
            load_run(listed[0])
        assert "\n" not in str(err.value) and "predictions.csv" in str(err.value)
    if not damage.startswith("predictions"):
        with pytest.raises(RunError) as err:
            write_report(str(run), str(tmp_path / "r.html"))
        assert "\n" not in str(err.value) and not (tmp_path / "r.html").exists()
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "export", "--run", str(run), "--format", "report",
                           "--out", str(tmp_path / "cli.html")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == (0 if damage.startswith("predictions") else 2) and "Traceback" not in proc.stderr
    if damage.startswith("predictions"):  # written without the errors section, and both the page and stderr say so
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "the most confident errors are left out" in warnings[0]
        assert "predictions.csv" in warnings[0] and json.loads(proc.stdout)["warnings"]
        page = (tmp_path / "cli.html").read_text()
        assert "Warnings" in page and "most confident errors" in page


def test_report_escapes_strings_from_the_run_folder(finished_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    _config({"model": "<script>alert(1)</script>", "data": "<img src=x onerror=alert(2)>"})(run)
    report = write_report(str(run), str(tmp_path / "r.html"))
    text = Path(report.path).read_text()
    assert report.warnings == [] and "Warnings" not in text
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "Not trained" in text and "rare" in text


def test_a_fifo_planted_as_the_run_lock_does_not_hang_a_reader(tmp_path):
    import threading

    run = tmp_path / "run"
    run.mkdir()
    (run / ".balancelab-run").write_text('{"state": "running"}')
    os.mkfifo(run / ".balancelab-run.lock")
    answer = []
    reader = threading.Thread(target=lambda: answer.append(incomplete_reason(str(run))), daemon=True)
    reader.start()
    reader.join(10)
    assert answer and "incomplete" in answer[0]  # read as interrupted, without waiting for a FIFO writer


def test_incomplete_and_damaged_runs_are_named_not_silently_missing(finished_run, tmp_path):
    parent = tmp_path / "runs"
    parent.mkdir()
    for name in ("done", "stopped", "broken"):
        shutil.copytree(finished_run, parent / name)
    (parent / "not-a-run").mkdir()
    (parent / "not-a-run" / "notes.txt").write_text("mine")
    from balancelab.engine.core.paths import mark_run_folder
    from balancelab.engine.train.run_folder import list_incomplete_runs

    mark_run_folder(str(parent / "stopped"), "incomplete")
    (parent / "broken" / "metrics.json").write_text("[")
    assert [r["name"] for r in list_runs(str(parent))] == ["done"]
    named = dict(list_incomplete_runs(str(parent)))
    assert set(named) == {str(parent / "stopped"), str(parent / "broken")}
    assert "incomplete" in named[str(parent / "stopped")] and f"`resume {parent / 'stopped'}`" in named[str(parent / "stopped")]
    assert "metrics.json" in named[str(parent / "broken")]


def test_metrics_and_predictions_that_disagree_are_refused_not_shown(finished_run, tmp_path):
    """The Results tab shows metrics.json and re-scores predictions.csv when τ moves: a table of
    300 images that becomes 10 at τ = 0.1, or a balanced accuracy of 2.5, must not be shown."""
    from balancelab.engine.results.loaded_run import load_run

    parent = tmp_path / "runs"
    run = parent / "run"
    shutil.copytree(finished_run, run)
    lines = (run / "predictions.csv").read_text().splitlines()
    (run / "predictions.csv").write_text("\n".join(lines[:2]) + "\n")
    listed = list_runs(str(parent))
    with pytest.raises(RunError, match="disagree on how many images"):
        load_run(listed[0])
    (run / "predictions.csv").write_text(lines[0] + "\n")
    with pytest.raises(RunError, match="holds no predictions"):
        load_run(listed[0])
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "balanced_accuracy": 2.5}))
    assert list_runs(str(parent)) == []
    (run / "metrics.json").write_text(json.dumps({**metrics, "n_evaluated": -5}))
    assert list_runs(str(parent)) == []


def test_a_run_that_ends_before_its_first_checkpoint_leaves_no_folder(small_data, tmp_path):
    """A refused or stopped run left its folder behind (marker, lock, settings): an "incomplete"
    run with nothing in it to continue, listed under every dataset. Its own folder now goes; a
    folder the user made, or one holding anything else, stays."""
    from balancelab.engine.core.events import StopToken
    from balancelab.engine.train.run_events import BatchProgress

    one_class = tmp_path / "one"
    for i in range(4):
        write_png(one_class / "only" / f"{i}.png", seed=i)
    reserved = new_run_dir(str(one_class), "x")  # what the GUI reserves before a run starts
    refused = list(train(cfg(one_class, reserved)))[-1]
    assert isinstance(refused, Failed) and "at least 2 classes" in refused.message and not reserved.exists()
    invalid = new_run_dir(str(small_data), "bad")  # refused before its folder was even opened
    assert isinstance(list(train(cfg(small_data, invalid, lr=-1.0)))[-1], Failed) and not invalid.exists()

    stop = StopToken()
    events = []
    for ev in train(cfg(small_data, tmp_path / "new", epochs=3), stop):  # stopped within the first epoch
        events.append(ev)
        if isinstance(ev, BatchProgress):
            stop.request()
    assert isinstance(events[-1], Finished) and not events[-1].result.metrics and not (tmp_path / "new").exists()

    mine = tmp_path / "mine"
    mine.mkdir()
    assert isinstance(list(train(cfg(one_class, mine)))[-1], Failed) and mine.is_dir()
    kept = new_run_dir(str(small_data), "kept")
    (kept / "notes.txt").write_text("mine")
    assert isinstance(list(train(cfg(one_class, kept)))[-1], Failed)
    assert (kept / "notes.txt").read_text() == "mine"


def test_files_the_scan_left_out_are_counted_and_listed_as_skipped(small_data, tmp_path):
    """A scan found a zero-byte and a corrupt image, yet the run said "skipped files: 0" and its
    skipped.csv was a header: the files it did not use were listed nowhere in the run."""
    import csv

    data = tmp_path / "data"
    shutil.copytree(small_data, data)
    (data / "a" / "zero.png").write_bytes(b"")
    (data / "b" / "junk.png").write_bytes(b"not a png at all")
    events = list(train(cfg(data, tmp_path / "run")))
    assert isinstance(events[-1], Finished) and events[-1].result.metrics["skipped_files"] == 2
    started = next(e for e in events if type(e).__name__ == "TrainStarted")
    assert started.skipped == 2
    with open(tmp_path / "run" / "skipped.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["path"] for r in rows) == ["a/zero.png", "b/junk.png"] and all(r["reason"] for r in rows)


@pytest.mark.parametrize("marker", [b"[]", b"{\"state\": 7}", b"\xff\xfe garbage", b"{\"state\": \"sideways\"}"])
def test_a_finished_run_whose_marker_broke_is_still_finished(finished_run, tmp_path, marker):
    """A damaged marker on a finished run (metrics.json is only written at the end) made every
    reader call it incomplete and advise deleting it, weights and results and all."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run, ignore=shutil.ignore_patterns("*.lock"))
    (run / RUN_MARKER).write_bytes(marker)
    assert incomplete_reason(str(run)) is None and [r["dir"] for r in list_runs(str(tmp_path))] == [str(run)]
    (run / "metrics.json").unlink()
    reason = incomplete_reason(str(run))
    assert "damaged marker" in reason and "never finished" in reason


def test_an_interrupted_balanced_bagging_run_is_not_advised_to_resume(tmp_path):
    """A stopped balanced-bagging run was listed with "continue it with `resume`", which then
    refused it: members cannot be continued."""
    from balancelab.engine.core.paths import mark_run_folder

    run = tmp_path / "bagging"
    (run / "members" / "member-1").mkdir(parents=True)
    mark_run_folder(run, "incomplete")
    reason = incomplete_reason(str(run))
    assert "incomplete ensemble" in reason and "members/" in reason and "resume" not in reason


def test_another_tools_folder_with_config_and_last_pt_is_not_taken_for_a_run(demo_root, tmp_path):
    """A folder of another ML project (its own config.json and last.pt) counted as a pre-marker run:
    --resume wrote BalanceLab's marker and lock into it and then advised deleting the folder."""
    from balancelab.engine.train.run_folder import is_run_folder

    folder = tmp_path / "their-project"
    folder.mkdir()
    (folder / "config.json").write_text('{"my_hparams": {"lr": 0.1}}')
    torch.save({"model": "their weights"}, folder / "last.pt")
    (folder / "notes.txt").write_text("notes")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert not is_run_folder(str(folder))
    cfg = TrainConfig(data=str(demo_root), out=str(folder), model="tiny-2conv", epochs=1, resume=True, device="cpu")
    last = list(train(cfg))[-1]
    assert isinstance(last, Failed) and "not a BalanceLab run" in last.message
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before  # no marker, no lock left


def test_a_first_checkpoint_that_cannot_be_written_does_not_claim_a_previous_one_is_kept(tmp_path, monkeypatch):
    from balancelab.engine.train.checkpoints import save_checkpoint

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.tempfile, "mkstemp", full)
    with pytest.raises(CheckpointError, match="no checkpoint of this run was written"):
        save_checkpoint({"epoch": 1}, str(tmp_path / "last.pt"))
