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
