"""Results tab: runs list, headline metrics, confusion matrix, per-class table, recall vs
frequency, post-hoc logit-adjustment slider, side-by-side comparison of two runs."""
from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSlider,
                               QSplitter, QTabWidget, QTableView, QVBoxLayout, QWidget)

from engine.inference import rescore
from engine.paths import runs_dir_for
from engine.runs import RunError, list_runs, read_predictions

from engine.events import Failed, Finished

from .charts import ChartCanvas
from .worker import GeneratorThread
from .dataset_view import make_table, sortable
from .table_models import ComparisonModel, ConfusionMatrixModel, PerClassModel, RunsModel


class LoadedRun:
    """A finished run's metrics and stored predictions (no model needed)."""

    def __init__(self, run: dict) -> None:
        self.dir = run["dir"]
        self.name = run["name"]
        self.config = run["config"]
        self.metrics = run["metrics"]
        self.paths, self.classes, self.y_true, _, self.probs = read_predictions(self.dir)
        self.log_prior = np.asarray(self.metrics.get("log_prior") or np.log(np.full(len(self.classes), 1 / len(self.classes))))
        self.current = self.metrics

    def rescored(self, tau: float) -> dict:
        self.current = self.metrics if tau == 0 else {**self.metrics, **rescore(self.probs, self.y_true, self.classes, self.log_prior, tau)}
        return self.current

    def predicted(self, tau: float) -> np.ndarray:
        from engine.metrics import adjust_probabilities

        return adjust_probabilities(self.probs, self.log_prior, tau)


class ResultsView(QWidget):
    review_requested = Signal(object, object, object)  # LoadedRun, true class index, predicted index or None
    message = Signal(str, str)
    export_done = Signal(object)  # the export's result dict (or None after a failure)

    EXPORTS = {
        "report": ("HTML report…", "HTML report (*.html)", ".html"),
        "torchscript": ("TorchScript…", "TorchScript model (*.pt)", ".torchscript.pt"),
        "onnx": ("ONNX…", "ONNX model (*.onnx)", ".onnx"),
        "dataset": ("Balanced dataset…", None, ""),
    }

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.root: str | None = None
        self.run: LoadedRun | None = None
        self.runs: list[dict] = []

        self.runs_model = RunsModel(self)
        self.runs_proxy = sortable(self.runs_model)
        self.runs_table = make_table(self.runs_proxy)
        self.runs_table.setSortingEnabled(True)
        self.runs_table.sortByColumn(0, Qt.SortOrder.DescendingOrder)  # newest first
        self.runs_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.runs_table.horizontalHeader().setSectionResizeMode(2, QHeaderView.ResizeMode.ResizeToContents)
        self.runs_table.selectionModel().currentRowChanged.connect(self._run_selected)
        self.runs_table.setMaximumHeight(170)

        self.headline = QLabel("No run selected. Train a model, or pick a run above.")
        self.headline.setObjectName("summary")
        self.headline.setWordWrap(True)

        self.cm_model = ConfusionMatrixModel(self)
        self.cm_table = QTableView()
        self.cm_table.setModel(self.cm_model)
        self.cm_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.cm_table.verticalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.cm_table.clicked.connect(self._cell_clicked)
        self.normalize_box = QCheckBox("row-normalised")
        self.normalize_box.toggled.connect(self.cm_model.set_normalized)

        self.per_class_model = PerClassModel(self)
        self.per_class_proxy = sortable(self.per_class_model)
        self.per_class_table = make_table(self.per_class_proxy, sortable_by_user=True)
        self.per_class_table.doubleClicked.connect(self._class_row_clicked)
        self.per_class_table.setToolTip("Double-click a class to review its images.")

        self.recall_chart = ChartCanvas(self, height=2.6)

        self.tau_slider = QSlider(Qt.Orientation.Horizontal)
        self.tau_slider.setRange(0, 20)
        self.tau_slider.valueChanged.connect(self._tau_changed)
        self.tau_label = QLabel("post-hoc logit adjustment τ = 0.0")

        self.compare_box = QComboBox()
        self.compare_box.currentIndexChanged.connect(self._compare_changed)
        self.compare_model = ComparisonModel(self)
        self.compare_table = make_table(self.compare_model)

        cm_box = QWidget()
        cl = QVBoxLayout(cm_box)
        cl.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        row.addWidget(QLabel("Confusion matrix (rows: true, columns: predicted) — click a cell to review those images"))
        row.addStretch(1)
        row.addWidget(self.normalize_box)
        cl.addLayout(row)
        cl.addWidget(self.cm_table)

        right = QTabWidget()
        right.addTab(self.per_class_table, "Per class")
        right.addTab(self.recall_chart, "Recall vs frequency")
        compare = QWidget()
        cpl = QVBoxLayout(compare)
        r2 = QHBoxLayout()
        r2.addWidget(QLabel("Compare with:"))
        r2.addWidget(self.compare_box, 1)
        cpl.addLayout(r2)
        cpl.addWidget(self.compare_table)
        right.addTab(compare, "Compare runs")
        self.right_tabs = right

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(cm_box)
        split.addWidget(right)
        split.setSizes([550, 550])

        tau_row = QHBoxLayout()
        tau_row.addWidget(self.tau_label)
        tau_row.addWidget(self.tau_slider, 1)
        tau_row.addSpacing(20)
        tau_row.addWidget(QLabel("Export:"))
        self.export_thread: GeneratorThread | None = None
        for kind, (label, _, _) in self.EXPORTS.items():
            button = QPushButton(label)
            button.clicked.connect(lambda _=False, kind=kind: self._choose_export(kind))
            tau_row.addWidget(button)

        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Runs of this dataset:"))
        layout.addWidget(self.runs_table)
        layout.addWidget(self.headline)
        layout.addLayout(tau_row)
        layout.addWidget(split, 1)

    def set_dataset(self, root: str) -> None:
        self.root = root
        self.refresh()

    def refresh(self, select_dir: str | None = None) -> None:
        if self.root is None:
            return
        self.runs = list_runs(str(runs_dir_for(self.root)))
        self.runs_model.set_rows(self.runs)
        self.compare_box.blockSignals(True)
        self.compare_box.clear()
        self.compare_box.addItem("(choose a run)", None)
        for r in self.runs:
            self.compare_box.addItem(f"{r['name']}  ({r['metrics'].get('balanced_accuracy', 0):.4f})", r["dir"])
        self.compare_box.blockSignals(False)
        target = select_dir or (self.run.dir if self.run else None) or (self.runs[0]["dir"] if self.runs else None)
        for i, r in enumerate(self.runs):
            if r["dir"] == target:
                self.runs_table.selectRow(self.runs_proxy.mapFromSource(self.runs_model.index(i, 0)).row())
                break
        if not self.runs:
            self.run = None
            self.cm_model.set_matrix([], np.zeros((0, 0)))
            self.per_class_model.set_rows([])
            self.headline.setText("No finished run for this dataset yet. Train one in the Train tab.")
            self.recall_chart.empty_message("no run")

    def _run_selected(self, current, _prev) -> None:
        if not current.isValid():
            return
        run = self.runs_model.rows[self.runs_proxy.mapToSource(current).row()]
        try:
            self.run = LoadedRun(run)
        except (RunError, KeyError, ValueError, OSError) as exc:
            self.message.emit("error", f"cannot read run {run['name']}: {exc}")
            return
        self.tau_slider.blockSignals(True)
        self.tau_slider.setValue(0)
        self.tau_slider.blockSignals(False)
        self._show(self.run.rescored(0.0))
        self._compare_changed()

    def tau(self) -> float:
        return self.tau_slider.value() / 10.0

    def _tau_changed(self) -> None:
        self.tau_label.setText(f"post-hoc logit adjustment τ = {self.tau():.1f}")
        if self.run is not None:
            self._show(self.run.rescored(self.tau()))
            self._compare_changed()

    def _show(self, m: dict) -> None:
        run = self.run
        self.headline.setText(
            f"<b>{run.name}</b> — {run.config.get('model')} / {run.config.get('strategy')}, evaluated on "
            f"<b>{m.get('evaluated_on')}</b> ({m.get('n_evaluated', 0)} images): accuracy <b>{m['accuracy']:.4f}</b>, "
            f"balanced accuracy <b>{m['balanced_accuracy']:.4f}</b>, macro-F1 <b>{m['macro_f1']:.4f}</b>, "
            f"G-mean <b>{m['geometric_mean']:.4f}</b>" + (f" — with τ={self.tau():.1f}" if self.tau() else ""))
        self.cm_model.set_matrix(m["classes"], m["confusion_matrix"])
        self.per_class_model.set_metrics(m["per_class"], run.metrics.get("train_counts"))
        counts = run.metrics.get("train_counts") or []
        self.recall_chart.plot(lambda: self._draw_recall(m, counts))

    def _draw_recall(self, m: dict, counts: list[int]) -> None:
        ax = self.recall_chart.ax
        recalls = [c["recall"] for c in m["per_class"]]
        if counts and len(counts) == len(recalls):
            ax.scatter(counts, recalls, color="#3b6fb6")
            for name, x, y in zip(m["classes"], counts, recalls):
                ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
            if min(counts) > 0:
                ax.set_xscale("log")
            ax.set_xlabel("training images of the class")
        ax.set_ylabel("recall")
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
        ax.set_title("Per-class recall vs class frequency", fontsize=9)

    def _compare_changed(self) -> None:
        other_dir = self.compare_box.currentData()
        if self.run is None or not other_dir:
            self.compare_model.set_rows([])
            return
        other = next((r for r in self.runs if r["dir"] == other_dir), None)
        if other is None:
            return
        try:
            b = LoadedRun(other).rescored(self.tau())
        except (RunError, KeyError, ValueError, OSError) as exc:
            self.message.emit("error", f"cannot read run {other['name']}: {exc}")
            return
        self.compare_model.compare(self.run.current, b)
        self.compare_model.headers = ["Metric", f"A: {self.run.name}", f"B: {other['name']}", "B - A"]
        self.compare_model.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, 3)

    def _choose_export(self, kind: str) -> None:
        if self.run is None:
            self.message.emit("error", "Select a run to export.")
            return
        label, file_filter, suffix = self.EXPORTS[kind]
        if file_filter is None:
            out = QFileDialog.getExistingDirectory(self, "Empty folder for the balanced dataset")
        else:
            out, _ = QFileDialog.getSaveFileName(self, label.rstrip("…"), os.path.join(self.run.dir, self.run.name + suffix), file_filter)
        if out:
            self.export_run(kind, out)

    def export_run(self, kind: str, out: str) -> None:
        """Export the selected run on a worker thread (``export_done`` carries the result)."""
        from engine.export import export_balanced_dataset, export_onnx, export_torchscript
        from engine.report import write_report

        if self.export_thread is not None and self.export_thread.isRunning():
            self.message.emit("warning", "An export is still running.")
            return
        run_dir, root = self.run.dir, self.root
        jobs = {
            "report": lambda: {"path": write_report(run_dir, out, root)},
            "torchscript": lambda: export_torchscript(run_dir, out, root),
            "onnx": lambda: export_onnx(run_dir, out, root),
            "dataset": lambda: export_balanced_dataset(run_dir, root, out),
        }

        def job(stop):
            try:
                yield Finished(jobs[kind]())
            except Exception as exc:  # noqa: BLE001 - shown to the user, details in the log
                yield Failed(f"export failed: {exc}")

        self.export_thread = GeneratorThread(job, parent=self)
        self.export_thread.event.connect(self._export_event)
        self.export_thread.start()

    def _export_event(self, ev) -> None:
        if isinstance(ev, Finished):
            info = ev.result
            check = (f" — reloaded and checked on {info['images_checked']} images: same top-1 {info['same_top1']}, "
                     f"max probability difference {info['max_abs_prob_diff']:.2e}") if "same_top1" in info else ""
            self.message.emit("info", f"exported {info['path']}{check}")
            self.export_done.emit(info)
        elif isinstance(ev, Failed):
            self.message.emit("error", ev.message)
            self.export_done.emit(None)

    def shutdown(self) -> None:
        if self.export_thread is not None:
            self.export_thread.wait(120000)

    def _cell_clicked(self, index) -> None:
        if self.run is not None and index.isValid():
            self.review_requested.emit(self.run, index.row(), index.column())

    def _class_row_clicked(self, index) -> None:
        if self.run is not None and index.isValid():
            self.review_requested.emit(self.run, self.per_class_proxy.mapToSource(index).row(), None)
