"""The tau-normalisation control beside the Results tab's logit-adjustment slider.

tau-normalisation (Kang et al. 2020) divides each class's classifier weights by their norm^tau;
unlike logit adjustment it needs the images' features, not only the stored probabilities. The
features of the evaluated split are computed once on a worker thread (a button, so opening a run
never starts a network pass); afterwards the slider re-scores instantly from them.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QSlider, QWidget

from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.core.metrics import MAX_TAU_NORM as MAX_TAU
from balancelab.engine.results.inference import TauNormScorer, tau_norm_scorer
from balancelab.gui.widgets.posthoc_tau_control import STEPS_PER_UNIT  # one step for both sliders
from balancelab.gui.worker import GeneratorThread


class TauNormControl(QWidget):
    """A button that computes the run's features, then a tau slider; ``rescored`` carries the
    metrics of the evaluated split under tau-normalised weights, or None for tau = 0 (the run)."""

    rescored = Signal(object)
    failed = Signal(str)  # why the features could not be computed (the view logs it)

    COMPUTE_TIP = ("Runs the model once over the evaluated split (on a worker thread); "
                   "the slider then re-scores instantly.")

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.run_dir: str | None = None
        self.data_root: str | None = None
        self.scorer: TauNormScorer | None = None
        self.thread: GeneratorThread | None = None
        self.label = QLabel("classifier τ-norm")
        self.compute_button = QPushButton("Compute features")
        self.compute_button.setToolTip(self.COMPUTE_TIP)
        self.compute_button.clicked.connect(self.compute)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, int(MAX_TAU * STEPS_PER_UNIT))
        self.slider.setEnabled(False)
        self.slider.setMinimumWidth(90)
        self.slider.setToolTip("Divides each class's classifier weights by their norm^τ (Kang et al. 2020): frequent "
                               "classes learn larger norms, τ = 1 equalises them. No retraining.")
        self.slider.valueChanged.connect(self._tau_changed)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        layout.addWidget(self.compute_button)
        layout.addWidget(self.slider, 1)

    def tau(self) -> float:
        return self.slider.value() / STEPS_PER_UNIT

    def active(self) -> bool:
        """Whether the shown metrics are τ-normalised."""
        return self.scorer is not None and self.slider.value() > 0

    def reset_tau(self) -> None:
        """Back to τ = 0 without re-scoring (the caller shows other metrics)."""
        self.slider.blockSignals(True)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.label.setText("classifier τ-norm = 0.0")

    def set_run(self, run_dir: str | None, data_root: str | None, unavailable: str = "") -> None:
        """Another run (or none): forget the features and put the slider back to 0. ``unavailable``
        says why this run has no classifier to normalise (the button is then disabled)."""
        self.stop()
        self.run_dir, self.data_root, self.scorer = run_dir, data_root, None
        self.slider.blockSignals(True)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self.slider.setEnabled(False)
        self.compute_button.setEnabled(bool(run_dir and data_root) and not unavailable)
        self.compute_button.setToolTip(unavailable or self.COMPUTE_TIP)
        self.label.setText("classifier τ-norm")
        self.label.setToolTip("")

    def compute(self) -> None:
        if not (self.run_dir and self.data_root) or (self.thread is not None and self.thread.is_busy()):
            return
        run_dir, root = self.run_dir, self.data_root
        self.compute_button.setEnabled(False)
        self.thread = GeneratorThread(lambda stop: tau_norm_scorer(run_dir, root, None, "cpu", stop),
                                      throttle=(Progress,), parent=self)
        self.thread.event.connect(lambda ev, wanted=run_dir: self._on_event(ev, wanted))
        self.thread.start()

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.request_stop()
            self.thread.wait()
            self.thread = None

    def _on_event(self, ev, run_dir: str) -> None:
        if run_dir != self.run_dir:
            return  # features of a run no longer shown
        if isinstance(ev, Progress):
            self.label.setText(f"classifier τ-norm: {ev.phase} {ev.done}/{ev.total}")
        elif isinstance(ev, Finished):
            self.scorer = ev.result
            self.slider.setEnabled(ev.result is not None)
            self.compute_button.setEnabled(ev.result is None)
            self._tau_changed()
        elif isinstance(ev, Failed):
            self.label.setText("classifier τ-norm: not available")
            self.label.setToolTip(ev.message)
            self.compute_button.setEnabled(True)
            self.failed.emit(ev.message)

    def _tau_changed(self) -> None:
        tau = self.tau()
        self.label.setText(f"classifier τ-norm = {tau:.1f}")
        if self.scorer is not None:
            self.rescored.emit(self.scorer.metrics(tau) if tau else None)
