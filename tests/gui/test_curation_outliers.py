"""Curation tab, outliers & coverage and graded duplicates: the run pickers follow the session's
runs, the analysis runs on the worker, a click shows the image, actions go through the journal,
and a duplicate group's grade is explained in its tooltip and sorts most certain first."""
from __future__ import annotations

import os

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt

from balancelab.engine.data.duplicates import GRADES, DuplicateGroup
from tests.gui.qt_helpers import open_and_wait


def test_groups_show_their_grade_with_the_evidence_and_sort_by_certainty(qtbot):
    from balancelab.gui.views.curation_duplicates import GroupsModel
    from balancelab.gui.widgets.table_models import SORT_ROLE

    model = GroupsModel()
    look = DuplicateGroup(["a/1.png", "a/2.png"], "near", ["train"], ["a"], 0, 0.006, hash_confirmed=False)
    near = DuplicateGroup(["a/3.png", "b/3.png"], "near", ["train"], ["a", "b"], 12)
    exact = DuplicateGroup(["a/4.png", "a/5.png"], "exact", ["train"], ["a"])
    model.set_rows([look, near, exact])
    order = sorted(range(3), key=lambda r: model.index(r, 0).data(SORT_ROLE))  # what the sort proxy does
    assert [model.index(r, 0).data() for r in order] == ["exact", "near", "look-alike"]
    tip = model.index(0, 0).data(Qt.ItemDataRole.ToolTipRole)
    assert tip.startswith("look-alike") and GRADES["look-alike"] in tip
    assert model.index(0, 2).data() == "0.0060 cos" and model.index(1, 2).data() == "12 bits"


def test_outliers_and_coverage_from_a_run_with_journaled_actions(qtbot, window, demo_copy):
    from balancelab.engine.cli.main import main

    yy, xx = np.mgrid[0:64, 0:64]
    cat = np.stack([(xx * 4) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], axis=-1).astype(np.uint8)
    cat[16:48, 16:48] = (200, 140, 60)
    open_and_wait(qtbot, window, demo_copy)
    cv, session = window.curation_view, window.session
    assert not cv.analyse_button.isEnabled()  # no run yet: nothing to analyse, and the tooltip says why
    run = os.path.join(session.runs_dir(), "tiny")
    assert main(["train", "--data", str(demo_copy), "--out", run, "--model", "tiny-2conv", "--epochs", "1",
                 "--augment", "none", "--device", "cpu"]) == 0
    Image.fromarray(cat).save(demo_copy / "train" / "3" / "cat.png")
    with qtbot.waitSignal(session.dataset_opened, timeout=60000):
        session.rescan()
    with qtbot.waitSignal(session.runs_changed, timeout=30000):
        session.refresh_runs()
    assert cv.embed_run.currentData() == run and cv.dup_run.findData(run) >= 0
    assert cv.analyse_button.isEnabled()
    cv.groups_model.set_rows([DuplicateGroup(["train/3/a.png", "test/3/b.png"], "near", ["test", "train"], ["3"], 0, 0.005,
                                             hash_confirmed=False)])
    cv.groups_table.selectRow(0)
    assert not cv.keep_first_button.isEnabled()  # one click never excludes a look-alike
    assert cv.groups_model.index(0, 3).data() == "maybe: test, train"
    with qtbot.waitSignal(cv.work_done, timeout=120000):
        cv.find_outliers()
    rows = cv.outliers_model.rows
    assert rows and rows[0][1].path == "train/3/cat.png" and rows[0][1].flagged, cv.embed_summary.text()
    assert cv.coverage_model.rowCount() == len(session.result.split_classes["train"])
    assert not cv.exclude_outlier_button.isEnabled()  # nothing selected yet
    cv.outliers_table.selectRow(0)
    assert cv.exclude_outlier_button.isEnabled() and cv.outlier_image.items
    cv._exclude_outlier()
    assert (demo_copy / "_excluded" / "train" / "3" / "cat.png").exists()
    assert all(o.path != "train/3/cat.png" for _, o in cv.outliers_model.rows)
    n = cv.outliers_model.rowCount()
    other = cv.outliers_model.rows[0][1].path
    session.exclude(other)  # a move made elsewhere (e.g. the Review tab) also drops the stale row
    assert cv.outliers_model.rowCount() == n - 1
    qtbot.waitUntil(lambda: not cv.busy(), timeout=10000)
