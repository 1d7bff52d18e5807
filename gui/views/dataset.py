"""Dataset tab: class table, distribution chart, problems list, lazy thumbnail grid.

The tab fills from the scan's first look (headers only, seconds even for large photo folders);
the deep check then shows its own progress bar and adds the problems it finds as it goes.
"""
from __future__ import annotations

import html
import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QDesktopServices, QPixmap
from PySide6.QtCore import QUrl
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QHeaderView, QLabel, QProgressBar, QPushButton,
                               QSplitter, QTabWidget, QVBoxLayout, QWidget)

from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.data.splits import trainable_classes, trained_imbalance_ratio, why_not_trainable

from balancelab.gui.widgets.charts import ChartCanvas, grouped_bars
from balancelab.gui.widgets.table_models import ClassTableModel, ProblemsModel, ThumbnailListModel
from balancelab.gui.widgets.thumbnails import ThumbnailLoader
from balancelab.gui.widgets.tables import BarDelegate, make_grid, make_table, sortable


class DatasetView(QWidget):
    open_folder_requested = Signal()
    open_demo_requested = Signal()

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.result: ScanResult | None = None
        self.summary = QLabel("No dataset open. Use Open folder, drop a folder on the window, or open the demo.")
        self.summary.setObjectName("summary")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.split_box = QComboBox()
        self.split_box.currentIndexChanged.connect(self._refresh_split)
        self.deep_label = QLabel("")
        self.deep_bar = QProgressBar()
        self.deep_bar.setMinimumWidth(220)
        self.deep_bar.setMaximumWidth(320)
        self.deep_bar.setFormat("%v / %m files")
        self.deep_label.setVisible(False)
        self.deep_bar.setVisible(False)
        self._deep_found = 0

        self.class_model = ClassTableModel(self)
        self.class_proxy = sortable(self.class_model)
        self.class_table = make_table(self.class_proxy, sortable_by_user=True)
        self.class_table.setItemDelegateForColumn(3, BarDelegate(self.class_table))
        self.class_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.selectionModel().currentRowChanged.connect(self._class_selected)

        self.chart = ChartCanvas(self, height=2.6)
        self.chart.empty_message("class distribution")

        self.problem_model = ProblemsModel(self)
        self.problem_proxy = sortable(self.problem_model)
        self.problem_table = make_table(self.problem_proxy, sortable_by_user=True)
        self.problem_table.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        self.problem_table.setColumnWidth(0, 260)
        self.problem_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)  # kind
        self.problem_table.selectionModel().currentRowChanged.connect(self._problem_selected)
        self.problem_preview = QLabel("Select a problem to see the file.")
        self.problem_preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.problem_preview.setWordWrap(True)
        self.problem_preview.setMinimumWidth(180)
        self.reveal_button = QPushButton("Show in folder")
        self.reveal_button.setEnabled(False)
        self.reveal_button.clicked.connect(self._reveal)

        self.loader = ThumbnailLoader(96, parent=self)
        self.loader.ready.connect(self._thumbnail_ready)
        self._preview_path: str | None = None
        self.thumb_model = ThumbnailListModel(self.loader, self)
        self.grid = make_grid(self.thumb_model)
        self.grid_label = QLabel("Select a class to see its images.")

        top = QHBoxLayout()
        top.addWidget(self.summary, 1)
        top.addWidget(QLabel("Split:"))
        top.addWidget(self.split_box)
        deep_row = QHBoxLayout()
        deep_row.addWidget(self.deep_label)
        deep_row.addWidget(self.deep_bar)
        deep_row.addStretch(1)

        left = QSplitter(Qt.Orientation.Vertical)
        left.addWidget(self.class_table)
        left.addWidget(self.chart)

        grid_box = QWidget()
        gl = QVBoxLayout(grid_box)
        gl.setContentsMargins(0, 0, 0, 0)
        gl.addWidget(self.grid_label)
        gl.addWidget(self.grid)

        problems_box = QWidget()
        pl = QHBoxLayout(problems_box)
        pl.setContentsMargins(0, 0, 0, 0)
        pl.addWidget(self.problem_table, 3)
        side = QVBoxLayout()
        side.addWidget(self.problem_preview, 1)
        side.addWidget(self.reveal_button)
        pl.addLayout(side, 1)

        self.right_tabs = QTabWidget()
        self.right_tabs.addTab(grid_box, "Images")
        self.right_tabs.addTab(problems_box, "Problems")

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(self.right_tabs)
        split.setSizes([420, 680])

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(deep_row)
        layout.addWidget(split, 1)

        session.dataset_opened.connect(self.set_result)
        session.files_moved.connect(self._files_moved)
        session.deep_progress.connect(self._deep_progress)
        session.problems_found.connect(self._problems_found)
        session.scan_ended.connect(self._scan_ended)

    # --- updates from the session -------------------------------------------------------------

    def set_result(self, result: ScanResult) -> None:
        completes = (self.result is not None and self.result.root == result.root and not self.result.deep_checked
                     and len(result.splits) == len(self.result.splits))
        self.result = result
        self.loader.set_canonical(result.canonical)
        self._show_deep_state(result)
        if completes:  # the deep check of the folder on screen: keep the split and class the user chose
            self._show_problems(result.problems)
            self._show_summary(result)
            self.class_model.set_counts(result.class_counts(self.current_split()))
            self._draw_chart()
            return
        self.split_box.blockSignals(True)
        self.split_box.clear()
        if len(result.splits) > 1:
            self.split_box.addItem("all splits", None)
        for s in result.splits:
            self.split_box.addItem(s, s)
        self.split_box.blockSignals(False)
        self._show_problems(result.problems)
        self.problem_preview.clear()  # nothing of the previous dataset's selection stays on screen
        self._preview_path = None
        self.problem_preview.setText("Select a problem to see the file.")
        self.problem_preview.setToolTip("")
        self.reveal_button.setEnabled(False)
        self._show_summary(result)
        self._refresh_split()
        self._draw_chart()

    def _show_problems(self, problems) -> None:
        self.problem_model.set_problems(list(problems))
        self.right_tabs.setTabText(1, f"Problems ({len(problems)})")
        self._say_why_no_problems()

    def _say_why_no_problems(self) -> None:
        if self.result is not None and self.result.deep_checked:
            text = "No problems found: every file opened and decoded."
        elif self.session.scanning():
            text = "No problems in the file headers; the deep check (pixel data, duplicates) is still running."
        else:
            text = "No problems in the file headers; the deep check was stopped before it finished (Rescan runs it)."
        self.problem_table.set_empty_message(text)

    def _files_moved(self, actions: list) -> None:
        """The counts stay the scan's (a rescan is the truth), but the summary says they are stale,
        and a moved file's tile leaves the grid instead of showing a broken image."""
        if self.result is None:
            return
        for a in actions:
            self.thumb_model.remove_path(os.path.join(self.result.root, a.src if a.state == "done" else a.dst))
        self._show_summary(self.result)

    def _show_summary(self, result: ScanResult) -> None:
        n_problems = len(result.problems)
        checking = "" if result.deep_checked else " — <i>headers only so far</i>"
        trainable = trainable_classes(result)
        trained, untrained = trainable
        why_not = why_not_trainable(result, trainable)
        notes = ""
        if why_not:
            notes = f"<br><span style='color:#b3261e'>Cannot be trained: {html.escape(why_not)}.</span>"
        elif untrained:
            notes = ("<br><span style='color:#8a5300'>Not trained (and left out of the results): "
                     + "; ".join(f"{html.escape(c)}: {html.escape(w)}" for c, w in untrained.items())
                     + ". Imbalance among the trained classes"
                     + ("" if result.training_split == "all" else f" of the {result.training_split} split")
                     + f": <b>{trained_imbalance_ratio(result, trained):.1f}:1</b></span>")
        self.summary.setText(
            f"<b>{html.escape(os.path.basename(result.root) or result.root)}</b> — {len(result.images):,} readable images, "
            f"{len(result.classes)} classes, {result.layout} layout ({', '.join(result.splits)}); "
            f"imbalance ratio <b>{result.describe_imbalance()}</b>; "
            f"<span style='color:{'#b3261e' if n_problems else '#1e6b2f'}'>{n_problems} problem(s)</span>"
            + ("" if result.complete else " — <b>scan stopped early, counts are partial</b>") + checking + notes
            + ("<br><span style='color:#8a5300'>Files were moved since this scan: the counts are the scan's; "
               "Rescan (F5) updates them.</span>" if self.session.moved_since_scan() else ""))
        self.summary.setToolTip(result.root)

    # --- the deep check ------------------------------------------------------------------------

    def _show_deep_state(self, result: ScanResult) -> None:
        running = not result.deep_checked and self.session.scanning()
        if running and not self.deep_bar.isVisible():
            self._deep_found = 0
            self.deep_bar.setRange(0, 0)
            self.deep_label.setText("Deep check (decoding each file once; this is also the training cache):")
        self.deep_label.setVisible(running)
        self.deep_bar.setVisible(running)

    def _deep_progress(self, done: int, total: int) -> None:
        if total:
            self.deep_bar.setRange(0, total)
            self.deep_bar.setValue(done)
        found = f", {self._deep_found} problem(s) found" if self._deep_found else ""
        self.deep_label.setText(f"Deep check (decoding each file once; this is also the training cache){found}:")

    def _problems_found(self, problems: list) -> None:
        if self.result is None or self.result.deep_checked:
            return
        self._deep_found += len(problems)
        self._show_problems(self.problem_model.rows + list(problems))

    def _scan_ended(self) -> None:
        self.deep_label.setVisible(False)
        self.deep_bar.setVisible(False)
        if self.result is not None:
            self._say_why_no_problems()

    def current_split(self) -> str | None:
        return self.split_box.currentData()

    def _refresh_split(self) -> None:
        if self.result is None:
            return
        self.class_model.set_counts(self.result.class_counts(self.current_split()))
        self.thumb_model.set_items([])
        self.grid_label.setText("Select a class to see its images.")

    def _draw_chart(self) -> None:
        r = self.result
        classes = r.classes
        series = {s: [r.class_counts(s).get(c, 0) for c in classes] for s in r.splits}

        def draw() -> None:
            grouped_bars(self.chart.ax, classes, series, "images")
            self.chart.ax.set_title(f"Images per class — imbalance {r.describe_imbalance()}", fontsize=9)

        self.chart.plot(draw)

    def _class_selected(self, current, _previous) -> None:
        if self.result is None or not current.isValid():
            return
        name = self.class_model.class_name(self.class_proxy.mapToSource(current).row())
        split = self.current_split()
        images = [img for img in self.result.images if img.label == name and (split is None or img.split == split)]
        root = self.result.root
        self.thumb_model.set_items([{
            "path": os.path.join(root, img.path), "caption": os.path.basename(img.path),
            "tooltip": f"{img.path}\n{img.width}x{img.height} {img.mode}, {img.n_bytes:,} bytes",
        } for img in images])
        self.grid_label.setText(f"Class <b>{name}</b>: {len(images):,} images" + (f" in {split}" if split else ""))
        self.right_tabs.setCurrentIndex(0)

    def _problem_selected(self, current, _previous) -> None:
        if self.result is None or not current.isValid():
            return
        problem = self.problem_model.rows[self.problem_proxy.mapToSource(current).row()]
        path = os.path.join(self.result.root, problem.path)
        self._problem_path = path
        self.reveal_button.setEnabled(os.path.exists(path))
        text = f"<b>{html.escape(problem.path)}</b><br>{html.escape(problem.describe())}"  # names are never markup
        self._preview_path = None
        self.problem_preview.setText(text)
        self.problem_preview.setToolTip("")
        if os.path.isfile(path) and problem.kind in ("duplicate", "leakage", "conflicting-labels"):
            self._preview_path, self._preview_text = path, text  # the thumbnail comes from the loader's pool
            pixmap = self.loader.cached(path)
            if pixmap is None:
                self.loader.request(path)
            else:
                self._show_preview(pixmap)

    def _thumbnail_ready(self, path: str) -> None:
        if path == self._preview_path:
            pixmap = self.loader.cached(path)
            if pixmap is not None:
                self._show_preview(pixmap)

    def _show_preview(self, pixmap: QPixmap) -> None:
        self.problem_preview.setPixmap(pixmap)
        self.problem_preview.setToolTip(self._preview_text)

    def _reveal(self) -> None:
        path = getattr(self, "_problem_path", None)
        if path:
            QDesktopServices.openUrl(QUrl.fromLocalFile(os.path.dirname(path) if os.path.isfile(path) else path))

    def shutdown(self) -> None:
        self.loader.shutdown()
