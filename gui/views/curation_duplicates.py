"""Curation tab, duplicates page: exact / near copy groups and leakage across splits; excluding
copies goes through the session's journal (undoable)."""
from __future__ import annotations

import os

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QHBoxLayout, QHeaderView, QLabel, QPushButton, QSpinBox, QSplitter, QVBoxLayout, QWidget

from balancelab.engine.data.duplicates import DEFAULT_THRESHOLD, GRADES, find_duplicates
from balancelab.engine.results.embeddings import find_duplicates_with_run

from balancelab.gui.widgets.tables import make_grid, make_table, sortable
from balancelab.gui.widgets.table_models import SORT_ROLE, ThumbnailListModel, BaseTableModel

DUPLICATES_INTRO = "Exact copies (content hash) and near copies (perceptual hash), across all splits."


class GroupsModel(BaseTableModel):
    """One row per group; the grade (exact / near / look-alike) sorts most certain first and its
    tooltip says what the evidence was."""
    headers = ["Grade", "Images", "Distance", "Leakage", "Conflicting labels", "First file"]

    @staticmethod
    def distance(g) -> str:
        parts = [f"{g.max_distance} bits"] if g.kind == "near" and g.hash_confirmed else []
        if g.max_embedding_distance is not None:
            parts.append(f"{g.max_embedding_distance:.4f} cos")
        return ", ".join(parts)

    def cell(self, index, role):
        g = self.rows[index.row()]
        col = index.column()
        leak = ("maybe: " if g.grade == "look-alike" else "yes: ") + ", ".join(g.splits) if g.leaks else ""
        values = [g.grade, len(g.paths), self.distance(g), leak,
                  ", ".join(g.labels) if g.conflicting else "", g.paths[0]]
        if role == SORT_ROLE:
            return list(GRADES).index(g.grade) if col == 0 else values[col]
        if role == Qt.ItemDataRole.DisplayRole:
            return str(values[col])
        if role == Qt.ItemDataRole.ToolTipRole and col in (0, 2, 3):
            return f"{g.grade}: {GRADES[g.grade]}"
        if role == Qt.ItemDataRole.ToolTipRole and col == 5:
            return "\n".join(g.paths)
        if role == Qt.ItemDataRole.ForegroundRole and col == 0 and g.grade == "look-alike":
            return QColor(150, 90, 0)
        return None


class DuplicatesPanel:
    """Mixin of CurationView (gui/views/curation.py): the duplicates page and its actions."""

    def _duplicates_page(self) -> QWidget:
        self.threshold = QSpinBox()
        self.threshold.setRange(0, 64)
        self.threshold.setValue(DEFAULT_THRESHOLD)
        self.threshold.setToolTip("near duplicates: at most this many of the 256 DCT-hash bits differ (1-pixel shifts included)")
        self.dup_run = self._run_box()
        self.dup_run.addItem("hash only (no run)", None)
        self.dup_run.setToolTip("also pair images whose embeddings (of this run's best checkpoint) are close: "
                                "cropped or shifted copies and leakage the hash misses, graded look-alike")
        find = QPushButton("Find duplicates")
        find.clicked.connect(self.find_duplicates)
        self.dup_summary = QLabel(DUPLICATES_INTRO)
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
        keep_first.setToolTip("for exact and near copies; a look-alike group's images are excluded one by one "
                              "(select them, then Exclude selected)")
        exclude_sel = self.exclude_images_button = QPushButton("Exclude selected")
        exclude_sel.clicked.connect(self._exclude_selected_group_images)
        exclude_sel.setEnabled(False)
        self.group_grid.selectionModel().selectionChanged.connect(
            lambda *_: exclude_sel.setEnabled(bool(self.group_grid.selectionModel().selectedIndexes())))
        row = QHBoxLayout()
        row.addWidget(QLabel("Near-duplicate threshold (bits):"))
        row.addWidget(self.threshold)
        row.addWidget(QLabel("Embeddings:"))
        row.addWidget(self.dup_run)
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
        self.groups_table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.groups_table)
        split.addWidget(right)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([720, 480])
        page = QWidget()
        pl = QVBoxLayout(page)
        pl.addLayout(row)
        pl.addWidget(self.dup_summary)
        pl.addWidget(split, 1)
        return page

    def _reset_duplicates(self) -> None:
        """Another dataset (or a rescan): no group, summary or selection of the last one stays."""
        self.dup_summary.setText(DUPLICATES_INTRO)
        self.groups_model.set_rows([])
        self.group_images.set_items([])
        self.keep_first_button.setEnabled(False)
        self.exclude_images_button.setEnabled(False)

    def find_duplicates(self) -> None:
        result, threshold, run_dir = self.result, self.threshold.value(), self.dup_run.currentData()
        if run_dir:
            self._start(lambda stop: find_duplicates_with_run(result, run_dir, threshold=threshold, stop=stop),
                        self._show_groups)
        else:
            self._start(lambda stop: find_duplicates(result, threshold=threshold, stop=stop), self._show_groups)

    def _show_groups(self, groups) -> None:
        self.groups_model.set_rows(groups)
        grades = ", ".join(f"{sum(g.grade == k for g in groups)} {k}" for k in GRADES)
        sure = [g for g in groups if g.grade != "look-alike"]
        self.dup_summary.setText(f"{len(groups)} group(s): {grades}. Copies: {sum(g.leaks for g in sure)} leak across "
                                 f"splits, {sum(g.conflicting for g in sure)} have conflicting labels. Look-alikes are "
                                 f"only similar to the model: look before excluding.")
        self.message.emit("info", f"duplicates: {len(groups)} group(s) found ({grades})")

    def _current_group(self):
        idx = self.groups_table.currentIndex()
        return self.groups_model.rows[self.groups_proxy.mapToSource(idx).row()] if idx.isValid() else None

    def _group_selected(self, current, _prev) -> None:
        g = self._current_group()
        # one click may exclude copies, never look-alikes (select images to exclude those), nor copies
        # under different labels: which label is right is the user's call, not the sort order's
        self.keep_first_button.setEnabled(g is not None and len(g.paths) > 1 and g.grade != "look-alike"
                                          and not g.conflicting)
        self.keep_first_button.setToolTip(
            "these copies carry different labels: select the wrong ones and use 'Exclude selected'"
            if g is not None and g.conflicting else "")
        if g is None:
            return
        self.group_images.set_items([{"path": os.path.join(self.result.root, p), "rel": p, "caption": p,
                                      "tooltip": p} for p in g.paths])

    def _exclude(self, rels: list[str]) -> bool:
        """Through the session's journal (one file at once, several as a batch on a worker); the
        group's images leave the grid when the session says they moved."""
        return self.session.move_files("exclude", rels)

    def _exclude_all_but_first(self) -> None:
        g = self._current_group()
        if g is not None and g.grade != "look-alike" and not g.conflicting:
            self._exclude(g.paths[1:])

    def _exclude_selected_group_images(self) -> None:
        self._exclude([self.group_images.items[i.row()]["rel"] for i in self.group_grid.selectionModel().selectedIndexes()])

    def _drop_moved_group_images(self, gone: set[str]) -> None:
        if self.result is not None:
            for rel in gone:
                self.group_images.remove_path(os.path.join(self.result.root, rel))
