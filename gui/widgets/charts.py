"""Matplotlib charts embedded with FigureCanvasQTAgg (never pyplot in the GUI)."""
from __future__ import annotations

from typing import Callable

from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from PySide6.QtWidgets import QSizePolicy

PALETTE = ["#3b6fb6", "#e07b39", "#4a9a5b", "#b5475b", "#7d5ba6"]


class ChartCanvas(FigureCanvasQTAgg):
    """A matplotlib canvas that does its work only while visible.

    ``plot(draw)`` runs ``draw`` (clear the axes and add artists) at once when the chart is on
    screen, otherwise when it is next shown: building matplotlib artists costs tens of
    milliseconds of Python on the GUI thread, which a chart on a hidden tab should not spend
    (a run finishing while the user watches the Train tab refreshes the Results charts).
    """

    def __init__(self, parent=None, width: float = 5.0, height: float = 3.0, rows: int = 1, cols: int = 1,
                 constrained: bool = True) -> None:
        self.figure = Figure(figsize=(width, height), layout="constrained" if constrained else None)
        self._pending: Callable[[], None] | None = None
        super().__init__(self.figure)
        self.setParent(parent)
        self.axes = [self.figure.add_subplot(rows, cols, i + 1) for i in range(rows * cols)]
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumHeight(160)

    def plot(self, draw: Callable[[], None]) -> None:
        self._pending = draw
        if self.isVisible():
            self._flush()

    def _flush(self) -> None:
        draw, self._pending = self._pending, None
        if draw is not None:
            self.clear()
            draw()
            super().draw_idle()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        self._flush()

    @property
    def ax(self):
        return self.axes[0]

    def clear(self) -> None:
        for ax in self.axes:
            ax.clear()

    def empty_message(self, text: str) -> None:
        def draw() -> None:
            self.ax.text(0.5, 0.5, text, ha="center", va="center", color="#666", transform=self.ax.transAxes)
            self.ax.set_axis_off()

        self.plot(draw)


def grouped_bars(ax, classes: list[str], series: dict[str, list[float]], ylabel: str, log: bool = False,
                 legend_above: bool = False) -> None:
    """``legend_above``: the legend is a row over the axes (for a chart without a title), where it
    cannot cover a bar."""
    n = max(1, len(series))
    width = 0.8 / n
    for i, (name, values) in enumerate(series.items()):
        xs = [x + (i - (n - 1) / 2) * width for x in range(len(classes))]
        ax.bar(xs, values, width=width, label=name, color=PALETTE[i % len(PALETTE)])
    ax.set_xticks(range(len(classes)))
    ax.set_xticklabels(classes, rotation=45 if len(classes) > 8 else 0, ha="right" if len(classes) > 8 else "center", fontsize=8)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    if len(series) > 1 and legend_above:
        ax.legend(fontsize=8, ncol=len(series), loc="lower left", bbox_to_anchor=(0.0, 1.0), frameon=False,
                  borderaxespad=0.2)
    elif len(series) > 1:
        ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
