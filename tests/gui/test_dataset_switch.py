"""Opening another dataset leaves nothing of the last one on screen: the live training panel,
Predict's table, Curation's summaries and Review's labels all belong to the dataset now open, a
dataset that cannot train says so before Start, and switching is not reported as runs vanishing."""
from __future__ import annotations

import os

import pytest

pytest.importorskip("pytestqt")

from tests.gui.qt_helpers import open_and_wait  # noqa: E402
from tests.gui.test_gui import train_and_wait  # noqa: E402
from tests.hostile import write_png  # noqa: E402


def test_opening_another_dataset_leaves_nothing_of_the_last_one_on_screen(qtbot, window, demo_copy, tmp_path):
    from balancelab.engine.core.paths import runs_dir_for
    from balancelab.gui.views.curation_duplicates import DUPLICATES_INTRO
    from balancelab.gui.views.curation_label_issues import ISSUES_INTRO

    open_and_wait(qtbot, window, demo_copy)
    train_and_wait(qtbot, window, epochs=1)
    pv, cv, tv = window.predict_view, window.curation_view, window.train_view
    pv.predict([str(next((demo_copy / "test" / "4").glob("*.png")))])
    qtbot.waitUntil(lambda: pv.model.rowCount() == 1, timeout=30000)
    qtbot.waitUntil(lambda: not pv.thread.is_busy(), timeout=10000)
    cv.dup_summary.setText("3 group(s): 1 leak across splits")  # as finished searches leave them
    cv.issues_summary.setText("238 of 531 images flagged")
    assert "Finished" in tv.status.text()

    one_class = tmp_path / "one-class"
    for i in range(4):
        write_png(one_class / "only" / f"{i}.png", seed=i)
    open_and_wait(qtbot, window, one_class)
    qtbot.waitUntil(lambda: not window.session.loading_runs(), timeout=10000)
    assert pv.model.rowCount() == 0 and pv.run_box.currentData() is None
    assert cv.dup_summary.text() == DUPLICATES_INTRO and cv.issues_summary.text() == ISSUES_INTRO
    assert "Finished" not in tv.status.text() and tv.rate_label.text() == "" and tv.progress.value() == 0
    assert "cannot be trained" in tv.status.text() and "at least 2 classes" in tv.status.text()
    assert not tv.start_button.isEnabled() and "at least 2 classes" in tv.start_button.toolTip()
    assert "Cannot be trained" in window.dataset_view.summary.text()
    assert "no longer listed" not in window.log_view.toPlainText()  # nothing was deleted: another dataset opened
    tv.start()  # the one-click recipe calls it too: refused with the reason, and no run folder is made
    runs = runs_dir_for(str(one_class))
    assert not tv.is_training() and (not runs.exists() or not os.listdir(runs))
    assert "cannot train this dataset" in window.log_view.toPlainText()


def test_a_training_stopped_before_its_first_epoch_leaves_no_folder_and_says_so(qtbot, window, demo_copy):
    from balancelab.engine.core.paths import runs_dir_for
    from tests.gui.test_gui import start_long_training

    open_and_wait(qtbot, window, demo_copy)
    tv = window.train_view
    start_long_training(qtbot, tv)
    tv.stop()
    qtbot.waitUntil(lambda: not tv.is_training(), timeout=60000)
    qtbot.waitUntil(lambda: "nothing was kept" in tv.status.text(), timeout=5000)
    assert tv.rate_label.text() == "" and tv.progress.value() == 0
    assert os.listdir(runs_dir_for(str(demo_copy))) == []
    assert "nothing was kept" in window.log_view.toPlainText()


def test_copies_under_different_labels_are_not_excluded_by_sort_order(qtbot, window, demo_copy):
    """"Exclude all but the first" on a group whose copies carry different labels kept whichever
    path sorted first, so the label that survived was chosen by the alphabet."""
    from balancelab.engine.data.duplicates import DuplicateGroup

    open_and_wait(qtbot, window, demo_copy)
    cv = window.curation_view
    cv._show_groups([DuplicateGroup(["train/1/a.png", "train/7/a.png"], "exact", ["train"], ["1", "7"]),
                     DuplicateGroup(["test/3/b.png", "train/3/b.png"], "exact", ["test", "train"], ["3"])])
    cv.groups_table.selectRow(cv.groups_proxy.mapFromSource(cv.groups_model.index(0, 0)).row())
    assert not cv.keep_first_button.isEnabled() and "different labels" in cv.keep_first_button.toolTip()
    cv._exclude_all_but_first()  # even if called: nothing moves
    assert (demo_copy / "train").exists() and not (demo_copy / "_excluded").exists()
    cv.groups_table.selectRow(cv.groups_proxy.mapFromSource(cv.groups_model.index(1, 0)).row())
    assert cv.keep_first_button.isEnabled()  # a leak with one label: one click keeps one copy


def test_the_summary_names_an_untrained_class_and_the_imbalance_without_it(qtbot, window, tmp_path):
    for label, n in (("big", 6), ("small", 3), ("single", 1)):
        for i in range(n):
            write_png(tmp_path / "data" / label / f"{i}.png", seed=hash((label, i)) % 1000)
    open_and_wait(qtbot, window, tmp_path / "data")
    text = window.dataset_view.summary.text()
    assert "all 6.0:1" in text  # the data as it is, then what a model trains on
    assert "single: only 1 training image" in text and "among the trained classes: <b>2.0:1</b>" in text
    # the Train tab's class-mix preview: a class left out of training gets no share of an epoch
    assert window.train_view.form.trained_counts() == (["big", "small"], [6, 3])


def test_predict_uses_the_newest_run_unless_the_user_picked_one(qtbot, window, demo_copy):
    """It kept the first run it ever listed: three newer runs later, Predict still used the oldest."""
    open_and_wait(qtbot, window, demo_copy)
    first = train_and_wait(qtbot, window, epochs=1)
    pv = window.predict_view
    qtbot.waitUntil(lambda: pv.run_box.currentData() == first, timeout=10000)
    second = train_and_wait(qtbot, window, epochs=1)
    qtbot.waitUntil(lambda: not window.session.loading_runs() and pv.run_box.count() == 2, timeout=10000)
    assert pv.run_box.currentData() == second  # the newest, nobody chose
    pv.run_box.setCurrentIndex(pv.run_box.findData(first))
    pv.run_box.activated.emit(pv.run_box.currentIndex())  # as a user's pick
    window.session.refresh_runs()
    qtbot.waitUntil(lambda: not window.session.loading_runs(), timeout=10000)
    assert pv.run_box.currentData() == first  # the user's choice stays


def test_a_stopped_run_says_how_far_it_got_and_keeps_no_stale_rate(qtbot):
    """After Stop at epoch 2 of 30 the bar jumped to 100 % beside the last batch's rate and ETA."""
    from balancelab.engine.core.events import Finished, Progress
    from balancelab.engine.train.run_events import BatchProgress, RunResult
    from balancelab.gui.views.train_live import LiveTrainingPanel
    from balancelab.gui.widgets.table_models import epochs_trained

    panel = LiveTrainingPanel()
    qtbot.addWidget(panel)
    panel.epochs_total = 30
    panel.progress.setRange(0, 300)
    panel.show_event(BatchProgress(3, 5, 10, 0.5, 100.0, 3.0))  # epoch 3, batch 5 of 10: 25 of 300
    panel.show_event(Progress("final evaluation", 1, 1))  # the evaluation's own bar: 1 of 1
    panel.rate_label.setText("epoch 3/30, batch 5/10 — ETA 55 s")
    m = {"balanced_accuracy": 0.5, "macro_f1": 0.5, "evaluated_on": "test", "best_epoch": 2, "history": [{}, {}],
         "stopped": True}
    panel.show_event(Finished(RunResult("run", m, stopped=True, completed_epochs=2), stopped=True))
    assert panel.status.text().startswith("Stopped after epoch 2 of 30") and panel.rate_label.text() == ""
    assert panel.progress.value() == 25 and panel.progress.maximum() == 300
    assert epochs_trained(m, {"epochs": 30}) == ("2 of 30 (stopped)", 2)
    panel.show_event(Finished(RunResult("run", m, stopped=True, completed_epochs=30), stopped=True))
    assert panel.status.text().startswith("Finished") and panel.progress.value() == panel.progress.maximum()  # stopped after the last epoch
    assert epochs_trained({"ensemble": {}}, {"epochs": 5}) == ("—", -1)


def test_cleared_curves_do_not_keep_the_last_runs_scale(qtbot):
    from balancelab.gui.widgets.live_curves import LiveCurves

    curves = LiveCurves()
    qtbot.addWidget(curves)
    curves.show()
    curves.set_epochs(2)
    curves.set_history([{"epoch": e, "train_loss": 5.0 + e, "val_loss": 6.0, "train_accuracy": 0.5, "val_accuracy": 0.6,
                         "val_balanced_accuracy": 0.55} for e in (1, 2)])
    qtbot.waitUntil(lambda: curves.plots[0].viewRange()[1][1] > 6.5, timeout=5000)
    curves.reset_view()
    qtbot.wait(50)
    (x0, x1), (y0, y1) = curves.plots[0].viewRange()
    assert x1 < 2 and y0 >= -0.01 and y1 <= 1.01, curves.plots[0].viewRange()


def test_with_no_dataset_open_nothing_that_needs_one_is_enabled(qtbot, window):
    assert window.session.root is None
    tv = window.train_view
    assert not tv.start_button.isEnabled() and tv.start_button.toolTip() == "Open a dataset first."
    assert not window.review_view.undo_button.isEnabled()
    assert not window.results_view.ensemble.button.isEnabled()
    assert not window.rescan_action.isEnabled()


def test_weights_typed_for_a_torchvision_model_do_not_refuse_a_from_scratch_one(qtbot, window):
    """Typed 'imagenet' for resnet18, then chose mnist-classic: Start said '--pretrained applies to
    torchvision models' about a disabled field."""
    form = window.train_view.form
    form.model_box.setCurrentIndex(form.model_box.findData("resnet18"))
    form.pretrained.setText("imagenet")
    assert form.config("/data", "/out").pretrained == "imagenet"
    form.model_box.setCurrentIndex(form.model_box.findData("mnist-classic"))
    cfg = form.config("/data", "/out")
    assert cfg.pretrained is None and cfg.finetune == "all"
