"""Curation tab: duplicate groups (exact / near, leakage), the label-issue review queue, and
one-click strategy comparison. Long work runs on worker threads; file actions go through the
dataset's journal (undoable)."""
from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QProgressBar, QPushButton, QSpinBox, QSplitter, QTableView, QTabWidget, QVBoxLayout, QWidget)

from balancelab.engine.core.events import RunStep
from balancelab.engine.experiments.compare import compare
from balancelab.engine.train.run_events import BatchProgress
from balancelab.engine.data.duplicates import DEFAULT_THRESHOLD, find_duplicates
from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.experiments.label_issues import find_label_issues
from balancelab.engine.experiments.label_ranking import (DEFAULT_FILTER, DEFAULT_RANKING, FILTERS, LABEL_ISSUE_EPOCHS,
                                                         LABEL_ISSUE_MODEL, RANKINGS)
from balancelab.engine.train.models import SMALL_NETS
from balancelab.engine.core.paths import new_run_dir
from balancelab.engine.core.metrics import format_mean_spread
from balancelab.engine.train.strategies import STRATEGIES, StrategyError, parse_strategy

from balancelab.gui.widgets.charts import ChartCanvas, PALETTE
from balancelab.gui.widgets.tables import make_grid, make_table, sortable
from balancelab.gui.widgets.table_models import SORT_ROLE, ThumbnailListModel, BaseTableModel
from balancelab.gui.widgets.thumbnails import ThumbnailLoader
from balancelab.gui.worker import GeneratorThread


class GroupsModel(BaseTableModel):
    headers = ["Kind", "Images", "Leakage", "Conflicting labels", "First file"]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        g = self.rows[index.row()]
        values = [g.kind, len(g.paths), "yes: " + ", ".join(g.splits) if g.leaks else "",
                  ", ".join(g.labels) if g.conflicting else "", g.paths[0]]
        if role == SORT_ROLE:
            return values[index.column()]
        if role == Qt.ItemDataRole.DisplayRole:
            return str(values[index.column()])
        return None


class IssuesModel(BaseTableModel):
    headers = ["Rank", "File", "Given", "Suggested", "Quality", "Flagged"]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r = self.rows[index.row()]
        values = [r["rank"], r["path"], r["given"], r["suggested"], r["quality"], "yes" if r["flagged"] else ""]
        v = values[index.column()]
        if role == SORT_ROLE:
            return v
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{v:.4f}" if isinstance(v, float) else str(v)
        return None


class NoiseMatrixModel(QAbstractTableModel):
    """The confident joint: estimated images per (given label, suspected true label); the
    off-diagonal cells are the label noise, double-click one to filter the queue to it."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.classes: list[str] = []
        self.joint = np.zeros((0, 0), dtype=np.int64)

    def set_matrix(self, classes: list[str], joint) -> None:
        self.beginResetModel()
        self.classes, self.joint = list(classes), np.asarray(joint, dtype=np.int64)
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and 0 <= section < len(self.classes):
            return ("given " if orientation == Qt.Orientation.Vertical else "true? ") + self.classes[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        v = int(self.joint[index.row(), index.column()])
        if role == Qt.ItemDataRole.DisplayRole:
            return "" if index.row() == index.column() else str(v)
        if role == Qt.ItemDataRole.BackgroundRole and index.row() != index.column() and v > 0:
            top = max(1, int((self.joint - np.diag(np.diag(self.joint))).max()))
            return QColor(255, int(235 - 120 * v / top), int(235 - 120 * v / top))
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"about {v} image(s) labelled {self.classes[index.row()]} look like {self.classes[index.column()]}"
        return None


class SummaryModel(BaseTableModel):
    headers = ["Strategy", "Runs", "Balanced acc.", "Macro-F1", "Minority recall"]

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        s = self.rows[index.row()]
        col = index.column()
        if role == SORT_ROLE:
            return [s["strategy"], s["runs"], s["balanced_accuracy_mean"], s["macro_f1_mean"], s["minority_recall_mean"]][col]
        if role == Qt.ItemDataRole.DisplayRole:
            if col < 2:
                return str([s["strategy"], s["runs"]][col])
            key = ["balanced_accuracy", "macro_f1", "minority_recall"][col - 2]
            return format_mean_spread(s[key + "_mean"], s[key + "_std"], s["runs"])
        return None


class CurationView(QWidget):
    message = Signal(str, str)
    work_done = Signal()  # the worker thread ended, after its result (or failure) was shown

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.result = None
        self.thread: GeneratorThread | None = None
        self.loader = ThumbnailLoader(96, parent=self)
        self.tabs = QTabWidget()
        self.tabs.addTab(self._duplicates_page(), "Duplicates && leakage")
        self.tabs.addTab(self._issues_page(), "Label issues")
        self.tabs.addTab(self._compare_page(), "Compare strategies")
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

    # --- pages ------------------------------------------------------------------------------------

    def _duplicates_page(self) -> QWidget:
        self.threshold = QSpinBox()
        self.threshold.setRange(0, 64)
        self.threshold.setValue(DEFAULT_THRESHOLD)
        self.threshold.setToolTip("near duplicates: at most this many of the 256 DCT-hash bits differ (1-pixel shifts included)")
        find = QPushButton("Find duplicates")
        find.clicked.connect(self.find_duplicates)
        self.dup_summary = QLabel("Exact copies (content hash) and near copies (perceptual hash), across all splits.")
        self.groups_model = GroupsModel(self)
        self.groups_proxy = sortable(self.groups_model)
        self.groups_table = make_table(self.groups_proxy, sortable_by_user=True)
        self.groups_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.groups_table.selectionModel().currentRowChanged.connect(self._group_selected)
        self.group_images = ThumbnailListModel(self.loader, self)
        self.group_grid = make_grid(self.group_images)
        keep_first = self.keep_first_button = QPushButton("Exclude all but the first")
        keep_first.clicked.connect(self._exclude_all_but_first)
        keep_first.setEnabled(False)
        exclude_sel = self.exclude_images_button = QPushButton("Exclude selected")
        exclude_sel.clicked.connect(self._exclude_selected_group_images)
        exclude_sel.setEnabled(False)
        self.group_grid.selectionModel().selectionChanged.connect(
            lambda *_: exclude_sel.setEnabled(bool(self.group_grid.selectionModel().selectedIndexes())))
        row = QHBoxLayout()
        row.addWidget(QLabel("Near-duplicate threshold (bits):"))
        row.addWidget(self.threshold)
        row.addWidget(find)
        row.addStretch(1)
        actions = QHBoxLayout()
        actions.addWidget(keep_first)
        actions.addWidget(exclude_sel)
        actions.addStretch(1)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.setContentsMargins(0, 0, 0, 0)
        rl.addWidget(self.group_grid, 1)
        rl.addLayout(actions)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.groups_table)
        split.addWidget(right)
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.addLayout(row)
        pl.addWidget(self.dup_summary)
        pl.addWidget(split, 1)
        return page

    def _small_model_box(self) -> QComboBox:
        box = QComboBox()
        for name in SMALL_NETS:
            box.addItem(name, name)
        box.setCurrentIndex(box.findData("tiny-2conv"))
        return box

    def _issues_page(self) -> QWidget:
        self.folds = QSpinBox()
        self.folds.setRange(2, 20)
        self.folds.setValue(5)
        self.issue_epochs = QSpinBox()
        self.issue_epochs.setRange(1, 500)
        self.issue_epochs.setValue(LABEL_ISSUE_EPOCHS)
        self.issue_model = self._small_model_box()
        self.issue_model.setCurrentIndex(self.issue_model.findData(LABEL_ISSUE_MODEL))
        self.issue_filter = QComboBox()
        for name in FILTERS:
            self.issue_filter.addItem(name.replace("_", " "), name)
        self.issue_filter.setCurrentIndex(self.issue_filter.findData(DEFAULT_FILTER))
        self.issue_filter.setToolTip("cleanlab filter that decides which images are flagged")
        self.issue_rank = QComboBox()
        for name in RANKINGS:
            self.issue_rank.addItem(name.replace("_", " "), name)
        self.issue_rank.setCurrentIndex(self.issue_rank.findData(DEFAULT_RANKING))
        self.issue_rank.setToolTip("cleanlab label quality score that orders the queue")
        self.issue_reuse = QCheckBox("Re-rank last probabilities")
        self.issue_reuse.setToolTip("re-rank the out-of-fold probabilities of the last run (no training)")
        self.issue_reuse.setEnabled(False)
        self.last_probs: str | None = None
        run = QPushButton("Find label issues")
        run.clicked.connect(self.find_label_issues)
        self.issues_model = IssuesModel(self)
        self.issues_proxy = sortable(self.issues_model)
        self.issues_table = make_table(self.issues_proxy, sortable_by_user=True)
        self.issues_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.issues_table.selectionModel().currentRowChanged.connect(self._issue_selected)
        self.issue_image = ThumbnailListModel(self.loader, self)
        self.issue_grid = make_grid(self.issue_image)
        self.issue_grid.setMaximumWidth(180)
        relabel = QPushButton("Relabel to suggested")
        relabel.clicked.connect(self._relabel_issue)
        exclude = QPushButton("Exclude")
        exclude.clicked.connect(self._exclude_issue)
        keep = QPushButton("Keep (label is right)")
        keep.clicked.connect(self._keep_issue)
        self.issue_actions = (relabel, exclude, keep)  # enabled only while an issue is selected
        self.issues_model.modelReset.connect(self._update_issue_actions)
        self._update_issue_actions()
        row = QHBoxLayout()
        for w in (QLabel("Folds:"), self.folds, QLabel("Epochs:"), self.issue_epochs, QLabel("Model:"), self.issue_model,
                  QLabel("Filter:"), self.issue_filter, QLabel("Rank by:"), self.issue_rank, self.issue_reuse, run):
            row.addWidget(w)
        row.addStretch(1)
        actions = QHBoxLayout()
        for w in (relabel, exclude, keep):
            actions.addWidget(w)
        actions.addStretch(1)
        self.noise_model = NoiseMatrixModel(self)
        self.noise_table = QTableView()
        self.noise_table.setModel(self.noise_model)
        self.noise_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.noise_table.doubleClicked.connect(self._noise_cell_clicked)
        self.issue_pair: tuple[str, str] | None = None
        show_all = QPushButton("Show all")
        show_all.clicked.connect(lambda: self._filter_issues(None))
        noise = QWidget()
        nl = QVBoxLayout(noise)
        nl.setContentsMargins(0, 0, 0, 0)
        nl.addWidget(QLabel("Estimated label noise (given x suspected true); double-click a cell:"))
        nl.addWidget(self.noise_table, 1)
        nl.addWidget(show_all)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.issues_table)
        split.addWidget(self.issue_grid)
        split.addWidget(noise)
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.addLayout(row)
        self.issues_summary = QLabel("Out-of-fold predictions flagged and ranked by cleanlab: most suspicious first.")
        self.issues_summary.setWordWrap(True)
        pl.addWidget(self.issues_summary)
        pl.addWidget(split, 1)
        pl.addLayout(actions)
        return page

    def _compare_page(self) -> QWidget:
        self.strategy_list = QListWidget()
        for name, text in STRATEGIES.items():
            item = QListWidgetItem(name)
            item.setToolTip(text)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in ("none", "balanced-sampler", "balanced-softmax") else Qt.CheckState.Unchecked)
            self.strategy_list.addItem(item)
        self.strategy_list.setMaximumWidth(220)
        self.seeds = QSpinBox()
        self.seeds.setRange(1, 20)
        self.seeds.setValue(3)
        self.cmp_epochs = QSpinBox()
        self.cmp_epochs.setRange(1, 500)
        self.cmp_epochs.setValue(10)
        self.cmp_model = self._small_model_box()
        self.cmp_model.setCurrentIndex(self.cmp_model.findData("mnist-classic"))
        run = QPushButton("Compare")
        run.clicked.connect(self.run_compare)
        self.summary_model = SummaryModel(self)
        self.summary_table = make_table(sortable(self.summary_model), sortable_by_user=True)
        self.summary_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.cmp_chart = ChartCanvas(self, height=2.6)
        self.cmp_chart.empty_message("Tick strategies (or type combinations) and press Compare:\n"
                                     "balanced accuracy, macro-F1 and minority recall per strategy appear here.")
        self.combinations = QLineEdit()
        self.combinations.setPlaceholderText("also compare combinations, e.g. oversample+minority-augment, "
                                             "balanced-sampler+focal")
        row = QHBoxLayout()
        for w in (QLabel("Seeds:"), self.seeds, QLabel("Epochs:"), self.cmp_epochs, QLabel("Model:"), self.cmp_model, run):
            row.addWidget(w)
        row.addStretch(1)
        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.summary_table)
        right.addWidget(self.cmp_chart)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.strategy_list)
        split.addWidget(right)
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.addLayout(row)
        pl.addWidget(self.combinations)
        pl.addWidget(QLabel("Every strategy and seed is trained on the same train/validation split."))
        pl.addWidget(split, 1)
        return page

    # --- running work ------------------------------------------------------------------------------

    def set_result(self, result) -> None:
        self.result = result
        self.groups_model.set_rows([])
        self.group_images.set_items([])
        self.keep_first_button.setEnabled(False)
        self.exclude_images_button.setEnabled(False)
        self.issues_model.set_rows([])
        self.issue_image.set_items([])
        self.all_issues = []
        self.noise_model.set_matrix([], [])
        self.last_probs = None
        self.issue_reuse.setChecked(False)
        self.issue_reuse.setEnabled(False)

    def busy(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def _start(self, factory, on_finished) -> None:
        if self.result is None:
            self.message.emit("error", "Open a dataset first.")
            return
        if self.busy():
            self.message.emit("error", "Curation work is already running; stop it first.")
            return
        self._on_finished = on_finished
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
        run = f" — {ev.label} (run {ev.index + 1}/{ev.total})" if isinstance(ev, RunStep) else ""
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
            self._on_finished(ev.result)

    def _out_dir(self, kind: str) -> str:
        return str(new_run_dir(self.result.root, kind))

    def find_duplicates(self) -> None:
        result, threshold = self.result, self.threshold.value()
        self._start(lambda stop: find_duplicates(result, threshold=threshold, stop=stop), self._show_groups)

    def find_label_issues(self) -> None:
        if self.result is None:
            self.message.emit("error", "Open a dataset first.")
            return
        root, out = self.result.root, self._out_dir("label-issues")
        folds, epochs, model = self.folds.value(), self.issue_epochs.value(), self.issue_model.currentData()
        options = {"filter_by": self.issue_filter.currentData(), "rank_by": self.issue_rank.currentData()}
        if self.issue_reuse.isChecked() and self.last_probs:
            options["from_probs"] = self.last_probs
        else:
            options.update(model=model, epochs=epochs)
        self._start(lambda stop: find_label_issues(root, out, folds=folds, stop=stop, **options), self._show_issues)

    def run_compare(self) -> None:
        strategies = [self.strategy_list.item(i).text() for i in range(self.strategy_list.count())
                      if self.strategy_list.item(i).checkState() == Qt.CheckState.Checked]
        for text in self.combinations.text().split(","):
            try:
                name = parse_strategy(text).name if text.strip() else None
            except StrategyError as exc:
                self.message.emit("error", f"cannot compare '{text.strip()}': {exc}")
                return
            if name and name not in strategies:
                strategies.append(name)
        if not strategies:
            self.message.emit("error", "Tick at least one strategy (or type a combination) to compare.")
            return
        root, out = self.result.root, self._out_dir("compare")
        seeds, epochs, model = list(range(self.seeds.value())), self.cmp_epochs.value(), self.cmp_model.currentData()
        self._start(lambda stop: compare(root, strategies, seeds, out, stop=stop, model=model, epochs=epochs),
                    self._show_comparison)

    # --- results ------------------------------------------------------------------------------------

    def _show_groups(self, groups) -> None:
        self.groups_model.set_rows(groups)
        self.dup_summary.setText(f"{len(groups)} group(s): {sum(g.kind == 'exact' for g in groups)} exact, "
                                 f"{sum(g.kind == 'near' for g in groups)} near; {sum(g.leaks for g in groups)} leak across "
                                 f"splits; {sum(g.conflicting for g in groups)} have conflicting labels.")

    def _current_group(self):
        idx = self.groups_table.currentIndex()
        return self.groups_model.rows[self.groups_proxy.mapToSource(idx).row()] if idx.isValid() else None

    def _group_selected(self, current, _prev) -> None:
        g = self._current_group()
        self.keep_first_button.setEnabled(g is not None and len(g.paths) > 1)
        if g is None:
            return
        self.group_images.set_items([{"path": os.path.join(self.result.root, p), "rel": p, "caption": p,
                                      "tooltip": p} for p in g.paths])

    def _exclude(self, rels: list[str]) -> int:
        done = sum(self.session.exclude(rel) is not None for rel in rels)
        if done:
            self.message.emit("info", f"excluded {done} file(s) to _excluded/ (undo in the Review tab)")
        return done

    def _exclude_all_but_first(self) -> None:
        g = self._current_group()
        if g is not None and self._exclude(g.paths[1:]):
            self.group_images.set_items(self.group_images.items[:1])

    def _exclude_selected_group_images(self) -> None:
        rels = [self.group_images.items[i.row()]["rel"] for i in self.group_grid.selectionModel().selectedIndexes()]
        if self._exclude(rels):
            for rel in rels:
                self.group_images.remove_path(os.path.join(self.result.root, rel))

    def _show_issues(self, result) -> None:
        self.all_issues = result["ranking"]
        self.issues_model.set_rows(self.all_issues)
        self.noise_model.set_matrix(result["classes"], result["confident_joint"])
        self.last_probs = result["probs"]
        self.issue_reuse.setEnabled(True)
        flagged = sum(r["flagged"] for r in result["ranking"])
        source = f"{result['folds']}-fold" if result["folds"] else "re-ranked"
        self.message.emit("info", f"label issues: {flagged} flagged of {len(result['ranking'])} ({source}, "
                                  f"{result['filter_by']}; out-of-fold accuracy {result['oof_accuracy']:.1%}); "
                                  f"ranking in {result['csv']}")
        summary = (f"{flagged} of {len(result['ranking'])} images flagged ({source}, filter {result['filter_by']}); "
                   f"out-of-fold accuracy of the fold models: <b>{result['oof_accuracy']:.1%}</b>.")
        if result.get("trust_warning"):
            self.message.emit("warning", f"label issues: {result['trust_warning']}")
            summary += f"<br><span style='color:#b3261e'>Warning: {result['trust_warning']}.</span>"
        self.issues_summary.setText(summary)

    def _noise_cell_clicked(self, index) -> None:
        classes = self.noise_model.classes
        if index.isValid() and index.row() != index.column():
            self._filter_issues((classes[index.row()], classes[index.column()]))

    def _filter_issues(self, pair: tuple[str, str] | None) -> None:
        """Show only images labelled pair[0] whose suspected class is pair[1] (None: all)."""
        rows = getattr(self, "all_issues", [])
        self.issue_pair = pair
        self.issues_model.set_rows(rows if pair is None else
                                   [r for r in rows if (r["given"], r["suggested"]) == pair])

    def _current_issue(self):
        idx = self.issues_table.currentIndex()
        return self.issues_model.rows[self.issues_proxy.mapToSource(idx).row()] if idx.isValid() else None

    def _update_issue_actions(self, *_args) -> None:
        for button in self.issue_actions:
            button.setEnabled(self._current_issue() is not None)

    def _issue_selected(self, current, _prev) -> None:
        r = self._current_issue()
        self._update_issue_actions()
        if r is not None:
            self.issue_image.set_items([{"path": os.path.join(self.result.root, r["path"]),
                                         "caption": f"{r['given']}→{r['suggested']}", "tooltip": r["path"]}])

    def _drop_issue(self, r) -> None:
        self.all_issues = [x for x in getattr(self, "all_issues", []) if x is not r]
        self.issues_model.set_rows([x for x in self.issues_model.rows if x is not r])
        self.issue_image.set_items([])

    def _relabel_issue(self) -> None:
        r = self._current_issue()
        if r is not None and (a := self.session.relabel(r["path"], r["suggested"])):
            self.message.emit("info", f"moved {a.src} → {a.dst}")
            self._drop_issue(r)

    def _exclude_issue(self) -> None:
        r = self._current_issue()
        if r is not None and self._exclude([r["path"]]):
            self._drop_issue(r)

    def _keep_issue(self) -> None:
        r = self._current_issue()
        if r is not None:
            self._drop_issue(r)

    def _show_comparison(self, result) -> None:
        summary = result["summary"]
        self.summary_model.set_rows(summary)
        self.cmp_chart.plot(lambda: self._draw_comparison(summary))

    def _draw_comparison(self, summary: list[dict]) -> None:
        ax = self.cmp_chart.ax
        x = np.arange(len(summary))
        for i, key in enumerate(("balanced_accuracy", "macro_f1", "minority_recall")):
            spread = [s[key + "_std"] if s["runs"] >= 2 else 0.0 for s in summary]  # no error bar from one seed
            ax.bar(x + (i - 1) * 0.27, [s[key + "_mean"] for s in summary], 0.27,
                   yerr=spread if any(spread) else None, label=key.replace("_", " "), color=PALETTE[i], capsize=3)
        ax.set_xticks(x)
        ax.set_xticklabels([s["strategy"] for s in summary], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)

    def shutdown(self) -> None:
        if self.thread is not None:
            self.thread.request_stop()
            self.thread.wait(60000)
        self.loader.shutdown()
