"""Predict tab: drop images (or pick files) and see the top-k classes of the chosen run."""
from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.results.inference import predict_paths

from balancelab.gui.widgets.tables import make_table
from balancelab.gui.widgets.table_models import BaseTableModel
from balancelab.gui.worker import GeneratorThread


class PredictionsModel(BaseTableModel):
    headers = ["Image", "Top 1", "Top 2", "Top 3"]

    def cell(self, index, role):
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return r["path"]
            if r.get("error"):
                return r["error"] if col == 1 else ""
            top = r["top"]
            return f"{top[col - 1]['class']}  {top[col - 1]['probability']:.3f}" if col - 1 < len(top) else ""
        return None


class PredictView(QWidget):
    message = Signal(str, str)

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.thread: GeneratorThread | None = None
        self.run_box = QComboBox()
        pick = QPushButton("Add images…")
        pick.clicked.connect(self._pick)
        self.model = PredictionsModel(self)
        self.table = make_table(self.model)
        self.table.setColumnWidth(0, 420)
        hint = QLabel("Drop image files anywhere on the window, or use Add images…")
        hint.setObjectName("hint")
        row = QHBoxLayout()
        row.addWidget(QLabel("Run:"))
        row.addWidget(self.run_box, 1)
        row.addWidget(pick)
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(hint)
        layout.addWidget(self.table, 1)
        session.runs_changed.connect(self.set_runs)

    def set_runs(self, runs: list[dict]) -> None:
        current = self.run_box.currentData()
        self.run_box.clear()
        for r in runs:
            self.run_box.addItem(f"{r['name']} ({r['metrics'].get('balanced_accuracy', 0):.3f})", r["dir"])
        i = self.run_box.findData(current)
        if i >= 0:
            self.run_box.setCurrentIndex(i)
        elif current is not None:  # the chosen run was deleted or is no longer complete: say which one is used now
            now = self.run_box.currentText() or "none"
            self.message.emit("warning", f"Predict: the run {os.path.basename(current)} is no longer listed; "
                                         f"now using {now}.")

    def _pick(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Images to classify", "", "Images (*.png *.jpg *.jpeg *.bmp *.gif *.tif *.tiff *.webp);;All files (*)")
        if paths:
            self.predict(paths)

    def predict(self, paths: list[str]) -> None:
        run_dir = self.run_box.currentData()
        if not run_dir:
            self.message.emit("error", "No trained run to predict with: train a model first.")
            return
        if self.thread is not None and self.thread.is_busy():
            self.message.emit("warning", "Still classifying the previous images; try again in a moment.")
            return

        def job(stop):
            yield Finished(predict_paths(run_dir, paths, top_k=3))

        self.thread = GeneratorThread(job, parent=self)
        self.thread.event.connect(self._on_event)
        self.thread.start()

    def _on_event(self, ev) -> None:
        if isinstance(ev, Finished):
            self.model.set_rows(ev.result + self.model.rows)
            self.table.clearSpans()
            for row, r in enumerate(self.model.rows):  # a file that could not be read: its reason spans Top 1-3
                if r.get("error"):
                    self.table.setSpan(row, 1, 1, len(self.model.headers) - 1)
        elif isinstance(ev, Failed):
            self.message.emit("error", ev.message)

    def shutdown(self) -> None:
        if self.thread is not None:
            self.thread.wait(10000)
