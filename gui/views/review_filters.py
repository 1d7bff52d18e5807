"""Review's filter bar and the vectorised filtering behind it.

A confusion-matrix cell is one setting of these filters (true = row, predicted = column); the
user narrows or widens from there by confidence and outcome. Filtering is numpy masks over the
whole run, so a run of tens of thousands of images re-filters in milliseconds on the GUI thread.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QWidget

OUTCOMES = {"all": "correct and wrong", "wrong": "wrong only", "correct": "correct only"}
SORTS = {
    "most confident first": lambda conf, loss: -conf,
    "least confident first": lambda conf, loss: conf,
    "highest loss first": lambda conf, loss: -loss,
    "lowest loss first": lambda conf, loss: loss,
}


@dataclass(frozen=True)
class ReviewFilter:
    true: int | None = None  # class index, None = any
    pred: int | None = None
    outcome: str = "all"  # a key of OUTCOMES
    conf_min: float = 0.0
    conf_max: float = 1.0

    def mask(self, y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray) -> np.ndarray:
        keep = (conf >= self.conf_min - 1e-9) & (conf <= self.conf_max + 1e-9)
        if self.true is not None:
            keep &= y_true == self.true
        if self.pred is not None:
            keep &= y_pred == self.pred
        if self.outcome == "wrong":
            keep &= y_true != y_pred
        elif self.outcome == "correct":
            keep &= y_true == y_pred
        return keep

    def describe(self, classes: list[str]) -> str:
        """In words, as plain text (class names are folder names: never markup)."""
        parts = [f"true {classes[self.true]}" if self.true is not None else "every class"]
        if self.pred is not None:
            parts.append(f"predicted {classes[self.pred]}")
        if self.outcome != "all":
            parts.append(OUTCOMES[self.outcome])
        if self.conf_min > 0 or self.conf_max < 1:
            parts.append(f"confidence {self.conf_min:.2f}–{self.conf_max:.2f}")
        return ", ".join(parts)


def ordered_rows(flt: ReviewFilter, y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray, loss: np.ndarray,
                 sort: str) -> np.ndarray:
    """Indices of the rows that pass ``flt``, in the order of ``sort`` (ties keep the run's order)."""
    rows = np.flatnonzero(flt.mask(y_true, y_pred, conf))
    key = SORTS[sort](conf[rows], loss[rows])
    return rows[np.argsort(key, kind="stable")]


class FilterBar(QWidget):
    """True class / predicted class / outcome / confidence range / sort; ``changed`` on any edit."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.true_box, self.pred_box = QComboBox(), QComboBox()
        self.outcome_box = QComboBox()
        for key, label in OUTCOMES.items():
            self.outcome_box.addItem(label, key)
        self.conf_min, self.conf_max = QDoubleSpinBox(), QDoubleSpinBox()
        for spin, value in ((self.conf_min, 0.0), (self.conf_max, 1.0)):
            spin.setRange(0.0, 1.0)
            spin.setSingleStep(0.05)
            spin.setDecimals(2)
            spin.setValue(value)
            spin.setToolTip("Confidence: the probability of the predicted class")
        self.sort_box = QComboBox()
        self.sort_box.addItems(list(SORTS))
        self.reset_button = QPushButton("All images")
        self.reset_button.setToolTip("Clear the class, outcome and confidence filters")
        self.reset_button.clicked.connect(self.reset)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for label, widget in (("True:", self.true_box), ("Predicted:", self.pred_box), ("", self.outcome_box),
                              ("Confidence:", self.conf_min), ("to", self.conf_max), ("Sort:", self.sort_box)):
            if label:
                layout.addWidget(QLabel(label))
            layout.addWidget(widget)
        layout.addWidget(self.reset_button)
        layout.addStretch(1)
        for box in (self.true_box, self.pred_box, self.outcome_box, self.sort_box):
            box.currentIndexChanged.connect(self.changed)
        for spin in (self.conf_min, self.conf_max):
            spin.valueChanged.connect(self.changed)
        self.set_classes([])

    def set_classes(self, classes: list[str]) -> None:
        for box in (self.true_box, self.pred_box):
            box.blockSignals(True)
            box.clear()
            box.addItem("any", None)
            for i, name in enumerate(classes):
                box.addItem(name, i)
            box.blockSignals(False)
        self.setEnabled(bool(classes))

    def current(self) -> ReviewFilter:
        lo, hi = self.conf_min.value(), self.conf_max.value()
        return ReviewFilter(self.true_box.currentData(), self.pred_box.currentData(), self.outcome_box.currentData(),
                            min(lo, hi), max(lo, hi))

    def set_filter(self, flt: ReviewFilter) -> None:
        """Show ``flt`` without emitting ``changed`` once per widget (the caller refreshes once)."""
        widgets = (self.true_box, self.pred_box, self.outcome_box, self.conf_min, self.conf_max)
        for w in widgets:
            w.blockSignals(True)
        self.true_box.setCurrentIndex(self.true_box.findData(flt.true) if flt.true is not None else 0)
        self.pred_box.setCurrentIndex(self.pred_box.findData(flt.pred) if flt.pred is not None else 0)
        self.outcome_box.setCurrentIndex(self.outcome_box.findData(flt.outcome))
        self.conf_min.setValue(flt.conf_min)
        self.conf_max.setValue(flt.conf_max)
        for w in widgets:
            w.blockSignals(False)

    def reset(self) -> None:
        self.set_filter(ReviewFilter())
        self.changed.emit()
