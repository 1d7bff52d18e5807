"""Render the main window's tabs offscreen to PNGs after a short real training on the demo.

    QT_QPA_PLATFORM=offscreen python bench/gui_screenshots.py --out /tmp/shots [--epochs 8] [--sizes 1280x800,1920x1080]
        [--until review]

Every state is saved once per window size, as NAME-WxH.png.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("BALANCELAB_NO_DIALOGS", "1")

from PySide6.QtCore import QEventLoop, QSettings, Qt


def wait_until(app, predicate, timeout=600.0) -> None:
    import time

    end = time.monotonic() + timeout
    while not predicate():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if time.monotonic() > end:
            raise TimeoutError("condition not reached")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="/tmp/balancelab-shots")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--sizes", default="1280x800,1920x1080", help="window sizes, WxH, comma-separated")
    ap.add_argument("--until", choices=["review", "all"], default="all",
                    help="stop after the Review shots (skips Predict, Compare and label issues)")
    args = ap.parse_args()
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes.split(",")]
    os.makedirs(args.out, exist_ok=True)
    home = tempfile.mkdtemp(prefix="bl-shots-")
    os.environ.setdefault("BALANCELAB_HOME", home)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, home)
    from balancelab.gui.app import create_application

    app = create_application(sys.argv)  # as run_app does
    from balancelab.gui.main_window import MainWindow

    w = MainWindow()
    w.resize(*sizes[0])
    w.show()

    def shot(name: str) -> None:
        for width, height in sizes:
            w.resize(width, height)
            for _ in range(10):
                app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 20)
            w.grab().save(os.path.join(args.out, f"{name}-{width}x{height}.png"))
        w.resize(*sizes[0])

    wait_until(app, lambda: w.dataset_view.result is not None)
    w.dataset_view.class_table.selectRow(9)
    wait_until(app, lambda: True, 1)
    for _ in range(40):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    shot("1-dataset")
    w.dataset_view.right_tabs.setCurrentIndex(1)
    shot("1b-problems")
    w.tabs.setCurrentWidget(w.train_view)
    tv = w.train_view
    tv.epochs.setValue(args.epochs)
    tv.strategy_form.set_strategy("balanced-softmax")
    tv.model_box.setCurrentIndex(tv.model_box.findData("cifar-classic"))
    shot("2-train-form")
    tv.start()
    wait_until(app, lambda: len(tv.history) >= 2)
    shot("3-training")
    wait_until(app, lambda: not tv.is_training())
    for _ in range(20):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    shot("3b-trained")
    w.tabs.setCurrentWidget(w.results_view)
    shot("4-results")
    rv = w.results_view
    rv.right_tabs.setCurrentIndex(1)
    shot("4b-recall")
    rv.tau_slider.setValue(10)
    rv.right_tabs.setCurrentIndex(0)
    shot("4c-tau")
    rv.tau_slider.setValue(0)
    # review the largest off-diagonal cell
    import numpy as np

    cm = np.array(rv.cm_model.counts)
    off = cm - np.diag(np.diag(cm))
    r, c = np.unravel_index(off.argmax(), off.shape)
    rv._cell_clicked(rv.cm_model.index(int(r), int(c)))
    gv = w.review_view
    if gv.model.rowCount():
        gv.grid.setCurrentIndex(gv.model.index(0))
        wait_until(app, lambda: gv.pred_cam.pixmap() is not None and not gv.pred_cam.pixmap().isNull(), 60)
    for _ in range(40):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    shot("5-review")
    gv.detail_tabs.setCurrentWidget(gv.maps_panel)  # computed lazily, now that its panel is shown
    if gv.model.rowCount():
        wait_until(app, lambda: gv.maps_panel.maps is not None, 60)
    for _ in range(20):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    shot("5b-review-maps")
    gv.detail_tabs.setCurrentIndex(0)
    if args.until == "review":
        w.close()
        print("saved to", args.out)
        return
    w.tabs.setCurrentWidget(w.predict_view)
    demo = w.root
    files = [os.path.join(demo, "test", d, sorted(os.listdir(os.path.join(demo, "test", d)))[0]) for d in ("3", "8")]
    w.predict_view.predict(files)
    wait_until(app, lambda: w.predict_view.model.rowCount() > 0, 60)
    shot("6-predict")
    cv = w.curation_view
    w.tabs.setCurrentWidget(cv)
    cv.tabs.setCurrentIndex(2)
    for i in range(cv.strategy_list.count()):
        item = cv.strategy_list.item(i)
        item.setCheckState(Qt.CheckState.Checked if item.text() in ("none", "balanced-sampler", "balanced-softmax", "drw")
                           else Qt.CheckState.Unchecked)
    cv.seeds.setValue(2)
    cv.cmp_epochs.setValue(args.epochs)
    done = []
    cv.work_done.connect(lambda: done.append(1))
    cv.run_compare()
    wait_until(app, lambda: bool(done))
    shot("7-compare")
    done.clear()
    cv.tabs.setCurrentIndex(1)
    cv.folds.setValue(3)
    cv.issue_epochs.setValue(args.epochs)
    cv.find_label_issues()
    wait_until(app, lambda: bool(done))
    cv.issues_table.selectRow(0)
    for _ in range(20):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    shot("8-label-issues")
    done.clear()  # duplicates graded with the trained run's embeddings, then outliers & coverage
    cv.tabs.setCurrentIndex(0)
    cv.dup_run.setCurrentIndex(max(0, cv.dup_run.count() - 1))
    cv.find_duplicates()
    wait_until(app, lambda: bool(done))
    if cv.groups_model.rowCount():
        cv.groups_table.selectRow(0)
    for _ in range(20):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    shot("9-duplicates")
    done.clear()
    cv.tabs.setCurrentIndex(3)
    cv.find_outliers()
    wait_until(app, lambda: bool(done))
    cv.outliers_table.selectRow(0)
    for _ in range(20):
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    shot("10-outliers")
    w.close()
    print("saved to", args.out)


if __name__ == "__main__":
    main()
