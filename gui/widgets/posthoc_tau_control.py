"""The Results tab's post-hoc logit-adjustment slider, and why it is (not) applicable to a run.

τ subtracts τ × log(class shares of the training data) from the stored logits (Menon et al.
2021): instant, no network pass. Where every class has the same share it would change nothing,
so the slider is disabled and says why instead of silently doing nothing.
"""
from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSlider, QVBoxLayout, QWidget

from balancelab.engine.core.metrics import MAX_POSTHOC_TAU, prior_is_uniform
from balancelab.engine.train.strategies import StrategyError, parse_strategy

STEPS_PER_UNIT = 10  # the slider moves τ by 0.1
MAX_TAU = min(2.0, MAX_POSTHOC_TAU)  # the useful range on a slider; the CLI takes up to the engine's limit

EXPLANATION = (
    "Subtracts τ × log(class shares of the training data) from the logits (Menon et al. 2021); τ = 1 is the "
    "Bayes-optimal correction for a balanced test set. It can help re-sampled runs too, whose rare classes are a "
    "few images repeated (long-tailed MNIST, 5 epochs: oversample+minority-augment 98.3 → 98.6 % balanced "
    "accuracy at τ = 1; after 1 epoch it lowered it): compare on the table. No retraining.")


class PosthocTauControl(QWidget):
    """Label + slider, and under them, while τ is not 0, what the moved figures are: the evaluated
    split re-scored (so a τ picked by them is tuned on it) and, for a balanced-softmax run, a second
    correction. ``changed(tau)`` when the user moves it (not when a run is shown)."""

    changed = Signal(float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, int(MAX_TAU * STEPS_PER_UNIT))
        self.label = QLabel()
        self.note = QLabel()
        self.note.setWordWrap(True)
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.note.setStyleSheet("color: #8a5300")
        self.note.setVisible(False)
        self._split, self._double = "", False
        self.slider.valueChanged.connect(self._moved)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(self.label)
        row.addWidget(self.slider, 1)
        column.addLayout(row)
        column.addWidget(self.note)
        self._say()

    def tau(self) -> float:
        return self.slider.value() / STEPS_PER_UNIT

    def reset(self) -> None:
        """Back to τ = 0 without announcing it (a run is being shown as it was trained)."""
        self.slider.blockSignals(True)
        self.slider.setValue(0)
        self.slider.blockSignals(False)
        self._say()

    def no_run(self) -> None:
        """No run is shown: nothing to adjust."""
        self.reset()
        self.slider.setEnabled(False)
        self.slider.setToolTip("pick a run above")
        self.label.setText("post-hoc logit adjustment")
        self.note.setVisible(False)

    def explain(self, log_prior, strategy: str, split: object = "") -> None:
        """Enable the slider for a run whose training classes have unequal shares; say why not
        otherwise. ``split`` is the split the run's figures come from (read back: any value)."""
        self._split = split if isinstance(split, str) else ""
        self._double = _has_balanced_softmax(strategy)
        if prior_is_uniform(log_prior):
            self.slider.setEnabled(False)
            self.label.setText("post-hoc logit adjustment: not applicable")
            self.note.setVisible(False)
            self.slider.setToolTip("Every class has the same share of this run's training data, so logit adjustment "
                                   "would change no prediction.")
            return
        self.slider.setEnabled(True)
        self._say()
        already = ("This run already trained with the logit-adjusted loss (balanced-softmax): τ adds a second "
                   "correction on top of it.\n" if self._double else "")
        self.slider.setToolTip(already + EXPLANATION)

    def _say(self) -> None:
        self.label.setText(f"post-hoc logit adjustment τ = {self.tau():.1f}")
        moved = self.tau() > 0 and self.slider.isEnabled()
        split = self._split or "evaluated"
        self.note.setText(
            (f"The figures are the {split} split re-scored at this τ: a τ chosen by them is tuned on {split}, so "
             "they flatter it."
             + (" This run trained with balanced-softmax, which already corrects for the prior: τ corrects a "
                "second time (τ = 0 is the principled choice here)." if self._double else
                " τ = 1 is the principled choice.")) if moved else "")
        self.note.setVisible(moved)

    def _moved(self) -> None:
        self._say()
        self.changed.emit(self.tau())


def _has_balanced_softmax(strategy: str) -> bool:
    """Whether a run's recorded strategy (read from its folder: any text) trained with the
    logit-adjusted loss; an ensemble's or an unknown strategy did not, as far as we can tell."""
    try:
        return parse_strategy(strategy).balanced_softmax
    except (StrategyError, TypeError, AttributeError):
        return False
