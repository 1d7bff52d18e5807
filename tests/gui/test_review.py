"""Review tab: filters combined with the cell selection, multi-select and keys; state that follows
the journal; feature maps computed lazily on a worker and replaced with the selection."""
import os

import numpy as np
import pytest
from PySide6.QtCore import QItemSelectionModel, Qt

from balancelab.gui.views.review_filters import ReviewFilter
from tests.gui.qt_helpers import open_and_wait


def fake_run(images, preds, confs, run_dir="no-run"):
    """What Review needs of a loaded run: ``preds[i]`` predicted with probability ``confs[i]``."""

    class Run:
        classes = [str(d) for d in range(10)]
        paths = [img.path for img in images]
        y_true = np.array([int(img.label) for img in images])
        name, dir = "fake", run_dir
        metrics = {"evaluated_on": "test"}

        def predicted(self, tau):
            p = np.zeros((len(images), 10))
            for i, (c, q) in enumerate(zip(preds, confs)):
                p[i, :] = (1 - q) / 9
                p[i, c] = q
            return p

    return Run()


@pytest.fixture
def review_of_threes(qtbot, window, demo_copy):
    """Six test images of '3' and two of '8': three 3s predicted 5 (p 0.9, 0.6, 0.3), the rest right."""
    open_and_wait(qtbot, window, demo_copy)
    test = [img for img in window.session.result.images if img.split == "test"]
    threes = [img for img in test if img.label == "3"][:6]
    eights = [img for img in test if img.label == "8"][:2]
    run = fake_run(threes + eights, [5, 5, 5, 3, 3, 3, 8, 8], [0.9, 0.6, 0.3, 0.95, 0.8, 0.7, 0.99, 0.5])
    review = window.review_view
    review.show_images(run, 3, 5)  # a confusion-matrix cell: true 3, predicted 5
    return review, run


def rels(review):
    return [it["rel"] for it in review.model.items]


def test_a_cell_is_a_filter_the_user_can_widen_and_narrow(review_of_threes, monkeypatch):
    review, run = review_of_threes
    assert [it["conf"] for it in review.model.items] == pytest.approx([0.9, 0.6, 0.3])  # most confident first
    assert review.filters.current() == ReviewFilter(3, 5)
    review.filters.pred_box.setCurrentIndex(0)  # predicted: any -> every 3
    assert len(review.model.items) == 6
    review.filters.outcome_box.setCurrentIndex(review.filters.outcome_box.findData("correct"))
    assert {it["pred"] for it in review.model.items} == {3} and len(review.model.items) == 3
    review.filters.conf_max.setValue(0.85)  # confidence range
    assert [it["conf"] for it in review.model.items] == pytest.approx([0.8, 0.7])
    review.filters.true_box.setCurrentIndex(0)  # true: any -> the 8 at p=0.5 joins
    assert [it["conf"] for it in review.model.items] == pytest.approx([0.8, 0.7, 0.5])
    review.sort_box.setCurrentText("least confident first")
    assert [it["conf"] for it in review.model.items] == pytest.approx([0.5, 0.7, 0.8])
    assert "confidence 0.00–0.85" in review.title.text() and "correct only" in review.title.text()
    review.filters.reset_button.click()
    assert len(review.model.items) == 8 and review.title.text().startswith("8 test image(s): every class")
    monkeypatch.setattr("balancelab.gui.views.review.MAX_SHOWN", 3)  # a huge run: the grid holds a bounded page
    review.filters.outcome_box.setCurrentIndex(review.filters.outcome_box.findData("all"))
    review.filters.conf_min.setValue(0.01)
    assert len(review.model.items) == 3 and "showing the first 3 of 8" in review.title.text()


def test_keys_act_on_the_selection_within_the_filter_and_the_view_follows_the_journal(qtbot, review_of_threes,
                                                                                         demo_copy):
    review, run = review_of_threes
    review.filters.pred_box.setCurrentIndex(0)
    review.filters.conf_min.setValue(0.5)  # the 3s at p >= 0.5: 0.95, 0.9, 0.8, 0.7, 0.6
    assert len(review.model.items) == 5 and not review.relabel_button.isEnabled()
    chosen = rels(review)[1:3]
    for row in (1, 2):
        review.grid.selectionModel().select(review.model.index(row), QItemSelectionModel.SelectionFlag.Select)
    assert review.relabel_button.text() == "Move 2 to class"
    qtbot.keyClick(review.grid, Qt.Key.Key_7)
    qtbot.waitUntil(lambda: not review.session.moving(), timeout=10000)  # several: a batch on a worker
    for rel in chosen:
        assert not (demo_copy / rel).exists() and (demo_copy / "test" / "7" / os.path.basename(rel)).exists()
    assert len(review.model.items) == 3 and "2 moved since" in review.title.text()
    assert not set(chosen) & set(rels(review)) and not review.relabel_button.isEnabled()
    review.show_images(run, 3, None)  # another click in Results: the moves since the scan still count
    assert len(review.model.items) == 4 and not set(chosen) & set(rels(review)) and "2 moved since" in review.title.text()
    review.filters.conf_min.setValue(0.5)
    # a move made elsewhere (Curation, through the session) reaches Review at once
    other = rels(review)[0]
    window_session = review.session
    window_session.exclude(other)
    assert other not in rels(review) and "3 moved since" in review.title.text()
    qtbot.keyClick(review.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # undo the exclusion
    assert other in rels(review) and len(review.model.items) == 3
    review.grid.setCurrentIndex(review.model.index(0))
    qtbot.keyClick(review.grid, Qt.Key.Key_Delete)  # Delete excludes the current image
    assert len(review.model.items) == 2
    review.session.rescan()  # a rescan is the new truth: what it finds is shown, moves and all
    qtbot.waitUntil(lambda: not review.session.scanning(), timeout=30000)
    assert len(review.model.items) == 2 and review.filters.isEnabled()
    qtbot.waitUntil(lambda: review.cam_thread is None, timeout=30000)


@pytest.fixture(scope="module")
def trained_run(demo_root, tmp_path_factory):
    from balancelab.engine.results.loaded_run import load_run
    from balancelab.engine.train.config import TrainConfig
    from balancelab.engine.train.run import train
    from balancelab.engine.train.run_reading import list_runs

    parent = tmp_path_factory.mktemp("runs")
    events = list(train(TrainConfig(data=str(demo_root), out=str(parent / "tiny"), model="tiny-2conv", epochs=1,
                                    image_size=16, device="cpu")))
    assert events[-1].result.metrics
    return load_run(list_runs(str(parent))[0])


def test_feature_maps_are_computed_only_when_shown_and_follow_the_selection(qtbot, window, demo_copy, trained_run):
    open_and_wait(qtbot, window, demo_copy)
    review = window.review_view
    review.show_images(trained_run, 3, None)
    assert len(review.model.items) >= 2
    review.grid.setCurrentIndex(review.model.index(0))
    qtbot.waitUntil(lambda: review.cam_thread is None and not review.workers.waiting("cam"), timeout=30000)
    assert review.maps_panel.maps is None and not review.workers.waiting("maps")  # lazy: its tab is hidden
    review.detail_tabs.setCurrentWidget(review.maps_panel)
    first = review.model.items[0]["path"]
    qtbot.waitUntil(lambda: review.maps_panel.maps is not None, timeout=30000)
    assert review.maps_panel.maps.path == first
    assert [lm.channels for lm in review.maps_panel.maps.layers] == [16, 32]  # tiny-2conv's two convolutions
    assert review.maps_panel.shown_layers() == 2
    review.grid.setCurrentIndex(review.model.index(1))  # another image: its maps replace the first's
    assert review.maps_panel.maps is None
    second = review.model.items[1]["path"]
    qtbot.waitUntil(lambda: review.maps_panel.maps is not None, timeout=30000)
    assert review.maps_panel.maps.path == second
    review.maps_panel.channels.setValue(4)  # fewer channels per layer: recomputed
    qtbot.waitUntil(lambda: review.maps_panel.maps is not None and len(review.maps_panel.maps.layers[1].shown) == 4,
                    timeout=30000)
    shown = review.maps_panel.maps
    review.detail_tabs.setCurrentIndex(0)
    review.detail_tabs.setCurrentWidget(review.maps_panel)  # back on the tab: nothing to recompute
    assert review.maps_panel.maps is shown and not review.workers.waiting("maps")
    review.filters.reset_button.click()  # the list changes: no selection, no stale maps
    assert review.maps_panel.maps is None and review._current_item() is None
    qtbot.waitUntil(lambda: not review.workers.busy(), timeout=30000)
