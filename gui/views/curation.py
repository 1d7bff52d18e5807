"""Curation tab: duplicate groups (exact / near, leakage), the label-issue review queue, and
one-click strategy comparison. Each page lives in its own module (curation_duplicates.py,
curation_label_issues.py, curation_compare.py); this one holds the tab and the one worker that runs
their long work. File actions go through the dataset's journal (undoable)."""
from __future__ import annotations

from PySide6.QtCore import Signal
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QProgressBar, QPushButton, QTabWidget, QVBoxLayout, QWidget

from balancelab.engine.core.eta import RunsEta, clock_text
from balancelab.engine.core.events import RunStep
from balancelab.engine.train.run_events import BatchProgress
from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.train.models import SMALL_NETS
from balancelab.engine.core.paths import new_run_dir

from balancelab.gui.views.curation_compare import ComparePanel
from balancelab.gui.views.curation_duplicates import DuplicatesPanel
from balancelab.gui.views.curation_embeddings import EmbeddingsPanel
from balancelab.gui.views.curation_label_issues import LabelIssuesPanel
from balancelab.gui.widgets.thumbnails import ThumbnailLoader
from balancelab.gui.worker import GeneratorThread


class CurationView(DuplicatesPanel, LabelIssuesPanel, ComparePanel, EmbeddingsPanel, QWidget):
    message = Signal(str, str)
    work_done = Signal()  # the worker thread ended, after its result (or failure) was shown

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.result = None
        self.thread: GeneratorThread | None = None
        self._job_root: str | None = None  # the dataset the running job works on
        self._runs_root: str | None = None  # the dataset whose runs the pickers list
        self.loader = ThumbnailLoader(96, parent=self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._duplicates_page(), "Duplicates && leakage")
        self.tabs.addTab(self._issues_page(), "Label issues")
        self.tabs.addTab(self._compare_page(), "Compare strategies")
        self.tabs.addTab(self._embeddings_page(), "Outliers && coverage")
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.work_bar = QWidget()  # shown only while work runs: no idle, disabled Stop under every page
        bottom = QHBoxLayout(self.work_bar)
        bottom.setContentsMargins(0, 0, 0, 0)
        bottom.addWidget(self.progress, 1)
        bottom.addWidget(self.stop_button)
        self.work_bar.setVisible(False)
        layout = QVBoxLayout(self)
        layout.addWidget(self.tabs, 1)
        layout.addWidget(self.work_bar)
        session.dataset_opened.connect(self.set_result)
        session.runs_changed.connect(self.set_runs)
        session.files_moved.connect(self._files_moved)
        self.set_runs(getattr(session, "runs", []) or [])

    # --- pages ------------------------------------------------------------------------------------

    def _small_model_box(self) -> QComboBox:
        box = QComboBox()
        for name in SMALL_NETS:
            box.addItem(name, name)
        box.setCurrentIndex(box.findData("tiny-2conv"))
        return box

    def _run_box(self) -> QComboBox:
        """A picker of this dataset's finished runs (filled by set_runs from the session)."""
        box = QComboBox()
        box.setMinimumContentsLength(24)
        box.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        box.setToolTip("a finished run of this dataset: its best checkpoint's penultimate-layer embeddings are used")
        return box

    # --- running work ------------------------------------------------------------------------------

    def set_result(self, result) -> None:
        if self.busy() and self._job_root != result.root:
            self.stop()  # its results would be of the dataset no longer open
        self.result = result
        self._reset_duplicates()
        self._reset_label_issues()
        self._reset_compare()
        self._reset_embeddings()

    def _files_moved(self, actions: list) -> None:
        """Files moved anywhere (this tab, Review, undo): rows naming their old places go stale."""
        gone = {a.src if a.state == "done" else a.dst for a in actions}  # an undo empties the place it moved from
        self._drop_moved_group_images(gone)
        if any(row[1].path in gone for row in self.outliers_model.rows):
            self.outliers_model.set_rows([row for row in self.outliers_model.rows if row[1].path not in gone])
        if any(r["path"] in gone for r in self.issues_model.rows):
            self.all_issues = [r for r in getattr(self, "all_issues", []) if r["path"] not in gone]
            self.issues_model.set_rows([r for r in self.issues_model.rows if r["path"] not in gone])
        if gone and self.last_probs:  # the fold probabilities name the file where it was: not re-ranked again
            self.last_probs = None
            self.issue_reuse.setChecked(False)
            self.issue_reuse.setEnabled(False)

    def busy(self) -> bool:
        return self.thread is not None and self.thread.is_busy()

    def _start(self, factory, on_finished) -> None:
        if self.result is None:
            self.message.emit("error", "Open a dataset first.")
            return
        if self.busy():
            self.message.emit("error", "Curation work is already running; stop it first.")
            return
        self._on_finished = on_finished
        self._job_root = self.result.root
        self._eta = RunsEta()
        self.thread = GeneratorThread(factory, throttle=(Progress, RunStep), interval=0.1, parent=self)
        self.thread.event.connect(self._on_event)
        self.thread.finished.connect(self._done)
        self.progress.setVisible(True)
        self.progress.setRange(0, 0)
        self.work_bar.setVisible(True)
        self.thread.start()

    def stop(self) -> None:
        if self.busy():
            self.thread.request_stop()

    def _done(self) -> None:
        self.work_bar.setVisible(False)
        self.work_done.emit()  # only now is busy() false, so the next job can start

    def _on_event(self, ev) -> None:
        inner = ev.event if isinstance(ev, RunStep) else ev
        run = ""
        if isinstance(ev, RunStep):
            self._eta.begin()
            if isinstance(inner, Finished):
                self._eta.run_finished(ev.index)
            left = self._eta.left(ev.total)
            run = f" — {ev.label} (run {ev.index + 1}/{ev.total}" + (
                f", about {clock_text(left)} left)" if left is not None else ")")
        if isinstance(inner, Progress) and inner.total:
            self.progress.setRange(0, inner.total)
            self.progress.setValue(inner.done)
            self.progress.setFormat(f"{inner.phase} %p%{run}")
        elif isinstance(inner, BatchProgress):  # per-epoch progress inside each run (fold or strategy x seed)
            self.progress.setRange(0, inner.batches)
            self.progress.setValue(inner.batch)
            self.progress.setFormat(f"epoch {inner.epoch}, batch %v/%m{run}")
        if isinstance(ev, Failed):
            self.message.emit("error", ev.message)
            if ev.detail:
                self.message.emit("debug", ev.detail)
        elif isinstance(ev, Finished) and ev.result is not None:
            if self.result is None or self.result.root != self._job_root:
                self.message.emit("info", "Curation: the finished job was for the dataset opened before; "
                                          "its results are not shown")
                return
            self._on_finished(ev.result)

    def _out_dir(self, kind: str) -> str:
        return str(new_run_dir(self.result.root, kind))

    def shutdown(self) -> None:
        if self.thread is not None:
            self.thread.request_stop()
            self.thread.wait(60000)
        self.loader.shutdown()
