"""Cut-off table text stays readable: full-text tooltips from the shared table model, columns sized
so the numbers stay in view."""
import os

os.environ.setdefault("BALANCELAB_NO_DIALOGS", "1")

from PySide6.QtCore import Qt  # noqa: E402

TIP = Qt.ItemDataRole.ToolTipRole


def test_every_cell_of_a_base_table_model_has_its_full_text_as_tooltip(qapp):
    from balancelab.engine.data.layout import Problem
    from balancelab.gui.views.predict import PredictionsModel
    from balancelab.gui.widgets.table_models import ProblemsModel

    problems = ProblemsModel()
    problems.set_problems([Problem("train/cat/bomb.png", "decompression-bomb", "decompression bomb: Image size (1 pixels) exceeds limit")])
    for col in range(3):
        tip = problems.index(0, col).data(TIP)
        assert "train/cat/bomb.png" in tip and "decompression-bomb" in tip and "exceeds limit" in tip
    predictions = PredictionsModel()
    error = "not an image (contents are not a format Pillow reads): /tmp/x/a_long_name.png"
    predictions.set_rows([{"path": "/tmp/x/a_long_name.png", "error": error, "top": []},
                          {"path": "/tmp/y.png", "top": [{"class": "3", "probability": 0.9}]}])
    assert predictions.index(0, 0).data(TIP) == "/tmp/x/a_long_name.png"
    assert predictions.index(0, 2).data(TIP) == error  # the text the view cut is readable in full
    assert predictions.index(0, 3).data(TIP) is None  # an empty cell has no tooltip
    assert predictions.index(1, 2).data(TIP) == "3  0.900"
    assert predictions.headerData(0, Qt.Orientation.Horizontal, TIP) == "Image"


def test_label_issues_numeric_columns_stay_visible_at_1280(qtbot, window):
    cv = window.curation_view
    window.resize(1280, 800)
    window.tabs.setCurrentWidget(cv)
    cv.tabs.setCurrentIndex(1)  # Label issues
    rows = [{"rank": i + 1, "path": f"train/some_long_class_name/a_rather_long_file_name_{i:05d}.png", "given": "9",
             "suggested": "3", "quality": 0.005 + i / 1000, "flagged": True} for i in range(40)]
    cv.issues_model.set_rows(rows)
    qtbot.waitUntil(lambda: cv.issues_table.isVisible())
    table = cv.issues_table
    header = table.horizontalHeader()
    qtbot.waitUntil(lambda: header.length() <= table.viewport().width())
    assert not table.horizontalScrollBar().isVisible()
    for col in (4, 5):  # Quality, Flagged
        assert header.sectionViewportPosition(col) + header.sectionSize(col) <= table.viewport().width()
    assert cv.issues_proxy.index(0, 1).data(TIP) == rows[0]["path"]  # the elided path in full


def test_confusion_matrix_of_ten_classes_fits_at_1280_with_a_two_line_headline(qtbot, qapp, window):
    from balancelab.gui.app import load_stylesheet

    before = qapp.styleSheet()
    qapp.setStyleSheet(load_stylesheet())  # the app's look: the headline's font and padding
    try:
        _check_matrix_fits(qtbot, window)
    finally:
        qapp.setStyleSheet(before)


def _check_matrix_fits(qtbot, window):
    import numpy as np

    rv = window.results_view
    window.resize(1280, 800)
    window.tabs.setCurrentWidget(rv)
    rv.headline.setText("<b>20240101-000000-mnist-classic-oversample+minority-augment</b> — mnist-classic / "
                        "oversample+minority-augment, evaluated on <b>test</b> (300 images): accuracy <b>0.6533</b>, "
                        "balanced accuracy <b>0.6533</b>, macro-F1 <b>0.5697</b>, G-mean <b>0.0000</b>")
    rv.cm_model.set_matrix([str(i) for i in range(10)], np.eye(10, dtype=np.int64) * 30)
    qtbot.waitUntil(lambda: rv.cm_table.isVisible())
    qtbot.wait(300)
    assert rv.headline.height() > 1.5 * rv.headline.fontMetrics().height()  # the headline wraps
    header = rv.cm_table.verticalHeader()
    assert header.length() <= rv.cm_table.viewport().height()  # every row in view, the last included
    assert not rv.cm_table.verticalScrollBar().isVisible()


def test_empty_tables_say_why_and_what_fills_them(qtbot, window, demo_copy):
    from tests.gui.qt_helpers import open_and_wait

    dv, rv = window.dataset_view, window.results_view
    assert dv.problem_table._empty == "" and rv.compare_table._empty.startswith("Choose a run")
    open_and_wait(qtbot, window, demo_copy)
    assert dv.problem_model.rowCount() == 0 and dv.result.deep_checked
    assert dv.problem_table._empty.startswith("No problems found")
    window.resize(1280, 800)
    window.tabs.setCurrentWidget(dv)
    dv.right_tabs.setCurrentIndex(1)
    qtbot.wait(50)
    image = dv.problem_table.viewport().grab().toImage()  # the sentence is painted, not only stored
    colours = {image.pixelColor(x, y).name() for x in range(0, image.width(), 3) for y in range(0, min(40, image.height()), 2)}
    assert len(colours) > 2


def test_curation_progress_says_the_time_left_once_a_run_has_ended(window):
    from balancelab.engine.core.eta import RunsEta
    from balancelab.engine.core.events import Finished, RunStep
    from balancelab.engine.train.run_events import BatchProgress

    cv = window.curation_view
    now = [0.0]
    cv._eta = RunsEta(clock=lambda: now[0])
    cv._on_finished = lambda result: None
    cv._on_event(RunStep("none seed 0", 0, 3, BatchProgress(1, 2, 10, 0.5, 100.0, 3.0)))
    assert cv.progress.format().endswith("(run 1/3)")  # nothing measured yet: no guess
    now[0] = 90.0
    cv._on_event(RunStep("none seed 0", 0, 3, Finished(None)))
    cv._on_event(RunStep("none seed 1", 1, 3, BatchProgress(1, 2, 10, 0.5, 100.0, 3.0)))
    assert cv.progress.format().endswith("(run 2/3, about 03:00 left)")


def test_a_cleared_comparison_no_longer_names_the_last_runs(qapp):
    from balancelab.gui.widgets.table_models import ComparisonModel

    model = ComparisonModel()
    model.compare({"accuracy": 0.9, "per_class": []}, {"accuracy": 0.8, "per_class": []})
    model.headers = ["Metric", "A: old-run", "B: other-run", "B - A"]
    model.clear()
    assert model.rowCount() == 0
    assert [model.headerData(c, Qt.Orientation.Horizontal, Qt.ItemDataRole.DisplayRole) for c in range(4)] == \
        ["Metric", "Run A", "Run B", "B - A"]


def test_live_curves_say_what_fills_them_until_the_first_batch(qapp):
    from balancelab.gui.widgets.live_curves import LiveCurves

    curves = LiveCurves()
    title = curves.plots[0].titleLabel
    assert title.isVisible() and title.text.startswith("Start training")
    curves.add_batch(0.05, 1.2)
    assert not title.isVisible()
    curves.clear_batches()  # a new run starts: empty again until its first batch
    assert title.isVisible()
    curves.set_history([{"epoch": 1, "train_loss": 0.5, "val_loss": 0.6, "train_accuracy": 0.8,
                         "val_accuracy": 0.7, "val_balanced_accuracy": 0.7}])  # a finished run shown
    assert not title.isVisible()
