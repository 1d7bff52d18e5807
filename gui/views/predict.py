"""Predict tab: drop images (or pick files) and see the top-k classes of the chosen run."""
from __future__ import annotations

import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QComboBox, QFileDialog, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.results.inference import predict_paths

from balancelab.gui.widgets.run_labels import run_choice_label
from balancelab.gui.widgets.tables import make_table
from balancelab.gui.widgets.table_models import BaseTableModel
from balancelab.gui.worker import GeneratorThread


class PredictionsModel(BaseTableModel):
    """One row per classified image, naming the run that classified it (the picker may change)."""
    headers = ["Image", "Run", "Top 1", "Top 2", "Top 3"]

    def cell(self, index, role):
        r = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            if col < 2:
                return r["path"] if col == 0 else r.get("run", "")
            if r.get("error"):
                return r["error"] if col == 2 else ""
            top = r["top"]
            k = col - 2
            return f"{top[k]['class']}  {top[k]['probability']:.3f}" if k < len(top) else ""
        return None


class PredictView(QWidget):
    message = Signal(str, str)

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.thread: GeneratorThread | None = None
        self._runs_root: str | None = None  # the dataset whose runs the picker lists
        self._job_root: str | None = None  # the dataset open when the running classification started
        self._picked: str | None = None  # the run the user chose in the picker (else the newest is used)
        self.run_box = QComboBox()
        self.run_box.activated.connect(lambda _i: setattr(self, "_picked", self.run_box.currentData()))
        self.run_box.setPlaceholderText("no finished run of this dataset: train one first")
        pick = QPushButton("Add images…")
        pick.clicked.connect(self._pick)
        self.model = PredictionsModel(self)
        self.table = make_table(self.model)
        self.table.setColumnWidth(0, 420)
        self.table.setColumnWidth(1, 300)  # a run's name: its timestamp, model and strategy
        self.table.setTextElideMode(Qt.TextElideMode.ElideLeft)  # a long path keeps its folder and file name
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
        session.dataset_opened.connect(self._dataset_opened)

    def _dataset_opened(self, result) -> None:
        """Another dataset: the images classified by the last one's runs go with it."""
        if self._runs_root is not None and result.root != self._runs_root:
            self.model.set_rows([])
            self.table.clearSpans()

    def set_runs(self, runs: list[dict]) -> None:
        """Runs newest first: the newest is used unless the user picked one (which stays while listed)."""
        same_dataset, self._runs_root = self._runs_root == self.session.root, self.session.root
        current = self.run_box.currentData() if same_dataset else None
        picked = self._picked if same_dataset else None
        self.run_box.blockSignals(True)
        self.run_box.clear()
        for r in runs:
            self.run_box.addItem(run_choice_label(r), r["dir"])
        i = self.run_box.findData(picked) if picked is not None else -1
        self.run_box.setCurrentIndex(i if i >= 0 else min(0, self.run_box.count() - 1))  # the newest, or none
        self.run_box.blockSignals(False)
        if i < 0:
            self._picked = None
        if current is not None and self.run_box.findData(current) < 0:  # the run in use was deleted or is no longer complete: say which one is used now
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

        run_name, self._job_root = os.path.basename(run_dir), self.session.root

        def job(stop):
            yield Finished([{**row, "run": run_name} for row in predict_paths(run_dir, paths, top_k=3)])

        self.thread = GeneratorThread(job, parent=self)
        self.thread.event.connect(self._on_event)
        self.thread.start()

    def _on_event(self, ev) -> None:
        if isinstance(ev, Finished) and self._job_root != self.session.root:
            return  # classified by a run of the dataset open before: its table was cleared
        if isinstance(ev, Finished):
            self.model.set_rows(ev.result + self.model.rows)
            self.table.clearSpans()
            for row, r in enumerate(self.model.rows):  # a file that could not be read: its reason spans Top 1-3
                if r.get("error"):
                    self.table.setSpan(row, 2, 1, len(self.model.headers) - 2)
        elif isinstance(ev, Failed):
            self.message.emit("error", ev.message)

    def shutdown(self) -> None:
        if self.thread is not None:
            self.thread.wait(10000)
