"""Curation tab, label-issues page: the review queue ranked by cleanlab, the estimated noise per
class pair (clickable into the queue), and relabel / exclude / keep through the journal."""
from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QCheckBox, QComboBox, QHBoxLayout, QHeaderView, QLabel, QPushButton, QSpinBox, QSplitter,
                               QTableView, QVBoxLayout, QWidget)

from balancelab.engine.experiments.label_issues import find_label_issues
from balancelab.engine.experiments.label_ranking import (DEFAULT_FILTER, DEFAULT_FOLDS, DEFAULT_RANKING, FILTERS, LABEL_ISSUE_EPOCHS,
                                                         LABEL_ISSUE_MODEL, RANKINGS)

from balancelab.gui.widgets.tables import make_grid, make_table, sortable
from balancelab.gui.widgets.table_models import BaseTableModel, ThumbnailListModel

ISSUES_INTRO = "Out-of-fold predictions flagged and ranked by cleanlab: most suspicious first."


class IssuesModel(BaseTableModel):
    headers = ["Rank", "File", "Given", "Suggested", "Quality", "Flagged"]

    def cell(self, index, role):
        r = self.rows[index.row()]
        return self.value_cell([r["rank"], r["path"], r["given"], r["suggested"], r["quality"],
                                "yes" if r["flagged"] else ""], index, role)


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


class LabelIssuesPanel:
    """Mixin of CurationView (gui/views/curation.py): the label-issues page and its actions."""

    def _issues_page(self) -> QWidget:
        self.folds = QSpinBox()
        self.folds.setRange(2, 20)
        self.folds.setValue(DEFAULT_FOLDS)
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
        self.issues_table = make_table(self.issues_proxy, stretch_last=False, sortable_by_user=True)
        self.issues_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        # the path takes what is left, elided at its start (full path in the tooltip), so its class
        # folder and file name stay readable; the numeric columns stay in view rather than behind a
        # horizontal scrollbar
        self.issues_table.horizontalHeader().setSectionResizeMode(1, QHeaderView.ResizeMode.Stretch)
        self.issues_table.setTextElideMode(Qt.TextElideMode.ElideLeft)
        self.issues_table.setWordWrap(False)  # one line per row: a wrapped path would elide at its first "/"
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
        # the queue gets room for its path next to the numbers; the noise matrix keeps room for 10 classes
        split.setSizes([490, 140, 600])
        split.setStretchFactor(0, 1)
        split.setStretchFactor(2, 1)
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.addLayout(row)
        self.issues_summary = QLabel(ISSUES_INTRO)
        self.issues_summary.setWordWrap(True)
        pl.addWidget(self.issues_summary)
        pl.addWidget(split, 1)
        pl.addLayout(actions)
        return page

    def _reset_label_issues(self) -> None:
        """Another dataset (or a rescan): its flagged images, summary, warning and fold
        probabilities are gone with it."""
        self.issues_summary.setText(ISSUES_INTRO)
        self.issues_model.set_rows([])
        self.issue_image.set_items([])
        self.all_issues = []
        self.noise_model.set_matrix([], [])
        self.last_probs = None
        self.issue_reuse.setChecked(False)
        self.issue_reuse.setEnabled(False)

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

    def _show_issues(self, result) -> None:
        self.all_issues = result["ranking"]
        self.issues_model.set_rows(self.all_issues)
        self.noise_model.set_matrix(result["classes"], result["confident_joint"])
        self.last_probs = result["probs"]
        self.issue_reuse.setEnabled(True)
        flagged = sum(r["flagged"] for r in result["ranking"])
        source = f"{result['folds']}-fold" if result["folds"] else "re-ranked"
        self.message.emit("info", f"label issues: {flagged} flagged of the {len(result['ranking'])} training-split "
                                  f"images ({source}, "
                                  f"{result['filter_by']}; out-of-fold accuracy {result['oof_accuracy']:.1%}); "
                                  f"ranking in {result['csv']}")
        summary = (f"{flagged} of the {len(result['ranking'])} training-split images flagged ({source}, filter {result['filter_by']}); "
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
