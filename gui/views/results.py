"""Results tab: runs list, headline metrics, confusion matrix, per-class table, recall vs
frequency, post-hoc logit-adjustment slider, side-by-side comparison of two runs."""
from __future__ import annotations

import html
import os

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QComboBox, QFileDialog, QHBoxLayout, QHeaderView, QLabel,
                               QMenu, QPushButton, QSplitter, QTabWidget, QTableView, QToolButton, QVBoxLayout,
                               QWidget)

from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.core.metrics import HEADLINE
from balancelab.engine.results.export import EXPORTS, export_steps
from balancelab.engine.results.loaded_run import LoadedRun, load_run
from balancelab.engine.train.run_folder import RunError

from balancelab.gui.widgets.run_labels import run_choice_label
from balancelab.gui.views.results_ensemble import EnsembleAction
from balancelab.gui.widgets.charts import ChartCanvas
from balancelab.gui.widgets.posthoc_tau_control import PosthocTauControl
from balancelab.gui.widgets.tau_norm_control import TauNormControl
from balancelab.gui.worker import GeneratorThread, LatestLoader
from balancelab.gui.widgets.tables import make_table, sortable
from balancelab.gui.widgets.table_models import (ComparisonModel, ConfusionMatrixModel, PerClassModel, RunsModel,
                                                model_and_strategy)

NO_BREAK_HYPHEN = "\u2011"  # "G-mean" and "macro-F1" never break across lines in the headline


class ResultsView(QWidget):
    review_requested = Signal(object, object, object)  # LoadedRun, true class index, predicted index or None
    message = Signal(str, str)
    export_done = Signal(object)  # the export's result dict (or None after a failure)
    run_shown = Signal()  # a run's results are on screen (loaded on a worker thread)

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.run: LoadedRun | None = None
        self._select_dir: str | None = None  # the run to show when the list next arrives
        self.runs: list[dict] = []
        self.other: LoadedRun | None = None  # the run compared with, kept to re-score it as tau moves
        self._loader = LatestLoader(errors=(RunError, OSError), parent=self)

        self.runs_model = RunsModel(self)
        self.runs_proxy = sortable(self.runs_model)
        # list_runs' order (newest first, by the run's time) until the user clicks a header: a run's
        # folder name is no clock (a label can sort an old run above a new one)
        self.runs_table = make_table(self.runs_proxy, stretch_last=False, sortable_by_user=True)
        header = self.runs_table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)  # model (ensembles), strategy, metrics
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)  # the run name takes what is left ...
        self.runs_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # ... cut in the middle (full name: tooltip)
        self.runs_table.setWordWrap(False)
        self.runs_table.selectionModel().currentRowChanged.connect(self._run_selected)
        self.runs_table.setMaximumHeight(130)
        self.runs_table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)  # several: Ensemble
        self.ensemble = EnsembleAction(session, self.selected_run_dirs, self)
        self.ensemble.message.connect(self.message)
        self.runs_table.selectionModel().selectionChanged.connect(
            lambda *_: self.ensemble.selection_changed(len(self.selected_run_dirs())))

        self.headline = QLabel("No run selected. Train a model, or pick a run above.")
        self.headline.setObjectName("summary")
        self.headline.setWordWrap(True)

        self.cm_model = ConfusionMatrixModel(self)
        self.cm_table = QTableView()
        self.cm_table.setModel(self.cm_model)
        for header in (self.cm_table.horizontalHeader(), self.cm_table.verticalHeader()):
            header.setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # the matrix fills its pane
        # many classes: scroll rather than squash below legibility. A row needs only a line of text (20 px,
        # the other tables' rows are 22): 10 classes fit the pane at 1280x800 with a two-line headline
        self.cm_table.horizontalHeader().setMinimumSectionSize(30)
        self.cm_table.verticalHeader().setMinimumSectionSize(20)
        self.cm_table.clicked.connect(self._cell_clicked)
        self.normalize_box = QCheckBox("row-normalised")
        self.normalize_box.toggled.connect(self.cm_model.set_normalized)

        self.per_class_model = PerClassModel(self)
        self.per_class_proxy = sortable(self.per_class_model)
        self.per_class_table = make_table(self.per_class_proxy, sortable_by_user=True)
        self.per_class_table.doubleClicked.connect(self._class_row_clicked)
        self.per_class_table.setToolTip("Double-click a class to review its images.")
        self.per_class_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.per_class_table.horizontalHeader().setStretchLastSection(True)  # every column visible at 1280 px

        self.recall_chart = ChartCanvas(self, height=2.6)

        self.posthoc = PosthocTauControl()
        self.posthoc.changed.connect(self._tau_changed)
        self.posthoc.no_run()  # until a run is shown
        self.tau_slider, self.tau_label = self.posthoc.slider, self.posthoc.label

        self.compare_box = QComboBox()
        self.compare_box.currentIndexChanged.connect(self._compare_changed)
        self.compare_model = ComparisonModel(self)
        self.compare_table = make_table(self.compare_model, stretch_last=False,
                                        empty="Choose a run in 'Compare with' to see its metrics beside this one's.")
        header = self.compare_table.horizontalHeader()
        header.setTextElideMode(Qt.TextElideMode.ElideMiddle)  # run names: the date and the strategy both show
        for col, mode in enumerate((QHeaderView.ResizeMode.ResizeToContents, QHeaderView.ResizeMode.Stretch,
                                    QHeaderView.ResizeMode.Stretch, QHeaderView.ResizeMode.ResizeToContents)):
            header.setSectionResizeMode(col, mode)  # the two runs share the width; full names in the tooltips

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
        tau_row.addWidget(self.posthoc, 1)
        self.tau_norm = TauNormControl()
        self.tau_norm.rescored.connect(self._tau_norm_rescored)
        self.tau_norm.failed.connect(lambda why: self.message.emit("error", f"classifier τ-norm: {why}"))
        tau_row.addSpacing(12)
        tau_row.addWidget(self.tau_norm, 1)
        tau_row.addSpacing(20)
        tau_row.addWidget(QLabel("Export:"))
        self.export_thread: GeneratorThread | None = None
        self.export_buttons: dict[str, QPushButton] = {}
        for kind in EXPORTS.values():  # one button per registered export kind
            button = self.export_buttons[kind.name] = QPushButton(f"{kind.label or kind.name}…")
            button.setEnabled(False)  # until a run is shown
            button.setToolTip(kind.help)
            button.clicked.connect(lambda _=False, kind=kind.name: self._choose_export(kind))
            tau_row.addWidget(button)

        layout = QVBoxLayout(self)
        runs_row = QHBoxLayout()
        runs_row.addWidget(QLabel("Runs of this dataset:"))
        # runs that list_runs leaves out (interrupted, failed, damaged) are named, not silently missing
        self.incomplete_note = QLabel()
        self.incomplete_note.setVisible(False)
        runs_row.addWidget(self.incomplete_note)
        self.resume_button = QToolButton()  # interrupted runs that saved their settings go on in the Train tab
        self.resume_button.setText("Resume…")
        self.resume_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.resume_button.setMenu(QMenu(self.resume_button))
        self.resume_button.setVisible(False)
        runs_row.addWidget(self.resume_button)
        runs_row.addStretch(1)
        runs_row.addWidget(self.ensemble.widget)
        layout.addLayout(runs_row)
        layout.addWidget(self.runs_table)
        layout.addWidget(self.headline)
        layout.addLayout(tau_row)
        layout.addWidget(split, 1)
        session.dataset_opened.connect(self._dataset_opened)
        session.run_finished.connect(self._run_finished)
        session.runs_changed.connect(self._runs_listed)

    @property
    def root(self) -> str | None:
        return self.session.root

    def _dataset_opened(self, result) -> None:
        if self.run is not None and os.path.dirname(self.run.dir) != self.session.runs_dir():
            self._select_dir = None
            self._clear_run()

    def _run_finished(self, run_dir: str) -> None:
        self._select_dir = run_dir

    def refresh(self, select_dir: str | None = None) -> None:
        """Re-list the runs (the session reads them on a worker) and then show ``select_dir``
        (or the run shown now, or the newest)."""
        if select_dir:
            self._select_dir = select_dir
        self.session.refresh_runs()

    def _load(self, kind: str, fn, on_result, on_failed=None) -> None:
        """Run ``fn`` on a worker; ``on_result`` gets its value unless a newer load of the same kind
        ("run": the run shown, "compare": the run compared with) was asked for meanwhile."""
        self._loader.load(kind, fn, on_result, on_failed or (lambda message: self.message.emit("error", message)))

    def _load_run(self, run: dict) -> None:
        self._load("run", lambda: load_run(run), self._set_run, lambda message: self._run_failed(run, message))

    def _run_failed(self, run: dict, message: str) -> None:
        """The selected run cannot be shown: show nothing rather than the previous run under its
        row (an export or a Review click would use the previous run's data)."""
        self._clear_run()
        self.headline.setText(f"<b>{html.escape(run['name'])}</b> cannot be shown: {html.escape(message)}")
        self.message.emit("error", f"run {run['name']} cannot be shown: {message}")

    def loading(self) -> bool:
        return self.session.loading_runs() or self._loader.busy()

    def _runs_listed(self, runs: list[dict]) -> None:
        """The session re-listed the runs: fill the table and show the run to select, loaded on a worker
        (a finished run's predictions.csv can hold tens of thousands of rows)."""
        self.runs = runs
        self.runs_model.set_rows(runs)
        self._show_incomplete(self.session.incomplete_runs)
        self.compare_box.blockSignals(True)
        self.compare_box.clear()
        self.compare_box.addItem("(choose a run)", None)
        for r in runs:
            self.compare_box.addItem(run_choice_label(r), r["dir"])
        self.compare_box.blockSignals(False)
        wanted = self._select_dir or (self.run.dir if self.run else None)
        self._select_dir = None
        target = next((r for r in runs if r["dir"] == wanted), runs[0] if runs else None)
        if target is not None:
            self._select_row(target["dir"])
            self._load_run(target)
        else:
            self._clear_run()

    def _show_incomplete(self, incomplete: list[tuple[str, str]]) -> None:
        n = len(incomplete)
        self.incomplete_note.setVisible(n > 0)
        if n:
            self.incomplete_note.setText(f"<span style='color:#b06000'>{n} incomplete run{'s' if n > 1 else ''} "
                                         f"not listed (hover for why)</span>")
            self.incomplete_note.setToolTip("<br>".join(html.escape(why) for _, why in incomplete[:20])
                                            + ("<br>…" if n > 20 else ""))
        menu = self.resume_button.menu()
        menu.clear()
        for folder in self.session.resumable_runs:
            action = menu.addAction(f"Resume {os.path.basename(folder)}")
            action.setToolTip(folder)
            action.triggered.connect(lambda _=False, folder=folder: self.session.request_resume(folder))
        self.resume_button.setVisible(bool(self.session.resumable_runs))
        self.resume_button.setToolTip("Continue an interrupted run from its last saved epoch, with the settings "
                                      "it was started with (in the Train tab)")

    def _select_row(self, run_dir: str) -> None:
        for i, r in enumerate(self.runs):
            if r["dir"] == run_dir:
                blocker = self.runs_table.selectionModel().blockSignals(True)
                self.runs_table.selectRow(self.runs_proxy.mapFromSource(self.runs_model.index(i, 0)).row())
                self.runs_table.selectionModel().blockSignals(blocker)
                return

    def _clear_run(self) -> None:
        runs = self.runs
        self.run = None
        self.tau_norm.set_run(None, None)
        self.posthoc.no_run()
        for button in self.export_buttons.values():
            button.setEnabled(False)
        self.cm_model.set_matrix([], np.zeros((0, 0)))
        self.per_class_model.set_rows([])
        self.compare_model.clear()
        self.headline.setText("Select a run above." if runs else
                              "No finished run for this dataset yet. Train one in the Train tab.")
        self.recall_chart.empty_message("no run selected" if runs else "no run")

    def _run_selected(self, current, _prev) -> None:
        if not current.isValid():
            return
        run = self.runs_model.rows[self.runs_proxy.mapToSource(current).row()]
        if self.run is None or run["dir"] != self.run.dir:
            self._load_run(run)

    def _set_run(self, loaded: LoadedRun) -> None:
        self.run = loaded
        self.posthoc.reset()
        for button in self.export_buttons.values():
            button.setEnabled(True)
        self._explain_tau(loaded)
        self.tau_norm.set_run(loaded.dir, self.session.root,
                              "An ensemble averages several networks' probabilities: it has no single classifier "
                              "layer to τ-normalise." if isinstance(loaded.metrics.get("ensemble"), dict) else "")
        self._show(loaded.rescored(0.0))
        self._compare_changed()
        self.run_shown.emit()

    def _explain_tau(self, run: LoadedRun) -> None:
        self.posthoc.explain(run.log_prior, str(run.config.get("strategy", "")), run.metrics.get("evaluated_on"))

    def tau(self) -> float:
        return self.posthoc.tau()

    def tau_norm_scoring(self) -> tuple[float, object] | None:
        """(strength, scorer) while the shown figures are τ-normalised, else None."""
        control = self.tau_norm
        return (control.tau(), control.scorer) if control.active() else None

    def _tau_changed(self) -> None:
        if self.tau():
            self.tau_norm.reset_tau()  # one post-hoc correction at a time
        if self.run is not None:
            self._show(self.run.rescored(self.tau()))
            self._compare_changed()

    def _tau_norm_rescored(self, m: dict | None) -> None:
        """τ-normalised weights re-score the evaluated split; shown alone (logit adjustment back to 0)."""
        if self.run is not None:
            self.tau_slider.setValue(0)
            self._show({**self.run.metrics, **m} if m else self.run.rescored(0.0))

    def _show(self, m: dict) -> None:
        run = self.run
        model, strategy = model_and_strategy(run.metrics, run.config)
        e = html.escape  # every string here comes from files in the run folder (or its name)
        self.headline.setText(
            f"<b>{e(run.name)}</b> — {e(model)} / {e(strategy)}, evaluated on "
            f"<b>{e(str(m.get('evaluated_on')))}</b> ({e(str(m.get('n_evaluated', 0)))} images): "
            + ", ".join(f"{metric.name.replace('-', NO_BREAK_HYPHEN)} <b>{metric.format(m.get(key))}</b>"
                        for key, metric in HEADLINE.items())
            + (f" — with τ={self.tau():.1f}" if self.tau() else "")
            + (f" — classifier τ-norm {self.tau_norm.tau():.1f}: the {e(str(m.get('evaluated_on')))} split as it is "
               "now, re-scored; a τ chosen by these figures is tuned on them, so they flatter it"
               if self.tau_norm.active() else ""))
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
            self.compare_model.clear()
            return
        if self.other is not None and self.other.dir == other_dir:
            self._show_comparison(self.other)  # already loaded: only re-score (the tau slider moved)
            return
        other = next((r for r in self.runs if r["dir"] == other_dir), None)
        if other is not None:
            self._load("compare", lambda: load_run(other), self._show_comparison)

    def _show_comparison(self, other: LoadedRun) -> None:
        self.other = other
        if self.run is None:
            return
        self.compare_model.compare(self.run.current, other.rescored(self.tau()))
        self.compare_model.headers = ["Metric", f"A: {self.run.name}", f"B: {other.name}", "B - A"]
        self.compare_model.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, 3)

    def _choose_export(self, kind: str) -> None:
        if self.run is None:
            self.message.emit("error", "Select a run to export.")
            return
        spec = EXPORTS[kind]
        if spec.target == "folder":
            out = QFileDialog.getExistingDirectory(self, f"New or empty folder for: {spec.help}")
        else:
            out, _ = QFileDialog.getSaveFileName(self, spec.label or spec.name, os.path.join(self.run.dir, self.run.name + spec.suffix),
                                                 spec.file_filter, "",
                                                 QFileDialog.Option.DontConfirmOverwrite)  # exports never overwrite
        if out:
            self.export_run(kind, out)

    def export_run(self, kind: str, out: str) -> None:
        """Export the selected run on a worker thread (``export_done`` carries the result)."""
        if self.export_thread is not None and self.export_thread.is_busy():
            self.message.emit("warning", "An export is still running.")
            return
        run_dir, root = self.run.dir, self.root
        self.export_thread = GeneratorThread(lambda stop: export_steps(kind, run_dir, out, root, stop),
                                             throttle=(Progress,), parent=self)
        self.export_thread.event.connect(lambda ev: self._export_event(ev, kind))
        self.export_thread.start()

    def _export_event(self, ev, kind: str) -> None:
        button, spec = self.export_buttons[kind], EXPORTS[kind]
        if isinstance(ev, Progress):  # a dataset export links or copies thousands of files
            button.setText(f"{spec.label or spec.name} {100 * ev.done // max(1, ev.total)} %…" if ev.total else
                           f"{spec.label or spec.name}…")
            return
        button.setText(f"{spec.label or spec.name}…")
        if isinstance(ev, Finished) and ev.result is None:
            self.message.emit("info", "export stopped; nothing of it was left")
            self.export_done.emit(None)
        elif isinstance(ev, Finished):
            info = ev.result
            check = (f" — reloaded and checked on {info['images_checked']} images: "
                     + ("the same top-1 class for every image" if info["same_top1"] else
                        "the top-1 class DIFFERS for some images")
                     + f", largest probability difference {info['max_abs_prob_diff']:.2e}") if "same_top1" in info else ""
            warnings = "; ".join(info.get("warnings", []))
            if warnings:
                self.message.emit("warning", f"exported {info['path']}, but {warnings}")
            else:
                self.message.emit("info", f"exported {info['path']}{check}")
            self.export_done.emit(info)
        elif isinstance(ev, Failed):
            self.message.emit("error", f"export failed: {ev.message}")
            self.export_done.emit(None)

    def selected_run_dirs(self) -> list[str]:
        """The run folders selected in the runs table, in table order."""
        rows = sorted(self.runs_proxy.mapToSource(i).row() for i in self.runs_table.selectionModel().selectedRows())
        return [self.runs_model.rows[r]["dir"] for r in rows]

    def shutdown(self) -> None:
        self.tau_norm.stop()
        self.ensemble.shutdown()
        self._loader.shutdown()
        if self.export_thread is not None:  # a stopped export removes what it wrote
            self.export_thread.request_stop()
            self.export_thread.wait(120000)

    def _cell_clicked(self, index) -> None:
        if self.run is not None and index.isValid():
            self.review_requested.emit(self.run, index.row(), index.column())

    def _class_row_clicked(self, index) -> None:
        if self.run is not None and index.isValid():
            self.review_requested.emit(self.run, self.per_class_proxy.mapToSource(index).row(), None)
