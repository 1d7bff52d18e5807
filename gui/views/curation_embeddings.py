"""Curation tab, outliers & coverage page: a trained run's embeddings show the images far from
every class centre (click one to see it; relabel to the nearest class or exclude, through the
journal) and how many distinct modes each class has (few modes in a minority class: little
variety for a balancing strategy to repeat). The work runs on the tab's worker thread."""
from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QPushButton, QSplitter, QVBoxLayout, QWidget

from balancelab.engine.results.embedding_review import review_embeddings

from balancelab.gui.widgets.tables import make_grid, make_table, sortable
from balancelab.gui.widgets.table_models import SORT_ROLE, ThumbnailListModel, BaseTableModel

COVERAGE_TIP = ("Modes: clusters of the class's embeddings (average-linkage cosine, cut at 0.3). "
                "A minority class with one mode shows the model one way the class looks; "
                "re-sampling repeats it, so collect more varied images of it.")

EMBEDDINGS_INTRO = ("Pick a trained run of this dataset and press the button: images far from every class centre, "
                    "and the distinct modes of each class, from the run's embeddings.")


class OutliersModel(BaseTableModel):
    headers = ["Rank", "File", "Class", "Nearest class", "Distance", "Outlier"]

    def cell(self, index, role):
        rank, o = self.rows[index.row()]
        if role in (SORT_ROLE, Qt.ItemDataRole.DisplayRole):
            return self.value_cell([rank, o.path, o.label, o.nearest, o.distance, "yes" if o.flagged else ""], index, role)
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"cosine distance {o.distance:.4f} to the centre of class {o.nearest}, the nearest of all classes"
                    + ("; beyond the outlier threshold" if o.flagged else ""))
        return None


class CoverageModel(BaseTableModel):
    headers = ["Class", "Training-split images", "Modes", "Images per mode"]
    minority: set[str] = set()  # shaded when they have a single mode

    def cell(self, index, role):
        r = self.rows[index.row()]
        if role in (SORT_ROLE, Qt.ItemDataRole.DisplayRole):
            return self.value_cell([r.label, r.images, r.modes, r.images_per_mode], index, role, decimals=1)
        if role == Qt.ItemDataRole.ToolTipRole:
            return COVERAGE_TIP
        if role == Qt.ItemDataRole.BackgroundRole and r.label in self.minority and r.modes <= 1:
            return QColor(255, 236, 200)
        return None


class EmbeddingsPanel:
    """Mixin of CurationView (gui/views/curation.py): the outliers & coverage page."""

    def _embeddings_page(self) -> QWidget:
        self.embed_run = self._run_box()
        self.analyse_button = QPushButton("Find outliers && coverage")
        self.analyse_button.clicked.connect(self.find_outliers)
        self.outliers_model = OutliersModel(self)
        self.outliers_proxy = sortable(self.outliers_model)
        self.outliers_table = make_table(self.outliers_proxy, sortable_by_user=True)
        self.outliers_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.outliers_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.outliers_table.selectionModel().currentRowChanged.connect(self._outlier_selected)
        self.outlier_image = ThumbnailListModel(self.loader, self)
        self.outlier_grid = make_grid(self.outlier_image)
        self.outlier_grid.setMaximumWidth(180)
        self.coverage_model = CoverageModel(self)
        self.coverage_table = make_table(sortable(self.coverage_model), sortable_by_user=True)
        self.coverage_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.coverage_table.setToolTip(COVERAGE_TIP)
        relabel = self.relabel_outlier_button = QPushButton("Relabel to nearest class")
        relabel.clicked.connect(self._relabel_outlier)
        exclude = self.exclude_outlier_button = QPushButton("Exclude")
        exclude.clicked.connect(self._exclude_outlier)
        self.outliers_model.modelReset.connect(self._update_outlier_actions)
        self._update_outlier_actions()
        self.embed_summary = QLabel(EMBEDDINGS_INTRO)
        self.embed_summary.setWordWrap(True)
        row = QHBoxLayout()
        for w in (QLabel("Run:"), self.embed_run, self.analyse_button):
            row.addWidget(w)
        row.addStretch(1)
        actions = QHBoxLayout()
        for w in (relabel, exclude):
            actions.addWidget(w)
        actions.addStretch(1)
        coverage = QWidget()
        cl = QVBoxLayout(coverage)
        cl.setContentsMargins(0, 0, 0, 0)
        cl.addWidget(QLabel("Coverage per class (fewest images first; a minority class with one mode is shaded):"))
        cl.addWidget(self.coverage_table, 1)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.outliers_table)
        split.addWidget(self.outlier_grid)
        split.addWidget(coverage)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(2, 2)
        split.setSizes([600, 150, 430])
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.addLayout(row)
        pl.addWidget(self.embed_summary)
        pl.addWidget(split, 1)
        pl.addLayout(actions)
        return page

    def set_runs(self, runs: list[dict]) -> None:
        """Fill both run pickers from the session's runs (newest first), keeping the choices. A
        chosen run that dropped out of its dataset's list is named; another dataset's list is no news."""
        same_dataset = self._runs_root == self.session.root
        self._runs_root = self.session.root
        for box, blank in ((self.embed_run, None), (self.dup_run, "hash only (no run)")):
            current = box.currentData()
            box.clear()
            if blank:
                box.addItem(blank, None)
            for r in runs:  # list_runs gives complete runs only
                box.addItem(r["name"], r["dir"])
            i = box.findData(current)
            box.setCurrentIndex(max(0, i))
            if i < 0 and current is not None and same_dataset:  # the chosen run was deleted or is no longer complete
                self.message.emit("warning", f"Curation: the run {os.path.basename(current)} is no longer listed; "
                                             f"now using {box.currentText() or 'none'}.")
        self.analyse_button.setEnabled(self.embed_run.count() > 0)
        self.analyse_button.setToolTip("" if self.embed_run.count() else "train a run on this dataset first")

    def _reset_embeddings(self) -> None:
        self.embed_summary.setText(EMBEDDINGS_INTRO)
        self.outliers_model.set_rows([])
        self.coverage_model.set_rows([])
        self.outlier_image.set_items([])

    def find_outliers(self) -> None:
        run_dir = self.embed_run.currentData()
        if self.result is None or not run_dir:
            self.message.emit("error", "Open a dataset and train a run on it first: outliers come from its embeddings.")
            return
        result = self.result
        self._start(lambda stop: review_embeddings(result, run_dir, stop=stop), self._show_outliers)

    def _show_outliers(self, review) -> None:
        self.outliers_model.set_rows(list(enumerate(review.outliers, 1)))
        self.coverage_model.minority = review.minority()
        self.coverage_model.set_rows(review.coverage)
        single = [r.label for r in review.coverage if r.label in self.coverage_model.minority and r.modes <= 1]
        self.message.emit("info", f"outliers: {len(review.flagged)} of {len(review.outliers)} images flagged")
        self.embed_summary.setText(
            f"{len(review.flagged)} outlier(s) among the {len(review.outliers)} images of every split (cosine distance "
            f"to the nearest class centre above {review.threshold:.3f}), farthest first. Coverage counts the training "
            f"split before the validation hold-out. "
            + (f"Minority classes with a single mode: {', '.join(single)}." if single
               else "No minority class is a single mode."))

    def _current_outlier(self):
        idx = self.outliers_table.currentIndex()
        return self.outliers_model.rows[self.outliers_proxy.mapToSource(idx).row()][1] if idx.isValid() else None

    def _update_outlier_actions(self, *_args) -> None:
        o = self._current_outlier()
        self.exclude_outlier_button.setEnabled(o is not None)
        self.relabel_outlier_button.setEnabled(o is not None and o.nearest != o.label)

    def _outlier_selected(self, current, _prev) -> None:
        o = self._current_outlier()
        self._update_outlier_actions()
        if o is not None:
            self.outlier_image.set_items([{"path": os.path.join(self.result.root, o.path),
                                           "caption": f"{o.label} (nearest {o.nearest})", "tooltip": o.path}])

    def _drop_outlier(self, o) -> None:
        self.outliers_model.set_rows([row for row in self.outliers_model.rows if row[1] is not o])
        self.outlier_image.set_items([])

    def _relabel_outlier(self) -> None:
        o = self._current_outlier()
        if o is not None and (a := self.session.relabel(o.path, o.nearest)):
            self.message.emit("info", f"moved {a.src} → {a.dst}")
            self._drop_outlier(o)

    def _exclude_outlier(self) -> None:
        o = self._current_outlier()
        if o is not None and self._exclude([o.path]):
            self._drop_outlier(o)
