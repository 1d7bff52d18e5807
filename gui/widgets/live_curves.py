"""Live training curves drawn with pyqtgraph.

Matplotlib re-lays out and re-renders the whole figure in Python on every update (80 ms a
redraw on a busy 2-core machine, while training holds the other core); pyqtgraph only swaps
the points of each line and lets Qt paint them, so an epoch's update costs the GUI thread a
few milliseconds.
"""
from __future__ import annotations

import math

import pyqtgraph as pg
from PySide6.QtGui import QColor, QPen
from PySide6.QtWidgets import QSizePolicy

# (row, history key, legend label, colour, dashed)
CURVES = (
    (0, "train_loss", "train loss", "#3b6fb6", False), (0, "val_loss", "val loss", "#e07b39", False),
    (1, "train_accuracy", "train acc", "#3b6fb6", False), (1, "val_accuracy", "val acc", "#e07b39", False),
    (1, "val_balanced_accuracy", "val balanced acc", "#4a9a5b", True),
)
# the curves the legend names: the others share their colour (loss above, accuracy below)
LEGEND = {"train_loss": "train", "val_loss": "validation", "val_balanced_accuracy": "validation balanced accuracy"}


class LiveCurves(pg.GraphicsLayoutWidget):
    """Loss (top) and accuracy (bottom) per epoch; ``set_history`` replaces the points in place."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent, show=False)
        self.setBackground("w")
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(200)
        # one legend row above both plots (train and validation have one colour in both): inside
        # the axes a legend covered a curve wherever it was anchored (a loss that rises again, an
        # accuracy that starts high)
        self.legend = pg.LegendItem(colCount=4, labelTextSize="8pt", labelTextColor="#333")
        self.legend.layout.setContentsMargins(4, 0, 4, 0)
        self.addItem(self.legend, row=0, col=0)
        self.plots = [self.addPlot(row=1, col=0), self.addPlot(row=2, col=0)]
        self.ci.layout.setRowStretchFactor(0, 0)
        self.plots[1].setXLink(self.plots[0])
        for plot, label in zip(self.plots, ("loss", "accuracy")):
            plot.setLabel("left", label)
            plot.showGrid(x=True, y=True, alpha=0.25)
            plot.setMouseEnabled(x=False, y=False)
            plot.hideButtons()
            for axis in ("left", "bottom"):
                plot.getAxis(axis).setPen("#444")
                plot.getAxis(axis).setTextPen("#444")
                plot.getAxis(axis).setStyle(maxTickLevel=0)  # major grid lines only: a third of the paint time
                plot.getAxis(axis).enableAutoSIPrefix(False)  # accuracy stays 0.8, not "800 (x0.001)"
        self.plots[1].setLabel("bottom", "epoch")
        for plot in self.plots:
            plot.getViewBox().setDefaultPadding(0.08)  # the extreme points stay clear of the frame
        self.set_epochs(1)
        self.lines: dict[str, pg.PlotDataItem] = {}
        for row, key, label, colour, dashed in CURVES:
            pen = QPen(QColor(colour), 2)
            pen.setCosmetic(True)
            if dashed:
                pen.setDashPattern([4, 3])
            self.lines[key] = self.plots[row].plot([], [], pen=pen, symbol="o", symbolSize=5, symbolPen=None,
                                                   symbolBrush=colour)
            if key in LEGEND:
                self.legend.addItem(self.lines[key], LEGEND[key])
        # within an epoch: a smoothed batch loss, so the first minutes of a long run are not an empty chart
        pen = QPen(QColor("#9db5d9"), 1)
        pen.setCosmetic(True)
        self.batch_line = self.plots[0].plot([], [], pen=pen)
        self.legend.addItem(self.batch_line, "train loss (batches)")
        self._batch_x: list[float] = []
        self._batch_y: list[float] = []
        self._epochs_shown = 0
        self._say_if_empty()

    EMPTY = "Start training: the loss and accuracy appear here as the model learns."

    def _say_if_empty(self) -> None:
        """Empty axes say what fills them; the sentence goes with the first batch."""
        empty = not self._batch_x and not self._epochs_shown
        self.plots[0].setTitle(self.EMPTY if empty else None, color="#5f6368", size="9pt")

    MAX_BATCH_POINTS = 1500

    def add_batch(self, epoch_position: float, loss: float) -> None:
        """One delivered batch (x = epochs done, fractional); the line is an exponential moving average."""
        if not math.isfinite(loss):
            return
        smoothed = loss if not self._batch_y else 0.8 * self._batch_y[-1] + 0.2 * loss
        self._batch_x.append(epoch_position)
        self._batch_y.append(smoothed)
        if len(self._batch_x) > self.MAX_BATCH_POINTS:  # keep every other point: bounded paint time on long runs
            self._batch_x, self._batch_y = self._batch_x[::2], self._batch_y[::2]
        self.batch_line.setData(self._batch_x, self._batch_y)
        if len(self._batch_x) == 1:
            self._say_if_empty()

    def reset_view(self) -> None:
        """Nothing drawn, and the axes of a fresh window (not the last run's scale). Not ``clear``:
        pyqtgraph's widget sets that name on each instance to empty the whole layout."""
        for plot in self.plots:
            plot.disableAutoRange()  # else a pending auto-range of the old points lands after the reset
        self.set_history([])
        self.clear_batches()
        self.set_epochs(1)
        for plot in self.plots:
            plot.getViewBox().setRange(yRange=(0.0, 1.0), padding=0, update=True)
            plot.enableAutoRange(axis="y")  # the next run's points set the scale again

    def clear_batches(self) -> None:
        self._batch_x, self._batch_y = [], []
        self.batch_line.setData([], [])
        self._say_if_empty()

    def set_epochs(self, total: int) -> None:
        """Show the whole planned run on the x axis, with whole-epoch ticks."""
        total = max(1, total)
        step = max(1, math.ceil(total / 10))
        for plot in self.plots:
            plot.getAxis("bottom").setTickSpacing(major=step, minor=step)
            plot.setXRange(0.0, total + 0.5, padding=0)  # from 0: the first epoch's batches are on screen

    def set_history(self, history: list[dict]) -> None:
        epochs = [h["epoch"] for h in history]
        for _, key, _, _, _ in CURVES:
            points = [(e, h[key]) for e, h in zip(epochs, history) if h.get(key) is not None]
            self.lines[key].setData([p[0] for p in points], [p[1] for p in points])
        self._epochs_shown = len(epochs)
        self._say_if_empty()

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """The points currently shown for one curve (what a test or a screenshot should see)."""
        xs, ys = self.lines[key].getData()
        return ([] if xs is None else list(xs)), ([] if ys is None else list(ys))
