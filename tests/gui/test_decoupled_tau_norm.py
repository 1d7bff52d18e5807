"""The tau-norm control: features on a worker thread, then instant re-scoring."""
from balancelab.engine.core.events import Finished
from balancelab.engine.results.inference import evaluate_run
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train


def test_tau_norm_control_computes_features_off_the_gui_thread_and_rescores(qtbot, demo_root, tmp_path):
    from balancelab.gui.widgets.tau_norm_control import TauNormControl

    run = str(tmp_path / "run")
    cfg = TrainConfig(data=str(demo_root), out=run, model="tiny-2conv", epochs=1, lr=3e-3, device="cpu")
    assert isinstance(list(train(cfg))[-1], Finished)
    control = TauNormControl()
    qtbot.addWidget(control)
    control.set_run(run, str(demo_root))
    assert not control.slider.isEnabled() and control.compute_button.isEnabled()
    with qtbot.waitSignal(control.rescored, timeout=120_000) as first:
        control.compute_button.click()
    assert first.args == [None]  # tau 0: the run as it is
    control.thread.wait()
    assert control.slider.isEnabled() and not control.compute_button.isEnabled()
    with qtbot.waitSignal(control.rescored, timeout=5_000) as moved:
        control.slider.setValue(10)
    expected = evaluate_run(run, str(demo_root), tau_norm=1.0)
    assert moved.args[0]["confusion_matrix"] == expected["confusion_matrix"]
    control.set_run(None, None)  # another run: features forgotten, slider back to 0 and disabled
    assert control.scorer is None and control.tau() == 0.0 and not control.slider.isEnabled()


def test_a_cell_clicked_under_tau_norm_shows_the_images_that_cell_counts(qtbot, window, demo_copy):
    """Review showed the run's images at τ-norm 0 whatever the matrix said: a cell of 12 opened 14."""
    import numpy as np

    from tests.gui.qt_helpers import open_and_wait
    from tests.gui.test_gui import train_and_wait

    open_and_wait(qtbot, window, demo_copy)
    train_and_wait(qtbot, window, epochs=1)
    rv = window.results_view
    with qtbot.waitSignal(rv.tau_norm.rescored, timeout=120_000):
        rv.tau_norm.compute_button.click()
    rv.tau_norm.thread.wait()
    base = np.array(rv.cm_model.counts)
    rv.tau_norm.slider.setValue(20)  # τ-norm 2: a strong change of the matrix
    qtbot.waitUntil(lambda: rv.tau_norm.active(), timeout=5000)
    cm = np.array(rv.cm_model.counts)
    assert not np.array_equal(cm, base), "τ-norm 2 should move some images on this run"
    r, c = np.unravel_index(np.abs(cm - base).argmax(), cm.shape)  # a cell that changed
    rv._cell_clicked(rv.cm_model.index(int(r), int(c)))
    review = window.review_view
    assert len(review.model.items) == cm[r, c] and "classifier τ-norm = 2" in review.title.text()
