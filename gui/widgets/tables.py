"""Table and grid view helpers shared by the tabs: sortable proxies, configured views, the share bar."""
from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import (QAbstractItemView, QListView, QStyledItemDelegate, QTableView)
from balancelab.gui.widgets.table_models import SORT_ROLE, ClassTableModel


class BarDelegate(QStyledItemDelegate):
    """Draws the class share as a horizontal bar."""

    def paint(self, painter, option, index):
        value = index.data(ClassTableModel.BAR_ROLE)
        if value is None:
            return super().paint(painter, option, index)
        rect = option.rect.adjusted(4, 5, -4, -5)
        painter.save()
        painter.fillRect(rect.adjusted(0, 0, 0, 0), QColor("#eef0f3"))
        rect.setWidth(max(1 if value > 0 else 0, int(rect.width() * value)))
        painter.fillRect(rect, QColor("#3b6fb6"))
        painter.restore()


def sortable(model) -> QSortFilterProxyModel:
    proxy = QSortFilterProxyModel(model)
    proxy.setSourceModel(model)
    proxy.setSortRole(SORT_ROLE)
    return proxy


def make_table(model, stretch_last: bool = True, sortable_by_user: bool = False) -> QTableView:
    """A read-only row-selecting table; with ``sortable_by_user`` it keeps the model's order
    until the user clicks a header (Qt would otherwise sort by a default column at once)."""
    view = QTableView()
    view.setModel(model)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAlternatingRowColors(True)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(22)
    view.horizontalHeader().setStretchLastSection(stretch_last)
    view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
    if sortable_by_user:
        view.setSortingEnabled(True)
        view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)
    return view


def make_grid(model) -> QListView:
    view = QListView()
    view.setModel(model)
    view.setViewMode(QListView.ViewMode.IconMode)
    view.setResizeMode(QListView.ResizeMode.Adjust)
    view.setUniformItemSizes(True)
    view.setLayoutMode(QListView.LayoutMode.Batched)
    view.setBatchSize(500)
    view.setMovement(QListView.Movement.Static)
    view.setSpacing(4)
    view.setWordWrap(True)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    return view
