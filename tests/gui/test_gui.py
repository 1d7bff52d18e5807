"""The real widgets, driven offscreen with pytest-qt."""
import hashlib
import json
import os
import sys

import numpy as np
import pytest

os.environ.setdefault("BALANCELAB_NO_DIALOGS", "1")

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QSortFilterProxyModel, Qt  # noqa: E402

from tests.gui.qt_helpers import open_and_wait  # noqa: E402


def test_qt_binding_keeps_none_alive(qapp):
    """PySide6 6.12.0 drops a reference to None whenever C++ calls a Python data() that returns None,
    which crashes Python 3.11 after a while. Guard the dependency pin."""

    class M(QAbstractTableModel):
        def rowCount(self, p=QModelIndex()):
            return 1

        def columnCount(self, p=QModelIndex()):
            return 1

        def data(self, index, role=Qt.ItemDataRole.DisplayRole):
            return None

    m = M()
    proxy = QSortFilterProxyModel()
    proxy.setSourceModel(m)
    before = sys.getrefcount(None)
    for _ in range(2000):
        proxy.data(proxy.index(0, 0), Qt.ItemDataRole.DisplayRole)
    assert sys.getrefcount(None) - before > -100




def train_and_wait(qtbot, w, epochs=1, **settings):
    tv = w.train_view
    tv.model_box.setCurrentIndex(tv.model_box.findData(settings.get("model", "tiny-2conv")))
    tv.epochs.setValue(epochs)
    tv.batch.setValue(settings.get("batch", 64))
    with qtbot.waitSignal(tv.run_finished, timeout=120000) as blocker:
        tv.start()
    qtbot.waitUntil(lambda: not tv.is_training(), timeout=30000)
    run_dir = blocker.args[0]
    rv = w.results_view  # the finished run is read on a worker thread, then shown
    qtbot.waitUntil(lambda: rv.run is not None and rv.run.dir == run_dir and not rv.loading(), timeout=10000)
    return run_dir


def start_long_training(qtbot, tv) -> list:
    """Start a 50-epoch training and return the list its BatchProgress events go to (one arrived)."""
    from balancelab.engine.train.run_events import BatchProgress

    tv.model_box.setCurrentIndex(tv.model_box.findData("cifar-classic"))
    tv.epochs.setValue(50)
    tv.batch.setValue(8)
    seen = []
    tv.start()
    tv.thread.event.connect(lambda ev: seen.append(ev) if isinstance(ev, BatchProgress) else None)
    qtbot.waitUntil(lambda: len(seen) > 0, timeout=60000)
    return seen


def test_main_window_opens_and_closes_cleanly(window):
    assert window.tabs.count() == 6
    assert window.isVisible()


def test_open_demo_shows_class_counts(qtbot, window, demo_root):
    open_and_wait(qtbot, window, demo_root)
    model = window.dataset_view.class_model
    counts = {model.rows[r][0]: model.rows[r][1] for r in range(model.rowCount())}
    assert counts["0"] == 144 + 30 and counts["9"] == 10 + 30
    window.dataset_view.split_box.setCurrentIndex(window.dataset_view.split_box.findData("train"))
    counts = {model.rows[r][0]: model.rows[r][1] for r in range(model.rowCount())}
    assert counts["0"] / counts["9"] == pytest.approx(14.4)
    # thumbnails for a class load lazily on the worker pool
    view = window.dataset_view
    view.class_table.selectRow(0)
    assert view.thumb_model.rowCount() == counts[view.class_model.class_name(view.class_proxy.mapToSource(view.class_proxy.index(0, 0)).row())]
    first = view.thumb_model.items[0]["path"]
    view.thumb_model.data(view.thumb_model.index(0), Qt.ItemDataRole.DecorationRole)
    qtbot.waitUntil(lambda: first in view.loader._cache, timeout=10000)


def test_problem_files_are_listed(qtbot, window, tmp_path):
    from tests.hostile import make_problem_tree

    planted = make_problem_tree(tmp_path / "messy")
    open_and_wait(qtbot, window, tmp_path / "messy")
    listed = {p.path for p in window.dataset_view.problem_model.rows}
    assert set(planted) <= listed
    assert "Problems (" in window.dataset_view.right_tabs.tabText(1)


def test_train_review_relabel_undo(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    run_dir = train_and_wait(qtbot, window, epochs=1)
    assert os.path.isfile(os.path.join(run_dir, "metrics.json"))
    history = json.load(open(os.path.join(run_dir, "metrics.json")))["history"]
    xs, ys = window.train_view.curves.series("val_balanced_accuracy")  # the live curve shows the epoch
    assert xs == [1] and ys == pytest.approx([history[0]["val_balanced_accuracy"]])
    bx, by = window.train_view.curves.batch_line.getData()  # and, within the epoch, the batch loss
    assert bx is not None and len(bx) >= 1 and 0 < bx[0] <= 1 and all(b > 0 for b in by)
    rv = window.results_view
    qtbot.waitUntil(lambda: rv.run is not None, timeout=5000)
    assert rv.cm_model.total() == 300  # the demo's test split
    # click the cell with the most images (an off-diagonal one if there is any)
    cm = np.array(rv.cm_model.counts)
    off = cm - np.diag(np.diag(cm))
    r, c = np.unravel_index((off if off.any() else cm).argmax(), cm.shape)
    window.tabs.setCurrentWidget(rv)  # shown first: the matrix stretches to its pane, so cells move
    qtbot.wait(50)
    rect = rv.cm_table.visualRect(rv.cm_model.index(int(r), int(c)))
    qtbot.mouseClick(rv.cm_table.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    gallery = window.review_view.model
    paths, classes, y_true, y_pred = rv.run.paths, rv.run.classes, rv.run.y_true, probs_argmax(rv.run)
    expected = {os.path.join(str(demo_copy), p) for p, t, q in zip(paths, y_true, y_pred) if t == r and q == c}
    assert {it["path"] for it in gallery.items} == expected
    assert window.tabs.currentWidget() is window.review_view
    # relabel the first image, then undo: the file is back, byte-identical
    review = window.review_view
    review.grid.setCurrentIndex(gallery.index(0))
    item = review._current_item()
    original = item["path"]
    digest = hashlib.sha256(open(original, "rb").read()).hexdigest()
    target = next(i for i, name in enumerate(classes) if i != item["true"])
    review.relabel_box.setCurrentIndex(target)
    shown = len(gallery.items)
    qtbot.mouseClick(review.relabel_button, Qt.MouseButton.LeftButton)
    assert not os.path.exists(original)
    moved = review.journal.actions[-1].dst
    assert moved.split("/")[1] == classes[target]
    assert hashlib.sha256(open(os.path.join(str(demo_copy), moved), "rb").read()).hexdigest() == digest
    # the view follows the move: the image left the cell, the header counts it, nothing is selected
    assert original not in {it["path"] for it in gallery.items} and len(gallery.items) == shown - 1
    assert review.title.text().startswith(f"{shown - 1} test image(s)") and "1 moved since" in review.title.text()
    assert review._current_item() is None and not review.relabel_button.isEnabled()
    assert not review.exclude_button.isEnabled()
    qtbot.mouseClick(review.undo_button, Qt.MouseButton.LeftButton)
    assert hashlib.sha256(open(original, "rb").read()).hexdigest() == digest
    assert not os.path.exists(os.path.join(str(demo_copy), moved))
    assert original in {it["path"] for it in gallery.items} and len(gallery.items) == shown  # back after undo
    # Grad-CAM of the selected image arrives from the worker
    review.grid.setCurrentIndex(gallery.index(0))
    qtbot.waitUntil(lambda: review.pred_cam.pixmap() is not None and not review.pred_cam.pixmap().isNull(), timeout=30000)
    qtbot.waitUntil(lambda: not (review.cam_thread and review.cam_thread.is_busy()), timeout=30000)


def probs_argmax(run):
    return run.probs.argmax(axis=1)


def test_posthoc_tau_rescored_instantly(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    train_and_wait(qtbot, window, epochs=1)
    rv = window.results_view
    qtbot.waitUntil(lambda: rv.run is not None, timeout=5000)
    before = [row[:] for row in rv.cm_model.counts.tolist()]
    rv.tau_slider.setValue(20)
    assert rv.cm_model.total() == 300
    assert "τ=2.0" in rv.headline.text()
    rv.tau_slider.setValue(0)
    assert rv.cm_model.counts.tolist() == before
    # exports run on a worker and report their check
    with qtbot.waitSignal(rv.export_done, timeout=60000) as blocker:
        rv.export_run("torchscript", str(demo_copy.parent / "model.pt"))
    assert blocker.args[0]["same_top1"]
    qtbot.waitUntil(lambda: not rv.export_thread.is_busy(), timeout=10000)
    with qtbot.waitSignal(rv.export_done, timeout=60000) as blocker:
        rv.export_run("report", str(demo_copy.parent / "report.html"))
    assert os.path.getsize(blocker.args[0]["path"]) > 1000
    qtbot.waitUntil(lambda: not rv.export_thread.is_busy(), timeout=10000)
    # a damaged predictions.csv: the report is still written, and the status line says what it lacks
    pred = os.path.join(rv.run.dir, "predictions.csv")
    with open(pred, encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    with open(pred, "w", encoding="utf-8") as fh:
        fh.write("\n".join([lines[0], "a/0.png,a", *lines[2:]]) + "\n")
    with qtbot.waitSignal(rv.message, timeout=60000, check_params_cb=lambda level, text: level == "warning") as blocker:
        rv.export_run("report", str(demo_copy.parent / "report2.html"))
    assert "the most confident errors are left out" in blocker.args[1] and "predictions.csv" in blocker.args[1]
    qtbot.waitUntil(lambda: not rv.export_thread.is_busy(), timeout=10000)


def test_runs_list_select_compare_and_damaged_run(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    first = train_and_wait(qtbot, window, epochs=1)
    window.train_view.seed.setValue(1)
    second = train_and_wait(qtbot, window, epochs=1)
    rv = window.results_view
    assert [r["dir"] for r in rv.runs] == [second, first]  # newest first
    assert window.predict_view.run_box.count() == 2  # the Predict tab follows the runs list
    # select the older run in the table: it is read on a worker thread, then shown
    row = rv.runs_proxy.mapFromSource(rv.runs_model.index(1, 0)).row()
    with qtbot.waitSignal(rv.run_shown, timeout=10000):
        rv.runs_table.selectRow(row)
    assert rv.run.dir == first and first.split(os.sep)[-1] in rv.headline.text()
    # compare with the newer run: one row per headline metric and per class, B - A as shown
    rv.compare_box.setCurrentIndex(rv.compare_box.findData(second))
    qtbot.waitUntil(lambda: rv.compare_model.rowCount() > 10 and not rv.loading(), timeout=10000)
    metrics_b = json.load(open(os.path.join(second, "metrics.json")))
    by_name = {r[0]: r for r in rv.compare_model.rows}
    assert by_name["balanced_accuracy"][2] == pytest.approx(metrics_b["balanced_accuracy"])
    # moving tau re-scores both runs from memory, without reading the compared run again
    from balancelab.engine.results.loaded_run import load_run

    rv.tau_slider.setValue(10)
    assert not rv.loading()
    by_name = {r[0]: r for r in rv.compare_model.rows}
    expected = load_run(next(r for r in rv.runs if r["dir"] == second), 1.0).current["balanced_accuracy"]
    assert by_name["balanced_accuracy"][2] == pytest.approx(expected)
    rv.tau_slider.setValue(0)
    # a run whose predictions were deleted gives a message, and the view keeps working
    os.remove(os.path.join(second, "predictions.csv"))
    row = rv.runs_proxy.mapFromSource(rv.runs_model.index(0, 0)).row()
    rv.runs_table.selectRow(row)
    qtbot.waitUntil(lambda: "no predictions.csv" in window.log_view.toPlainText() and not rv.loading(), timeout=10000)
    assert rv.run is None and "cannot be shown" in rv.headline.text()  # not the other run under this run's row
    # a run interrupted or failed is not listed, but the tab says so instead of letting it vanish
    assert rv.incomplete_note.isHidden()
    from balancelab.engine.core.paths import mark_run_folder

    mark_run_folder(second, "incomplete")
    window.session.refresh_runs()
    qtbot.waitUntil(lambda: not rv.incomplete_note.isHidden(), timeout=10000)
    assert "1 incomplete run" in rv.incomplete_note.text() and "interrupted or failed" in rv.incomplete_note.toolTip()
    assert [r["dir"] for r in rv.runs] == [first]


def test_stop_training_mid_epoch(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    tv = window.train_view
    seen = start_long_training(qtbot, tv)

    def position(ev) -> int:  # batches done since the start
        return (ev.epoch - 1) * ev.batches + ev.batch

    at_stop = position(seen[-1])
    tv.stop()
    qtbot.waitUntil(lambda: not tv.is_training(), timeout=60000)
    # the stop takes effect after the batch in flight; the GUI sees batches up to 0.1 s late (the
    # throttle), a few batches of 8 images: far from the 50 epochs a stop that failed would run
    assert position(seen[-1]) <= at_stop + 12, (at_stop, position(seen[-1]))
    qtbot.waitUntil(lambda: "stopped" in tv.status.text().lower(), timeout=5000)


def test_predict_dropped_images(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    train_and_wait(qtbot, window, epochs=1)
    files = [str(next((demo_copy / "test" / "4").glob("*.png")))]
    bad = demo_copy.parent / "broken.png"
    bad.write_bytes(b"nope")
    window.predict_view.predict(files + [str(bad)])
    qtbot.waitUntil(lambda: window.predict_view.model.rowCount() == 2, timeout=30000)
    rows = window.predict_view.model.rows
    assert len(rows[0]["top"]) == 3 and "error" in rows[1]
    table = window.predict_view.table  # the reason a file was not read spans Top 1-3; a prediction does not
    assert table.columnSpan(1, 2) == 3 and table.columnSpan(0, 2) == 1
    assert {r["run"] for r in rows} == {os.path.basename(window.predict_view.run_box.currentData())}
    qtbot.waitUntil(lambda: not window.predict_view.thread.is_busy(), timeout=10000)


def test_bad_folder_gives_a_message_not_a_crash(qtbot, window, tmp_path):
    messages = []
    window.log_view.textChanged.connect(lambda: messages.append(window.log_view.toPlainText()))
    window.open_dataset(str(tmp_path / "does-not-exist"))
    qtbot.waitUntil(lambda: not window.scan_thread.is_busy(), timeout=10000)
    qtbot.waitUntil(lambda: "does not exist" in window.log_view.toPlainText(), timeout=5000)
    assert window.dataset_view.result is None


def test_closing_the_window_during_training_stops_cleanly(qtbot, qsettings_tmp, demo_copy):
    from balancelab.gui.main_window import MainWindow
    from balancelab.gui.worker import running_threads

    w = MainWindow(open_demo_if_empty=False)
    qtbot.addWidget(w)
    w.show()
    open_and_wait(qtbot, w, demo_copy)
    tv = w.train_view
    start_long_training(qtbot, tv)
    # a second start and opening another dataset are refused while training
    thread = tv.thread
    tv.start()
    assert tv.thread is thread
    w.open_dataset(str(demo_copy))
    assert "Stop the running training" in w.log_view.toPlainText()
    run_dir = tv.config().out  # same parent folder as the running run
    w.close()
    assert not running_threads()
    parent = os.path.dirname(run_dir)
    leftovers = [os.path.join(d, f) for d, _, files in os.walk(parent) for f in files if f.startswith(".tmp-")]
    assert leftovers == []


def test_curation_duplicates_compare_and_label_issues(qtbot, window, tmp_path, demo_copy, monkeypatch):
    from tests.hostile import make_problem_tree

    make_problem_tree(tmp_path / "messy")
    open_and_wait(qtbot, window, tmp_path / "messy")
    cv = window.curation_view
    with qtbot.waitSignal(cv.work_done, timeout=60000):
        cv.find_duplicates()
    groups = cv.groups_model.rows
    assert len(groups) == 1 and groups[0].leaks, window.log_view.toPlainText()
    cv.groups_table.selectRow(0)
    keep, moved = groups[0].paths[0], groups[0].paths[1]
    cv._exclude_all_but_first()
    assert (tmp_path / "messy" / "_excluded" / moved).exists() and (tmp_path / "messy" / keep).exists()
    assert window.review_view.journal.actions[-1].kind == "exclude"
    window.review_view._undo()
    assert (tmp_path / "messy" / moved).exists()

    open_and_wait(qtbot, window, demo_copy)
    for i in range(cv.strategy_list.count()):
        item = cv.strategy_list.item(i)
        item.setCheckState(Qt.CheckState.Checked if item.text() in ("none", "balanced-softmax") else Qt.CheckState.Unchecked)
    cv.seeds.setValue(1)
    cv.cmp_epochs.setValue(1)
    cv.cmp_model.setCurrentIndex(cv.cmp_model.findData("tiny-2conv"))
    cv.cmp_deskew.setChecked(True)
    from balancelab.gui.views import curation_compare

    rows = []
    real_compare = curation_compare.compare

    def compare_and_keep_rows(*args, **kwargs):
        from balancelab.engine.core.events import Finished

        for event in real_compare(*args, **kwargs):
            if isinstance(event, Finished):
                rows.extend(event.result["rows"])
            yield event

    monkeypatch.setattr(curation_compare, "compare", compare_and_keep_rows)
    with qtbot.waitSignal(cv.work_done, timeout=120000):
        cv.run_compare()
    assert [s["strategy"] for s in cv.summary_model.rows] == ["none", "balanced-softmax"]
    assert rows and all(json.loads(open(os.path.join(r["run_dir"], "config.json")).read())["deskew"] is True
                        for r in rows)  # the Deskew box reached every run of the comparison
    cv.folds.setValue(2)
    cv.issue_epochs.setValue(1)
    with qtbot.waitSignal(cv.work_done, timeout=120000):
        cv.find_label_issues()
    n = cv.issues_model.rowCount()
    assert n == 528  # every training image of the demo (train split, val carved from it) is ranked
    cv.issues_table.selectRow(0)
    cv._keep_issue()
    assert cv.issues_model.rowCount() == n - 1
    qtbot.waitUntil(lambda: not cv.busy(), timeout=10000)


def test_worker_throttles_progress_but_delivers_phase_boundaries(qtbot):
    from balancelab.engine.core.events import Finished, Progress
    from balancelab.gui.worker import GeneratorThread

    def job(stop):
        yield Progress("decoding", 0, 1000, "start")
        for i in range(1, 1000):
            yield Progress("decoding", i, 1000)
        yield Progress("decoding", 1000, 1000)
        yield Progress("final evaluation", 0, 1)
        yield Finished("done")

    got = []
    thread = GeneratorThread(job, throttle=(Progress,), interval=10.0)
    thread.event.connect(got.append)
    with qtbot.waitSignal(thread.finished, timeout=10000):
        thread.start()
    qtbot.waitUntil(lambda: got and isinstance(got[-1], Finished), timeout=5000)
    # with a 10 s interval every intermediate step is dropped; starts and ends of phases are not
    assert [(e.phase, e.done) for e in got[:-1]] == [("decoding", 0), ("decoding", 1000), ("final evaluation", 0)]


def test_runs_list_is_newest_first_by_time_not_by_folder_name(qtbot, window, demo_copy):
    """Two run folders whose name order and time order disagree: the newer run (by list_runs' time)
    is on top of the Results tab's runs table and is the one shown."""
    import shutil

    from balancelab.engine.core.paths import runs_dir_for
    from balancelab.engine.train.config import TrainConfig
    from balancelab.engine.train.run import train
    from balancelab.engine.train.run_folder import METRICS, run_file

    parent = runs_dir_for(str(demo_copy))
    old, new = str(parent / "z-late-name-old-run"), str(parent / "a-early-name-new-run")
    events = list(train(TrainConfig(data=str(demo_copy), out=old, model="tiny-2conv", epochs=1,
                                    image_size=16, device="cpu")))
    assert events[-1].result.metrics
    shutil.copytree(old, new)
    os.utime(run_file(old, METRICS), (1_600_000_000, 1_600_000_000))
    os.utime(run_file(new, METRICS), (1_700_000_000, 1_700_000_000))
    open_and_wait(qtbot, window, demo_copy)
    rv = window.results_view
    assert [r["dir"] for r in rv.runs] == [new, old]
    top = rv.runs_proxy.index(0, 0).data()
    assert top == os.path.basename(new)
    qtbot.waitUntil(lambda: rv.run is not None and not rv.loading(), timeout=10000)
    assert rv.run.dir == new
    assert rv.runs_table.selectionModel().selectedRows()[0].row() == 0  # the shown run is the selected top row
    assert [window.predict_view.run_box.itemData(i) for i in range(2)] == [new, old]  # one order in both tabs


def test_demo_built_after_the_user_opened_a_dataset_does_not_replace_it(qtbot, window, demo_copy):
    """First launch: the demo is built on a worker; a dataset the user opens meanwhile stays open."""
    window.open_demo()  # its Finished event is queued to this thread: it arrives after the open below
    window.open_dataset(str(demo_copy))
    qtbot.waitUntil(lambda: not window.demo_thread.is_busy(), timeout=60000)
    qtbot.waitUntil(lambda: "demo dataset is ready" in window.log_view.toPlainText(), timeout=10000)
    qtbot.waitUntil(lambda: not window.scan_thread.is_busy(), timeout=30000)
    assert window.session.root == str(demo_copy)
    assert window.dataset_view.result is not None and window.dataset_view.result.root == str(demo_copy)
    # with nothing opened meanwhile the demo opens as before
    window.open_demo()
    qtbot.waitUntil(lambda: window.session.root not in (None, str(demo_copy)), timeout=60000)
    qtbot.waitUntil(lambda: not window.scan_thread.is_busy(), timeout=30000)
