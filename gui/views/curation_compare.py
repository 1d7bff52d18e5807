"""Curation tab, compare page: several strategies x seeds on one split, typed combinations
included; a summary table and a bar chart."""
from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QCheckBox, QHBoxLayout, QHeaderView, QLabel, QLineEdit, QListWidget, QListWidgetItem,
                               QPushButton, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from balancelab.engine.experiments.compare import DEFAULT_SEEDS, DEFAULT_STRATEGIES, TABLE_COLUMNS, compare, scored_on
from balancelab.engine.core.metrics import format_mean_spread
from balancelab.engine.train.config import SETTING_HELP, TrainConfig
from balancelab.engine.train.strategies import STRATEGIES, StrategyError, parse_strategy

from balancelab.gui.widgets.charts import ChartCanvas, PALETTE
from balancelab.gui.widgets.tables import make_table, sortable
from balancelab.gui.widgets.table_models import SORT_ROLE, BaseTableModel

COMPARE_NOTE = "Every strategy and seed is trained on the same train/validation split."
COMPARE_INTRO = ("Tick strategies (or type combinations) and press Compare:\n"
                 "balanced accuracy, macro-F1 and minority recall per strategy appear here.")


class SummaryModel(BaseTableModel):
    headers = ["Strategy", "Runs", *TABLE_COLUMNS.values()]

    def cell(self, index, role):
        s = self.rows[index.row()]
        col = index.column()
        if role == SORT_ROLE:
            return [s["strategy"], s["runs"], *(s[k + "_mean"] for k in TABLE_COLUMNS)][col]
        if role == Qt.ItemDataRole.DisplayRole:
            if col < 2:
                return str([s["strategy"], s["runs"]][col])
            key = list(TABLE_COLUMNS)[col - 2]
            return format_mean_spread(s[key + "_mean"], s[key + "_std"], s["runs"])
        return None


class ComparePanel:
    """Mixin of CurationView (gui/views/curation.py): the strategy-comparison page."""

    def _compare_page(self) -> QWidget:
        self.strategy_list = QListWidget()
        for name, text in STRATEGIES.items():
            item = QListWidgetItem(name)
            item.setToolTip(text)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if name in DEFAULT_STRATEGIES else Qt.CheckState.Unchecked)
            self.strategy_list.addItem(item)
        self.strategy_list.setMaximumWidth(220)
        self.seeds = QSpinBox()
        self.seeds.setRange(1, 20)
        self.seeds.setValue(DEFAULT_SEEDS)
        self.cmp_epochs = QSpinBox()
        self.cmp_epochs.setRange(1, 500)
        self.cmp_epochs.setValue(TrainConfig.epochs)
        self.cmp_model = self._small_model_box()
        self.cmp_model.setCurrentIndex(self.cmp_model.findData(TrainConfig.model))
        self.cmp_deskew = QCheckBox("Deskew")
        self.cmp_deskew.setToolTip(SETTING_HELP["deskew"][0].upper() + SETTING_HELP["deskew"][1:])
        run = QPushButton("Compare")
        run.clicked.connect(self.run_compare)
        self.summary_model = SummaryModel(self)
        self.summary_table = make_table(sortable(self.summary_model), sortable_by_user=True)
        self.summary_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.cmp_chart = ChartCanvas(self, height=2.6)
        self.cmp_chart.empty_message(COMPARE_INTRO)
        self.combinations = QLineEdit()
        self.combinations.setPlaceholderText("also compare combinations, e.g. oversample+minority-augment, "
                                             "balanced-sampler+focal")
        row = QHBoxLayout()
        for w in (QLabel("Seeds:"), self.seeds, QLabel("Epochs:"), self.cmp_epochs, QLabel("Model:"), self.cmp_model, self.cmp_deskew, run):
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
        self.cmp_note = QLabel(COMPARE_NOTE)
        self.cmp_note.setWordWrap(True)
        pl.addWidget(self.cmp_note)
        pl.addWidget(split, 1)
        return page

    def _reset_compare(self) -> None:
        """Another dataset (or a rescan): the last comparison's table and chart were of other data."""
        self.summary_model.set_rows([])
        self.cmp_chart.empty_message(COMPARE_INTRO)
        self.cmp_note.setText(COMPARE_NOTE)

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
        deskew = self.cmp_deskew.isChecked()
        self._start(lambda stop: compare(root, strategies, seeds, out, stop=stop, model=model, epochs=epochs,
                                         deskew=deskew), self._show_comparison)

    def _show_comparison(self, result) -> None:
        summary = result["summary"]
        self.summary_model.set_rows(summary)
        self.cmp_note.setText(f"{COMPARE_NOTE} {scored_on(result['rows'])}")
        folders = {os.path.dirname(r["run_dir"]) for r in result["rows"] if r.get("run_dir")}
        self.message.emit("info", f"compare: {len(summary)} strateg{'y' if len(summary) == 1 else 'ies'} measured"
                          + (f"; their runs are in {', '.join(sorted(folders))}" if folders else ""))
        self.cmp_chart.plot(lambda: self._draw_comparison(summary))

    def _draw_comparison(self, summary: list[dict]) -> None:
        ax = self.cmp_chart.ax
        x = np.arange(len(summary))
        for i, (key, label) in enumerate(TABLE_COLUMNS.items()):
            spread = [s[key + "_std"] if s["runs"] >= 2 else 0.0 for s in summary]  # no error bar from one seed
            ax.bar(x + (i - 1) * 0.27, [s[key + "_mean"] for s in summary], 0.27,
                   yerr=spread if any(spread) else None, label=label, color=PALETTE[i], capsize=3)
        ax.set_xticks(x)
        ax.set_xticklabels([s["strategy"] for s in summary], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
