"""What the tabs do when the runs they show are damaged, changed or deleted on disk (found by a
walk through the GUI with damaged runs): nothing stale, nothing rendered as markup, one message."""
from __future__ import annotations

import json
import os
import shutil

import torch

from balancelab.engine.results.gradcam import CamExplainer
from balancelab.engine.train.checkpoints import CheckpointError
from tests.gui.qt_helpers import open_and_wait
from tests.gui.test_gui import train_and_wait


def select_run(qtbot, rv, run_dir: str) -> None:
    rv.refresh()
    qtbot.waitUntil(lambda: not rv.loading() and any(r["dir"] == run_dir for r in rv.runs), timeout=10000)
    row = next(i for i, r in enumerate(rv.runs) if r["dir"] == run_dir)
    rv.runs_table.selectRow(rv.runs_proxy.mapFromSource(rv.runs_model.index(row, 0)).row())
    qtbot.waitUntil(lambda: not rv.loading(), timeout=10000)


def edit_json(path: str, **changes) -> None:
    with open(path, encoding="utf-8") as fh:
        data = json.load(fh)
    data.update(changes)
    with open(path, "w", encoding="utf-8") as fh:
        json.dump(data, fh)


def interrupted_run(window, demo_copy, **settings) -> str:
    """A run of the open dataset whose process went away after its first epoch was saved."""
    from balancelab.engine.core.paths import new_run_dir
    from balancelab.engine.train.config import TrainConfig
    from balancelab.engine.train.run import train
    from balancelab.engine.train.run_events import CheckpointSaved

    run_dir = str(new_run_dir(str(demo_copy), "killed"))
    events = train(TrainConfig(**{"data": window.session.root, "out": run_dir, "model": "tiny-2conv", "epochs": 2,
                                  "batch_size": 32, **settings}))
    next(ev for ev in events if isinstance(ev, CheckpointSaved) and ev.kind == "last")
    events.close()
    return run_dir


def test_a_run_that_cannot_be_shown_clears_the_view_instead_of_keeping_the_previous(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    first = train_and_wait(qtbot, window)
    window.train_view.seed.setValue(1)
    second = train_and_wait(qtbot, window)
    rv = window.results_view
    pred = os.path.join(first, "predictions.csv")
    with open(pred, encoding="utf-8") as fh:
        header = fh.readline()
    with open(pred, "w", encoding="utf-8") as fh:  # only its header: the tau slider raised from a slot
        fh.write(header)
    assert rv.run.dir == second
    select_run(qtbot, rv, first)
    assert rv.run is None and rv.cm_model.rowCount() == 0  # not the second run's matrix under the first's row
    assert "cannot be shown" in rv.headline.text() and "no predictions" in rv.headline.text()
    rv.tau_slider.setValue(10)  # nothing to rescore, nothing raised


def test_strings_from_run_files_are_shown_as_text_and_ensembles_as_ensembles(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    first = train_and_wait(qtbot, window)
    rv = window.results_view
    edit_json(os.path.join(first, "metrics.json"), evaluated_on="<i>test</i><img src=x>")
    rv._select_dir = first
    rv.refresh()
    qtbot.waitUntil(lambda: not rv.loading() and rv.run is not None
                    and rv.run.metrics["evaluated_on"].startswith("<i>"), timeout=10000)
    assert "&lt;i&gt;test&lt;/i&gt;&lt;img src=x&gt;" in rv.headline.text()
    assert rv.tau_norm.compute_button.isEnabled()


def test_review_forgets_a_run_deleted_on_disk_and_cams_follow_a_replaced_checkpoint(qtbot, window, demo_copy,
                                                                                     tmp_path):
    open_and_wait(qtbot, window, demo_copy)
    run_dir = train_and_wait(qtbot, window)
    rv, review = window.results_view, window.review_view
    rv._cell_clicked(rv.cm_model.index(0, 0))
    assert review.run is not None and review.model.rowCount()
    # Grad-CAM keeps the model loaded per run; a best.pt replaced since is loaded again
    explainer = CamExplainer()
    image = os.path.join(str(demo_copy), review.run.paths[0])
    explainer.overlays(run_dir, image, [0])
    state = torch.load(os.path.join(run_dir, "best.pt"), weights_only=True)
    for value in state["model"].values():
        if value.is_floating_point():
            value.fill_(float("nan"))
    torch.save(state, os.path.join(tmp_path, "nan.pt"))
    os.replace(os.path.join(tmp_path, "nan.pt"), os.path.join(run_dir, "best.pt"))
    try:
        explainer.overlays(run_dir, image, [0])
        raise AssertionError("the cached model of the old checkpoint was used")
    except CheckpointError as exc:
        assert "not numbers" in str(exc)
    # the run folder is deleted: after the runs are re-listed, Review shows nothing of it
    assert window.predict_view.run_box.currentData() == run_dir
    shutil.rmtree(run_dir)
    window.session.refresh_runs()
    qtbot.waitUntil(lambda: review.run is None, timeout=10000)
    assert review.model.rowCount() == 0
    # Predict's run box says that the run it had chosen is gone, instead of switching silently
    log = window.log_view.toPlainText()
    assert f"Predict: the run {os.path.basename(run_dir)} is no longer listed" in log
    assert f"Curation: the run {os.path.basename(run_dir)} is no longer listed" in log


def test_a_refusal_on_a_worker_is_one_line_not_an_unexpected_error(qtbot):
    from balancelab.engine.core.events import Failed
    from balancelab.engine.train.run_folder import RunError
    from balancelab.gui.worker import GeneratorThread

    def refuses(stop):
        raise RunError("run folder does not exist: /x")
        yield  # a generator

    events = []
    thread = GeneratorThread(refuses)
    thread.event.connect(events.append)
    with qtbot.waitSignal(thread.finished, timeout=5000):
        thread.start()
    qtbot.waitUntil(lambda: bool(events), timeout=2000)
    assert isinstance(events[-1], Failed) and events[-1].message == "run folder does not exist: /x"
    assert events[-1].detail == ""


def test_an_interrupted_run_is_resumed_from_the_results_tab_with_its_own_settings(qtbot, window, demo_copy):
    """The note named it and told the CLI's --resume; the app itself had no way to go on."""
    open_and_wait(qtbot, window, demo_copy)
    run_dir = interrupted_run(window, demo_copy, seed=3, lr=0.003)
    rv, tv = window.results_view, window.train_view
    rv.refresh()
    qtbot.waitUntil(lambda: not rv.loading() and rv.resume_button.isVisibleTo(rv), timeout=10000)
    actions = rv.resume_button.menu().actions()
    assert [a.text() for a in actions] == [f"Resume {os.path.basename(run_dir)}"]
    tv.epochs.setValue(9)  # the form's settings are not the run's: the run goes on with its own
    with qtbot.waitSignal(tv.run_finished, timeout=120000) as blocker:
        actions[0].trigger()
        assert window.tabs.currentWidget() is tv
    qtbot.waitUntil(lambda: not tv.is_training(), timeout=30000)
    assert blocker.args[0] == run_dir and [row["epoch"] for row in tv.history] == [1, 2]  # epoch 1 drawn too
    qtbot.waitUntil(lambda: not rv.loading() and any(r["dir"] == run_dir for r in rv.runs), timeout=10000)
    assert not rv.resume_button.isVisibleTo(rv) and not rv.incomplete_note.isVisibleTo(rv)
    with open(os.path.join(run_dir, "config.json"), encoding="utf-8") as fh:
        saved = json.load(fh)
    assert (saved["epochs"], saved["seed"], saved["lr"]) == (2, 3, 0.003)


def test_a_crafted_config_of_one_run_leaves_every_other_run_listed(qtbot, window, demo_copy):
    """A NUL in its data path made the resumable check raise on the worker: no run was listed at all."""
    open_and_wait(qtbot, window, demo_copy)
    finished = train_and_wait(qtbot, window)
    killed = interrupted_run(window, demo_copy)
    edit_json(os.path.join(killed, "config.json"), data="/tmp/x\u0000y")
    rv = window.results_view
    rv.refresh()
    qtbot.waitUntil(lambda: not rv.loading() and rv.incomplete_note.isVisibleTo(rv), timeout=10000)
    assert [r["dir"] for r in rv.runs] == [finished] and not rv.resume_button.isVisibleTo(rv)


def test_a_refused_resume_stays_on_results_and_relists(qtbot, window, demo_copy):
    open_and_wait(qtbot, window, demo_copy)
    killed = interrupted_run(window, demo_copy)
    rv = window.results_view
    window.tabs.setCurrentWidget(rv)
    rv.refresh()
    qtbot.waitUntil(lambda: not rv.loading() and rv.resume_button.isVisibleTo(rv), timeout=10000)
    shutil.rmtree(killed)  # deleted after it was listed
    rv.resume_button.menu().actions()[0].trigger()
    assert window.tabs.currentWidget() is rv and not window.train_view.is_training()
    qtbot.waitUntil(lambda: not rv.loading() and not rv.resume_button.isVisibleTo(rv), timeout=10000)


def test_the_eta_of_a_resumed_run_counts_its_own_batch_size(qtbot, window, demo_copy):
    """The live panel multiplied by the form's batch size: a run of batch 8 resumed with the form at
    512 showed 64 times its real remaining time."""
    from balancelab.engine.train.run_events import BatchProgress, TrainStarted

    live = window.train_view.live
    window.train_view.batch.setValue(512)
    live.show_event(TrainStarted("run", "cpu", ["a", "b"], [8, 8], [8.0, 8.0], 16, 4, 0, 3, 2, 1, batch_size=8))
    live.show_event(BatchProgress(2, 1, 2, 0.5, 16.0, 0.5))  # 16 images/s, 2 batches of 8: 1 s per epoch
    assert "ETA 2 s" in live.rate_label.text()  # half a second of this epoch, one more epoch
    assert "resumed after epoch 1" in live.status.text()
