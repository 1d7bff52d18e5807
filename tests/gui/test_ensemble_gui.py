"""Results → "Ensemble": selected runs averaged on a worker into a new run that the list shows;
the Train tab names the balanced-bagging member it is training."""
import os

from balancelab.engine.core.events import Finished
from balancelab.engine.core.paths import new_run_dir
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_events import MemberStep
from balancelab.engine.train.run_folder import read_ensemble
from tests.gui.qt_helpers import open_and_wait


def train_run(root, seed: int) -> str:
    out = str(new_run_dir(str(root), f"seed{seed}"))
    cfg = TrainConfig(data=str(root), out=out, model="tiny-2conv", epochs=1, seed=seed, split_seed=0, device="cpu",
                      augment="none")
    assert isinstance(list(train(cfg))[-1], Finished)
    return out


def test_selected_runs_become_an_ensemble_run_in_the_list(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    runs = [train_run(demo_copy, 0), train_run(demo_copy, 1)]
    rv = window.results_view
    rv.refresh()
    qtbot.waitUntil(lambda: len(rv.runs) == 2 and not rv.loading(), timeout=10000)
    rv.runs_table.clearSelection()
    assert not rv.ensemble.button.isEnabled() and "two runs or more" in rv.ensemble.button.toolTip()
    rv.runs_table.selectRow(0)
    assert not rv.ensemble.button.isEnabled()  # one run: its ensemble is itself
    rv.runs_table.clearSelection()
    rv.ensemble.start()  # nothing selected: a message, no worker
    assert "Select the runs" in window.log_view.toPlainText() and rv.ensemble.thread is None
    rv.runs_table.selectAll()
    assert sorted(rv.selected_run_dirs()) == sorted(runs) and rv.ensemble.button.isEnabled()
    with qtbot.waitSignal(rv.ensemble.done, timeout=60000) as blocker:
        rv.ensemble.button.click()
    new = blocker.args[0]
    assert new and sorted(os.path.basename(m).split("-", 1)[1] for m, _ in read_ensemble(new)) == \
        sorted(os.path.basename(r) for r in runs)
    qtbot.waitUntil(lambda: len(rv.runs) == 3 and rv.run is not None and rv.run.dir == new and not rv.loading(),
                    timeout=10000)
    assert "ensemble of 2" in rv.headline.text() and rv.cm_model.rowCount() > 0
    # the ensemble's own description, not its first member's strategy (config.json copies that one);
    # "ensemble of 2" said once, in the model column
    assert "ensemble of 2: tiny-2conv / none," in rv.headline.text()
    row = next(i for i, r in enumerate(rv.runs) if r["dir"] == new)
    assert [rv.runs_model.data(rv.runs_model.index(row, c)) for c in (1, 2, 3)] == [
        "ensemble of 2: tiny-2conv", "none", "—"]
    # no single classifier layer to tau-normalise: the button says so instead of failing later
    assert not rv.tau_norm.compute_button.isEnabled() and "no single classifier" in rv.tau_norm.compute_button.toolTip()
    qtbot.waitUntil(lambda: not rv.ensemble.running(), timeout=10000)


def test_train_tab_shows_the_bagging_member_training(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    tv = window.train_view
    tv.model_box.setCurrentIndex(tv.model_box.findData("tiny-2conv"))
    tv.epochs.setValue(1)
    assert tv.strategy_form.set_strategy("balanced-sampler+balanced-bagging")
    shown = []
    with qtbot.waitSignal(tv.run_finished, timeout=120000) as blocker:
        tv.start()
        tv.thread.event.connect(lambda ev: shown.append(tv.status.text()) if isinstance(ev, MemberStep) else None)
    qtbot.waitUntil(lambda: not tv.is_training(), timeout=30000)
    assert any("Ensemble member 2 of 2" in s for s in shown)
    assert read_ensemble(blocker.args[0]) is not None
