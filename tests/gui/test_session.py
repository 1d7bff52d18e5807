"""The session owns the open dataset, journal and runs: every view follows it, nothing goes stale."""
import os

from PySide6.QtCore import Qt

from tests.gui.qt_helpers import open_and_wait
from tests.hostile import make_problem_tree


def test_a_move_from_any_view_reaches_every_view(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    session, review = window.session, window.review_view
    assert window.curation_view.result is window.dataset_view.result is window.train_view.result is session.result
    rel = next(img.path for img in session.result.images if img.split == "train")
    before = review.journal_list.count()
    with qtbot.waitSignal(session.files_moved, timeout=5000):
        window.curation_view._exclude([rel])  # Curation moves a file ...
    assert review.journal_list.count() == before + 1  # ... and Review's journal shows it at once
    assert review.undo_button.isEnabled()
    assert window.stale_label.isVisibleTo(window)  # until the next scan
    assert not (demo_copy / rel).exists() and (demo_copy / "_excluded" / rel).exists()
    qtbot.mouseClick(review.undo_button, Qt.MouseButton.LeftButton)
    assert (demo_copy / rel).exists() and not review.undo_button.isEnabled()


def test_a_failed_move_is_one_message_and_changes_nothing(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    assert window.session.exclude("train/0/does-not-exist.png") is None
    assert "cannot exclude" in window.log_view.toPlainText()
    assert window.session.journal is not None and not window.session.can_undo()


def test_opening_another_dataset_clears_what_belonged_to_the_previous_one(qtbot, window, demo_copy, tmp_path):
    make_problem_tree(tmp_path / "messy")
    open_and_wait(qtbot, window, tmp_path / "messy")
    dv = window.dataset_view
    dv.right_tabs.setCurrentIndex(1)
    dv.problem_table.selectRow(0)
    qtbot.waitUntil(lambda: dv.problem_preview.text() != "Select a problem to see the file."
                    or dv.problem_preview.pixmap() is not None and not dv.problem_preview.pixmap().isNull(), timeout=5000)
    open_and_wait(qtbot, window, demo_copy)
    assert not window.stale_label.isVisibleTo(window)
    assert dv.problem_preview.text() == "Select a problem to see the file." and not dv.reveal_button.isEnabled()
    assert window.session.root == str(demo_copy) == window.root
    assert window.session.journal.root == os.path.abspath(str(demo_copy))


def test_the_strategy_form_offers_every_registered_component_and_round_trips(qapp):
    from balancelab.engine.train.strategies import COMPONENTS, parse_strategy
    from balancelab.gui.widgets.strategy_form import StrategyForm

    form = StrategyForm()
    offered = {form.combos[a].itemData(i) for a in form.combos for i in range(form.combos[a].count())} | set(form.checks)
    assert set(COMPONENTS) <= offered
    for text in ("none", "oversample+minority-augment", "balanced-sampler+focal+balanced-softmax", "drw+mixup+cutmix"):
        assert form.set_strategy(text)
        assert parse_strategy(form.strategy()).components == parse_strategy(text).components or text == "none"
    assert form.strategy() == "drw+mixup+cutmix"
    assert not form.set_strategy("no-such-thing") and form.strategy() == "drw+mixup+cutmix"


def test_the_tau_slider_says_why_it_does_nothing_on_a_balanced_split(window):
    import numpy as np

    class Run:
        config = {"strategy": "none"}
        metrics = {"evaluated_on": "test"}
        log_prior = np.log(np.full(10, 0.1))  # every class has the same share of the training data

    rv = window.results_view
    rv._explain_tau(Run())
    assert not rv.tau_slider.isEnabled() and "same share" in rv.tau_slider.toolTip()
    assert "not applicable" in rv.tau_label.text()
    Run.log_prior = np.log([0.6, 0.3, 0.1])  # a long-tailed split, re-sampled or not
    rv._explain_tau(Run())
    assert rv.tau_slider.isEnabled() and "Menon" in rv.tau_slider.toolTip() and "second" not in rv.tau_slider.toolTip()
    assert rv.posthoc.note.isHidden()
    rv.tau_slider.setValue(5)  # moved: what the moving figures are is said beside them, not only in a tooltip
    assert not rv.posthoc.note.isHidden() and "test split re-scored" in rv.posthoc.note.text()
    assert "tuned on test" in rv.posthoc.note.text() and "second" not in rv.posthoc.note.text()
    rv.tau_slider.setValue(0)
    Run.config = {"strategy": "oversample+balanced-softmax"}  # the loss already adjusted: said, not refused
    rv._explain_tau(Run())
    assert rv.tau_slider.isEnabled() and "second correction" in rv.tau_slider.toolTip()
    rv.tau_slider.setValue(10)
    assert "corrects a second time" in rv.posthoc.note.text()
    rv.tau_slider.setValue(0)


def test_review_multi_select_and_keys_move_exactly_the_selection(qtbot, window, demo_copy, tmp_path):
    import numpy as np
    from PySide6.QtCore import QItemSelectionModel

    open_and_wait(qtbot, window, demo_copy)
    imgs = [img for img in window.session.result.images if img.split == "test" and img.label == "3"][:4]

    class Run:  # what Review needs of a loaded run: every image predicted '5' with p = 0.91
        classes = [str(d) for d in range(10)]
        paths = [img.path for img in imgs]
        y_true = np.full(len(imgs), 3)
        name, dir = "fake", str(tmp_path / "no-run")
        metrics = {"evaluated_on": "test"}

        def predicted(self, tau):
            p = np.full((len(imgs), 10), 0.01)
            p[:, 5] = 0.91
            return p

    review = window.review_view
    review.show_images(Run(), 3, 5)
    assert len(review.model.items) == 4 and not review.relabel_button.isEnabled()
    chosen = [review.model.items[0]["rel"], review.model.items[1]["rel"]]
    selection = review.grid.selectionModel()
    for row in (0, 1):
        selection.select(review.model.index(row), QItemSelectionModel.SelectionFlag.Select)
    assert review.relabel_button.text() == "Move 2 to class"
    qtbot.keyClick(review.grid, Qt.Key.Key_7)  # the digit key moves the selection to class 7
    qtbot.waitUntil(lambda: not window.session.moving(), timeout=10000)  # several: a batch on a worker
    for rel in chosen:
        assert not (demo_copy / rel).exists() and (demo_copy / "test" / "7" / os.path.basename(rel)).exists()
    assert len(review.model.items) == 2 and "2 moved since" in review.title.text()
    assert not review.relabel_button.isEnabled()  # nothing selected any more: nothing else can move
    qtbot.keyClick(review.grid, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert len(review.model.items) == 3 and (demo_copy / chosen[1]).exists()
    qtbot.waitUntil(lambda: not (review.cam_thread and review.cam_thread.is_busy()), timeout=30000)


def test_curation_shows_no_idle_stop_bar_and_no_action_without_a_selection(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    cv = window.curation_view
    assert not cv.work_bar.isVisibleTo(cv)
    assert not cv.keep_first_button.isEnabled() and not cv.exclude_images_button.isEnabled()
    assert not any(b.isEnabled() for b in cv.issue_actions)  # an empty queue offers no action
    cv.combinations.setText("oversample+nonsense")
    cv.run_compare()  # refused with one message, nothing started
    assert "cannot compare 'oversample+nonsense'" in window.log_view.toPlainText() and not cv.busy()


def test_the_train_tab_proposes_a_recipe_from_the_training_split_and_applies_it(qtbot, window, demo_copy):
    from balancelab.engine.experiments.recipe import recommend
    from balancelab.engine.train.strategies import parse_strategy

    open_and_wait(qtbot, window, demo_copy)
    tv = window.train_view
    expected = recommend(window.session.result)
    assert tv.recipe == expected and expected.reason in tv.recipe_label.text()
    assert tv.train_recipe_button.isEnabled() and tv.search_button.isEnabled()
    tv.strategy_form.set_strategy("none")
    tv.apply_recipe()
    assert parse_strategy(tv.strategy()).components == parse_strategy(expected.strategy).components
    assert (tv.epochs.value(), tv.batch.value(), tv.model_box.currentData()) == (expected.epochs, expected.batch_size,
                                                                                 expected.model)


def test_the_recipe_search_runs_on_the_worker_and_stops_on_request(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    tv = window.train_view
    tv.find_best_recipe()
    assert tv.is_training() and not tv.search_button.isEnabled() and tv.stop_button.isEnabled()
    qtbot.waitUntil(lambda: "Round 1" in tv.status.text(), timeout=60000)  # the live leaderboard
    tv.stop()
    qtbot.waitUntil(lambda: not tv.is_training(), timeout=120000)
    assert tv.search_button.isEnabled() and tv.start_button.isEnabled()


def test_several_images_move_as_one_batch_off_the_gui_thread(qtbot, window, demo_copy):
    """Each single move rewrote the journal twice on the GUI thread (500 images: seconds frozen).
    Several now move as one batch on a worker, and every view hears of them once."""
    import threading

    from balancelab.engine.data import journal as journal_module

    open_and_wait(qtbot, window, demo_copy)
    session = window.session
    rels = [img.path for img in session.result.images if img.split == "train" and img.label != "9"][:6]
    threads, heard = set(), []
    real_many = journal_module.Journal.move_many

    def spy(self, *args, **kwargs):
        threads.add(threading.current_thread() is threading.main_thread())
        yield from real_many(self, *args, **kwargs)

    journal_module.Journal.move_many = spy
    try:
        session.files_moved.connect(heard.append)
        with qtbot.waitSignal(session.files_moved, timeout=10000):
            assert session.move_files("relabel", rels, "9")
        qtbot.waitUntil(lambda: not session.moving(), timeout=10000)
    finally:
        journal_module.Journal.move_many = real_many
    assert threads == {False}  # the moves ran on the worker
    assert len(heard) == 1 and sorted(a.src for a in heard[0]) == sorted(rels)
    assert all((demo_copy / a.dst).exists() and not (demo_copy / a.src).exists() for a in heard[0])
    assert "relabelled 6 file(s) to class 9" in window.log_view.toPlainText()
    assert session.can_undo() and window.review_view.undo_button.isEnabled()


def test_moves_since_the_scan_are_counted_net_and_a_training_then_scans_again(qtbot, window, demo_copy):
    """The badge stayed after every move was undone, and a training after a move used the old
    scan: the moved image was "no longer there" and not trained under its new class either."""
    import csv

    from tests.gui.test_gui import train_and_wait

    open_and_wait(qtbot, window, demo_copy)
    session = window.session
    rel = next(img.path for img in session.result.images if img.split == "train" and img.label == "3")
    summary, grid = window.dataset_view.summary, window.dataset_view.thumb_model
    grid.set_items([{"path": str(demo_copy / rel), "rel": rel, "caption": rel, "tooltip": rel}])
    assert session.exclude(rel) and session.moved_since_scan() and window.stale_label.isVisibleTo(window)
    assert "moved since this scan" in summary.text()  # the Dataset tab's counts are the scan's: it says so
    assert grid.rowCount() == 0  # its tile left the grid, no broken image
    assert session.undo() and not session.moved_since_scan() and not window.stale_label.isVisibleTo(window)
    assert "moved since this scan" not in summary.text()
    moved = session.relabel(rel, "5")
    assert moved and session.moved_since_scan()
    run_dir = train_and_wait(qtbot, window, epochs=1)
    with open(os.path.join(run_dir, "skipped.csv"), newline="") as fh:
        assert not any(moved.src in row or moved.dst in row for row in csv.reader(fh))
    split = __import__("json").load(open(os.path.join(run_dir, "split.json")))
    listed = {p: label for p, label in split["train"] + split["val"]}
    assert listed.get(moved.dst) == "5" and moved.src not in listed
    session.rescan()
    qtbot.waitUntil(lambda: not session.scanning(), timeout=30000)
    assert not session.moved_since_scan() and not window.stale_label.isVisibleTo(window)


def test_no_training_starts_while_a_batch_of_moves_runs(qtbot, window, demo_copy, monkeypatch):
    """Start during a long batch trained on the old file list: excluded images were trained."""
    open_and_wait(qtbot, window, demo_copy)
    monkeypatch.setattr(window.session, "moving", lambda: True)
    tv = window.train_view
    tv.start()
    assert not tv.is_training() and "still being moved" in window.log_view.toPlainText()


def test_a_dataset_reopened_while_its_batch_runs_keeps_its_journal(qtbot, window, demo_copy, tmp_path):
    """A second Journal of the same dataset waited 2 s on our own lock, then left the session without one."""
    from tests.hostile import write_png

    open_and_wait(qtbot, window, demo_copy)
    session = window.session
    batch_journal = session.journal
    monkeypatch_moving = [True]
    session.moving = lambda: monkeypatch_moving[0]
    session._move_journal = batch_journal
    other = tmp_path / "other"
    for i in range(4):
        write_png(other / "a" / f"{i}.png", seed=i)
        write_png(other / "b" / f"{i}.png", seed=10 + i)
    open_and_wait(qtbot, window, other)
    open_and_wait(qtbot, window, demo_copy)
    assert session.journal is batch_journal
    monkeypatch_moving[0] = False
