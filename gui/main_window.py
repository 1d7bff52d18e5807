"""The main window: toolbar (open, recent, demo, rescan), tabs, log panel.

It owns the :class:`Session` (open dataset, journal, runs) and builds every tab from it; it
hands no state from one view to another."""
from __future__ import annotations

import logging
import os
import time

from PySide6.QtCore import QSettings, Qt, QTimer
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QDockWidget, QFileDialog, QLabel, QMainWindow, QMessageBox, QPlainTextEdit, QProgressBar,
                               QTabWidget, QToolBar, QToolButton, QMenu)

from balancelab.engine.data.demo_dataset import build_demo_dataset
from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.data.imageio import OS_METADATA_NAMES

from balancelab.gui.preferences import byte_array, text_list
from balancelab.gui.views.curation import CurationView
from balancelab.gui.views.dataset import DatasetView
from balancelab.gui.views.predict import PredictView
from balancelab.gui.views.results import ResultsView
from balancelab.gui.views.review import ReviewView
from balancelab.gui.views.train import TrainView
from balancelab.gui.session import Session
from balancelab.gui.worker import GeneratorThread

log = logging.getLogger("balancelab")
MAX_RECENT = 8


class MainWindow(QMainWindow):
    def __init__(self, open_demo_if_empty: bool = True) -> None:
        super().__init__()
        self.setWindowTitle("BalanceLab")
        self.resize(1200, 800)
        self.setAcceptDrops(True)
        self.demo_thread: GeneratorThread | None = None
        self._opens = 0  # datasets opened so far: the demo opens only if none was opened while it was built
        self._opens_at_demo = 0
        self.session = Session(self)

        self.dataset_view = DatasetView(self.session, self)
        self.train_view = TrainView(self.session, self)
        self.results_view = ResultsView(self.session, self)
        self.review_view = ReviewView(self.session, self)
        self.predict_view = PredictView(self.session, self)
        self.curation_view = CurationView(self.session, self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.dataset_view, "Dataset")
        self.tabs.addTab(self.train_view, "Train")
        self.tabs.addTab(self.results_view, "Results")
        self.tabs.addTab(self.review_view, "Review")
        self.tabs.addTab(self.predict_view, "Predict")
        self.tabs.addTab(self.curation_view, "Curation")
        self.setCentralWidget(self.tabs)

        self.log_view = QPlainTextEdit()
        self.log_view.setReadOnly(True)
        self.log_view.setMaximumBlockCount(5000)
        dock = QDockWidget("Log", self)
        dock.setObjectName("logDock")
        dock.setWidget(self.log_view)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, dock)
        self.resizeDocks([dock], [110], Qt.Orientation.Vertical)  # a few lines; the tabs get the height
        self.log_dock = dock

        self.scan_progress = QProgressBar()
        self.scan_progress.setMaximumWidth(220)
        self.scan_progress.setVisible(False)
        self.status_label = QLabel("")
        self.statusBar().addWidget(self.status_label, 1)
        self.statusBar().addPermanentWidget(self.scan_progress)
        self.stale_label = QLabel("Files moved since the scan: Rescan (F5) to see them (a training scans again itself).")
        self.stale_label.setObjectName("warningBadge")
        self.stale_label.setVisible(False)
        self.statusBar().addPermanentWidget(self.stale_label)

        self._build_toolbar()
        for source in (self.session, self.train_view, self.results_view, self.review_view, self.predict_view,
                       self.curation_view):
            source.message.connect(self.notify)
        self.session.scan_started.connect(self._scan_started)
        self.session.scan_progress.connect(self._scan_progress)
        self.session.scan_ended.connect(self._scan_ended)
        self.session.dataset_opened.connect(self._dataset_opened)
        self.session.files_moved.connect(self._files_moved)
        self.session.run_finished.connect(lambda run_dir: self.notify("info", f"run saved in {run_dir}"))
        self.train_view.training_state.connect(self._training_state)
        self.results_view.review_requested.connect(self._review)
        self.session.resume_requested.connect(self._resume)

        settings = QSettings()
        geometry, state = byte_array(settings.value("window/geometry")), byte_array(settings.value("window/state"))
        if geometry is not None:  # the preferences file is untrusted: anything else is ignored
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state)
        last = settings.value("dataset/last")
        if isinstance(last, str) and last and os.path.isdir(last):
            QTimer.singleShot(0, lambda: self.open_dataset(str(last)))
        elif open_demo_if_empty:
            QTimer.singleShot(0, self.open_demo)

    # --- toolbar and recent folders -------------------------------------------------------------

    def _build_toolbar(self) -> None:
        bar = QToolBar("Main")
        bar.setObjectName("mainToolbar")
        bar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        self.addToolBar(bar)
        self.open_action = QAction("Open folder…", self, shortcut=QKeySequence.StandardKey.Open, triggered=self.choose_folder)
        self.demo_action = QAction("Demo dataset", self, triggered=self.open_demo)
        self.rescan_action = QAction("Rescan", self, shortcut=QKeySequence("F5"), triggered=self.rescan)
        self.rescan_action.setEnabled(False)  # until a dataset is open
        self.stop_scan_action = QAction("Stop scan", self, triggered=self.stop_scan)
        self.stop_scan_action.setEnabled(False)
        self.recent_menu = QMenu("Recent", self)
        recent_button = self.recent_button = QToolButton()
        recent_button.setText("Recent")
        recent_button.setMenu(self.recent_menu)
        recent_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        bar.addAction(self.open_action)
        bar.addWidget(recent_button)
        bar.addAction(self.demo_action)
        bar.addAction(self.rescan_action)
        bar.addAction(self.stop_scan_action)
        self._refresh_recent()

    def _recent(self) -> list[str]:
        return text_list(QSettings().value("dataset/recent", []))

    def _remember(self, root: str) -> None:
        recent = [root] + [r for r in self._recent() if r != root]
        s = QSettings()
        s.setValue("dataset/recent", recent[:MAX_RECENT])
        s.setValue("dataset/last", root)
        self._refresh_recent()

    def _refresh_recent(self) -> None:
        self.recent_menu.clear()
        for r in self._recent():
            self.recent_menu.addAction(r, lambda r=r: self.open_dataset(r))
        if not self._recent():
            self.recent_menu.addAction("(none yet)").setEnabled(False)

    # --- messages -------------------------------------------------------------------------------

    def notify(self, level: str, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.log_view.appendPlainText(f"{stamp} {level.upper():7} {text}")
        getattr(log, {"debug": "debug", "info": "info", "warning": "warning"}.get(level, "error"))(text)
        if level == "error":
            self.status_label.setText(text)
            if not os.environ.get("BALANCELAB_NO_DIALOGS"):
                QMessageBox.warning(self, "BalanceLab", text)
        elif level in ("info", "warning"):
            self.status_label.setText(text)

    # --- opening and scanning -------------------------------------------------------------------

    @property
    def root(self) -> str | None:
        return self.session.root

    @property
    def scan_thread(self) -> GeneratorThread | None:
        return self.session.scan_thread

    def choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open an ImageFolder dataset", self.root or os.path.expanduser("~"))
        if folder:
            self.open_dataset(folder)

    def open_demo(self) -> None:
        if self.demo_thread is not None and self.demo_thread.is_busy():
            return
        self.notify("info", "preparing the demo dataset (scikit-learn digits, long-tailed)…")
        self._opens_at_demo = self._opens

        def job(stop):
            yield Finished(str(build_demo_dataset()))

        self.demo_thread = GeneratorThread(job, parent=self)
        self.demo_thread.event.connect(self._demo_event)
        self.demo_thread.start()

    def _demo_event(self, ev) -> None:
        if isinstance(ev, Finished):
            if self._opens != self._opens_at_demo:  # the user opened a dataset meanwhile: it stays
                self.notify("info", f"the demo dataset is ready in {ev.result} (not opened: another dataset was opened meanwhile)")
                return
            self.open_dataset(ev.result)
        elif isinstance(ev, Failed):
            self.notify("error", f"could not build the demo dataset: {ev.message}")

    def open_dataset(self, root: str) -> None:
        if self.train_view.is_training() or self.curation_view.busy():
            self.notify("error", "Stop the running training or curation work before opening another dataset.")
            return
        self._opens += 1
        self.session.open(root)

    def _scan_started(self, root: str) -> None:
        self.scan_progress.setVisible(True)
        self.scan_progress.setRange(0, 0)
        self.stop_scan_action.setEnabled(True)
        self.status_label.setText(f"Scanning {root}…")

    def _scan_progress(self, done: int, total: int) -> None:
        if total:
            self.scan_progress.setRange(0, total)
            self.scan_progress.setValue(done)

    def _scan_ended(self) -> None:
        self.scan_progress.setVisible(False)
        self.stop_scan_action.setEnabled(False)

    def _dataset_opened(self, result) -> None:
        self.rescan_action.setEnabled(not self.train_view.is_training())
        self.stale_label.setVisible(self.session.moved_since_scan())  # moves made while it scanned still count
        self.setWindowTitle(f"BalanceLab — {result.root}")
        self._remember(result.root)

    def rescan(self) -> None:
        self.session.rescan()

    def stop_scan(self) -> None:
        self.session.stop_scan()

    # --- cross-view wiring ----------------------------------------------------------------------

    def _training_state(self, running: bool) -> None:
        for action in (self.open_action, self.demo_action):
            action.setEnabled(not running)
        self.rescan_action.setEnabled(not running and self.session.root is not None)
        self.recent_button.setEnabled(not running)  # another dataset cannot open while one trains

    def _resume(self, run_dir: str) -> None:
        if self.train_view.resume(run_dir):  # the curves of the resumed run; a refusal stays where it was said
            self.tabs.setCurrentWidget(self.train_view)

    def _review(self, run, true_idx, pred_idx) -> None:
        self.review_view.show_images(run, true_idx, pred_idx, self.results_view.tau(), self.results_view.tau_norm_scoring())
        self.tabs.setCurrentWidget(self.review_view)

    def _files_moved(self, _actions) -> None:
        # until the next scan, whatever other messages say; gone again when every move is undone
        self.stale_label.setVisible(self.session.moved_since_scan())

    # --- drag and drop ----------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:
        paths = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        folders = [p for p in paths if os.path.isdir(p)]
        files = [p for p in paths if os.path.isfile(p) and os.path.basename(p).lower() not in OS_METADATA_NAMES]
        if folders:
            self.open_dataset(folders[0])
        elif files:
            self.tabs.setCurrentWidget(self.predict_view)
            self.predict_view.predict(files)

    # --- closing ------------------------------------------------------------------------------------

    def closeEvent(self, event) -> None:
        s = QSettings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop every worker and wait for it: nothing keeps running after the window closes."""
        self.session.stop_scan()
        if self.demo_thread is not None:
            self.demo_thread.request_stop()
        self.train_view.shutdown()
        self.session.shutdown()
        if self.demo_thread is not None:
            self.demo_thread.wait(30000)
        self.curation_view.shutdown()
        self.results_view.shutdown()
        self.review_view.shutdown()
        self.predict_view.shutdown()
        self.dataset_view.shutdown()
