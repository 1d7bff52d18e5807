"""Thin Qt model adapters over engine data (scan results, metrics, runs, predictions)."""
from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QAbstractListModel, QAbstractTableModel, QModelIndex, QSize, Qt
from PySide6.QtGui import QBrush, QColor

from balancelab.engine.core.metrics import HEADLINE
from balancelab.engine.data.layout import Problem


class BaseTableModel(QAbstractTableModel):
    headers: list[str] = []

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.rows: list = []

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.headers)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if (role in (Qt.ItemDataRole.DisplayRole, Qt.ItemDataRole.ToolTipRole)
                and orientation == Qt.Orientation.Horizontal and 0 <= section < len(self.headers)):
            return self.headers[section]  # the tooltip: the full header where the view elides it
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        """``cell`` answers; a cell without a tooltip of its own gets its full text as one, so a
        column the view elides ("not an image…") can still be read."""
        if not index.isValid():
            return None
        value = self.cell(index, role)
        if value is None and role == Qt.ItemDataRole.ToolTipRole:
            text = self.cell(index, Qt.ItemDataRole.DisplayRole)
            return str(text) if text not in (None, "") else None
        return value

    def cell(self, index, role):
        """The value of a valid ``index`` for ``role``, or None (subclasses)."""
        return None

    @staticmethod
    def value_cell(values: list, index, role, decimals: int = 4):
        """The usual cell of a row of plain values: the value itself to sort by, floats shown with
        ``decimals`` places, everything else as text; None for other roles (the caller's)."""
        v = values[index.column()]
        if role == SORT_ROLE:
            return v
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{v:.{decimals}f}" if isinstance(v, float) else str(v)
        return None

    def set_rows(self, rows: list) -> None:
        self.beginResetModel()
        self.rows = list(rows)
        self.endResetModel()


SORT_ROLE = Qt.ItemDataRole.UserRole + 1


class ClassTableModel(BaseTableModel):
    """One row per class: name, count, share of the split, and a bar (drawn by BarDelegate)."""

    headers = ["Class", "Images", "Share", "Distribution"]
    BAR_ROLE = Qt.ItemDataRole.UserRole + 2

    def set_counts(self, counts: dict[str, int]) -> None:
        total = sum(counts.values()) or 1
        largest = max(counts.values(), default=0) or 1
        self.set_rows([(name, n, n / total, n / largest) for name, n in counts.items()])

    def cell(self, index, role):
        name, n, share, rel = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return [name, f"{n:,}", f"{share:.1%}", ""][col]
        if role == SORT_ROLE:
            return [name, n, share, n][col]
        if role == self.BAR_ROLE:
            return rel
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (1, 2):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ForegroundRole and n == 0:
            return QBrush(QColor("#b3261e"))
        return None

    def class_name(self, row: int) -> str:
        return self.rows[row][0]


class ProblemsModel(BaseTableModel):
    headers = ["File", "Problem", "Details"]

    def set_problems(self, problems: list[Problem]) -> None:
        self.set_rows(problems)

    def cell(self, index, role):
        p = self.rows[index.row()]
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            return [p.path, p.kind, p.reason][index.column()]
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{p.path}\n{p.kind}: {p.reason}"  # every column's full text
        return None


def heat_color(value: float, error: bool = False) -> QColor:
    """White to a saturated blue (or orange for errors). The square root and a floor for any non-zero
    value keep a 2% confusion visible next to a 95% diagonal."""
    value = float(np.clip(value, 0.0, 1.0))
    if value > 0:
        value = 0.12 + 0.88 * np.sqrt(value)
    if error:
        return QColor(int(255 - 30 * value), int(255 - 140 * value), int(255 - 210 * value))
    return QColor(int(255 - 200 * value), int(255 - 150 * value), int(255 - 40 * value))


class ConfusionMatrixModel(QAbstractTableModel):
    """Rows: true class, columns: predicted class. Counts or row-normalised, heat-coloured."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.classes: list[str] = []
        self.counts = np.zeros((0, 0), dtype=np.int64)
        self.normalized = False

    def set_matrix(self, classes: list[str], counts) -> None:
        self.beginResetModel()
        self.classes = list(classes)
        self.counts = np.asarray(counts, dtype=np.int64)
        self.endResetModel()

    def set_normalized(self, on: bool) -> None:
        self.normalized = on
        if self.classes:
            self.dataChanged.emit(self.index(0, 0), self.index(len(self.classes) - 1, len(self.classes) - 1))

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def columnCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.classes)

    def row_fraction(self, r: int, c: int) -> float:
        total = self.counts[r].sum()
        return float(self.counts[r, c] / total) if total else 0.0

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        r, c = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return f"{self.row_fraction(r, c):.2f}" if self.normalized else str(int(self.counts[r, c]))
        if role == Qt.ItemDataRole.BackgroundRole:
            return QBrush(heat_color(self.row_fraction(r, c), error=r != c))
        if role == Qt.ItemDataRole.ForegroundRole:
            return QBrush(QColor("white") if self.row_fraction(r, c) > 0.45 else QColor("#1b1b1f"))
        if role == Qt.ItemDataRole.TextAlignmentRole:
            return int(Qt.AlignmentFlag.AlignCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return (f"true {self.classes[r]}, predicted {self.classes[c]}: {int(self.counts[r, c])} images "
                    f"({self.row_fraction(r, c):.1%} of the class). Click to review them.")
        return None

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole:
            prefix = "pred " if orientation == Qt.Orientation.Horizontal else "true "
            return prefix + self.classes[section]
        return None

    def total(self) -> int:
        return int(self.counts.sum())


class PerClassModel(BaseTableModel):
    headers = ["Class", "Precision", "Recall", "F1", "Specificity", "Support", "Train images"]

    def set_metrics(self, per_class: list[dict], train_counts: list[int] | None) -> None:
        counts = train_counts or [0] * len(per_class)
        self.set_rows([(c, counts[i] if i < len(counts) else 0) for i, c in enumerate(per_class)])

    def cell(self, index, role):
        c, n_train = self.rows[index.row()]
        values = [c["name"], c["precision"], c["recall"], c["f1"], c.get("specificity", 0.0), c["support"], n_train]
        col = index.column()
        if role == SORT_ROLE:
            return values[col]
        if role == Qt.ItemDataRole.DisplayRole:
            v = values[col]
            return f"{v:.3f}" if isinstance(v, float) else str(v)
        if role == Qt.ItemDataRole.TextAlignmentRole and col > 0:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.BackgroundRole and col == 2:
            return QBrush(heat_color(values[2] * 0.5))
        return None


def model_and_strategy(metrics: dict, config: dict) -> tuple[str, str]:
    """What a run was: an ensemble's config.json copies its first member's settings, so its own
    description (``ensemble of 2: balanced-softmax, drw``) comes from metrics.json."""
    if isinstance(metrics.get("ensemble"), dict):
        model, strategy = str(metrics.get("model", config.get("model", ""))), str(metrics.get("strategy", ""))
        head = model.split(": ", 1)[0] + ": "  # "ensemble of 3: " said once, in the model column
        return model, strategy[len(head):] if model.startswith("ensemble of ") and strategy.startswith(head) else strategy
    deskewed = " (deskewed)" if config.get("deskew") is True else ""  # config.json is read back: only a real true
    return str(config.get("model", "")) + deskewed, str(config.get("strategy", ""))


def epochs_trained(metrics: dict, config: dict) -> tuple[str, int]:
    """(what the Epochs column says, its sort key): an ensemble trained no epochs of its own, and
    a stopped run says how far of its planned epochs it got."""
    if isinstance(metrics.get("ensemble"), dict):
        return "—", -1
    history = metrics.get("history")
    done = len(history) if isinstance(history, list) else 0
    planned = config.get("epochs")
    if metrics.get("stopped") is True and isinstance(planned, int) and not isinstance(planned, bool) and done < planned:
        return f"{done} of {planned} (stopped)", done
    return str(done), done


class RunsModel(BaseTableModel):
    headers = ["Run", "Model", "Strategy", "Epochs", *(m.label for m in HEADLINE.values()), "Evaluated on"]

    def cell(self, index, role):
        run = self.rows[index.row()]
        m, cfg = run["metrics"], run["config"]
        epochs, epochs_key = epochs_trained(m, cfg)
        values = [run["name"], *model_and_strategy(m, cfg), epochs_key,
                  *(m.get(key, 0.0) for key in HEADLINE), m.get("evaluated_on", "")]
        col = index.column()
        if role == SORT_ROLE:
            return values[col]
        if role == Qt.ItemDataRole.DisplayRole:
            v = values[col]
            return epochs if col == 3 else f"{v:.4f}" if isinstance(v, float) else str(v)
        if role == Qt.ItemDataRole.ToolTipRole:
            return run["dir"]
        return None


class ComparisonModel(BaseTableModel):
    headers = ["Metric", "Run A", "Run B", "B - A"]

    def clear(self) -> None:
        """No comparison: no rows, and the headers no longer name the runs of the last one."""
        self.headers = list(ComparisonModel.headers)
        self.set_rows([])
        self.headerDataChanged.emit(Qt.Orientation.Horizontal, 0, len(self.headers) - 1)

    def compare(self, a: dict, b: dict) -> None:
        rows = []
        for key in HEADLINE:
            rows.append((key, a.get(key, 0.0), b.get(key, 0.0)))
        b_recall = {c["name"]: c["recall"] for c in b.get("per_class", [])}
        for c in a.get("per_class", []):
            if c["name"] in b_recall:
                rows.append((f"recall {c['name']}", c["recall"], b_recall[c["name"]]))
        self.set_rows(rows)

    def cell(self, index, role):
        name, va, vb = self.rows[index.row()]
        col = index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            label = HEADLINE[name].label if name in HEADLINE else name
            return [label, f"{va:.4f}", f"{vb:.4f}", f"{vb - va:+.4f}"][col]
        if role == Qt.ItemDataRole.ForegroundRole and col == 3 and abs(vb - va) > 1e-9:
            return QBrush(QColor("#1e6b2f") if vb > va else QColor("#b3261e"))
        return None


class ThumbnailListModel(QAbstractListModel):
    """Images as an icon grid; pixmaps come lazily from a ThumbnailLoader."""

    def __init__(self, loader, parent=None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.items: list[dict] = []  # {"path": abs path, "caption": str, "tooltip": str, ...}
        self._rows_of: dict[str, list[int]] = {}
        loader.ready.connect(self._on_ready)

    def _index_rows(self) -> None:
        self._rows_of = {}
        for i, it in enumerate(self.items):
            self._rows_of.setdefault(it["path"], []).append(i)

    def set_items(self, items: list[dict]) -> None:
        self.beginResetModel()
        self.loader.cancel_pending()
        self.items = list(items)
        self._index_rows()
        self.endResetModel()

    def rowCount(self, parent=QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self.items)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        item = self.items[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            return self.loader.pixmap(item["path"])
        if role == Qt.ItemDataRole.DisplayRole:
            return item.get("caption", os.path.basename(item["path"]))
        if role == Qt.ItemDataRole.ToolTipRole:
            err = self.loader.errors.get(item["path"])
            return item.get("tooltip", item["path"]) + (f"\n{err}" if err else "")
        if role == Qt.ItemDataRole.SizeHintRole:
            return QSize(self.loader.size + 24, self.loader.size + 40)
        return None

    def _on_ready(self, path: str) -> None:
        for row in self._rows_of.get(path, ()):
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def remove_path(self, path: str) -> None:
        for row in sorted(self._rows_of.get(path, ()), reverse=True):
            self.beginRemoveRows(QModelIndex(), row, row)
            del self.items[row]
            self.endRemoveRows()
        self._index_rows()
