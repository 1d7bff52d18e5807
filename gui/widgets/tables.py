"""Table and grid view helpers shared by the tabs: sortable proxies, configured views, the share bar."""
from __future__ import annotations

from PySide6.QtCore import QSortFilterProxyModel, Qt
from PySide6.QtGui import QColor, QPainter
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


class MessageTable(QTableView):
    """A table that says in its empty area why it is empty and what fills it (an empty grid says nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self._empty = ""

    def set_empty_message(self, text: str) -> None:
        self._empty = text
        self.viewport().update()

    def paintEvent(self, event) -> None:
        super().paintEvent(event)
        model = self.model()
        if self._empty and model is not None and model.rowCount() == 0:
            painter = QPainter(self.viewport())
            painter.setPen(QColor("#5f6368"))
            rect = self.viewport().rect().adjusted(12, 12, -12, -12)
            painter.drawText(rect, int(Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop | Qt.TextFlag.TextWordWrap),
                             self._empty)
            painter.end()


def make_table(model, stretch_last: bool = True, sortable_by_user: bool = False, empty: str = "") -> MessageTable:
    """A read-only row-selecting table; with ``sortable_by_user`` it keeps the model's order
    until the user clicks a header (Qt would otherwise sort by a default column at once);
    ``empty``: what the table says while it has no rows."""
    view = MessageTable()
    view.set_empty_message(empty)
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
