"""The strategy part of the Train form, built from the strategy registry (never from a copied list).

Each axis of :data:`AXES` becomes one row: a combo box for an exclusive axis (one sampler, one
weighting), check boxes for a combinable one (loss forms, batch mixing). A new
component registered in the engine appears here without touching this file.
"""
from __future__ import annotations

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QGridLayout, QWidget

from balancelab.engine.train.strategies import AXES, COMPONENTS, StrategyError, components_on, parse_strategy


CHECKS_PER_LINE = 3  # check boxes of one axis per line


class StrategyForm(QObject):
    """Per-axis widgets whose combined choice is a strategy string such as ``oversample+minority-augment``."""

    changed = Signal()

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.combos: dict[str, QComboBox] = {}
        self.checks: dict[str, QCheckBox] = {}
        self.rows: list[tuple[str, QWidget]] = []
        for axis in AXES.values():
            components = components_on(axis.key)
            if not components:
                continue
            if axis.exclusive:
                box = QComboBox()
                box.addItem(axis.off_label, None)
                for c in components:
                    box.addItem(c.name, c.name)
                    box.setItemData(box.count() - 1, c.description, Qt.ItemDataRole.ToolTipRole)
                box.currentIndexChanged.connect(self.changed)
                self.combos[axis.key] = box
                self.rows.append((axis.label, box))
            else:
                row = QWidget()
                layout = QGridLayout(row)  # wraps, so a long axis fits the form at 1280x800
                layout.setContentsMargins(0, 0, 0, 0)
                for i, c in enumerate(components):
                    check = QCheckBox(c.name)
                    check.setToolTip(c.description)
                    check.toggled.connect(self.changed)
                    self.checks[c.name] = check
                    layout.addWidget(check, i // CHECKS_PER_LINE, i % CHECKS_PER_LINE)
                layout.setColumnStretch(CHECKS_PER_LINE, 1)
                self.rows.append((axis.label, row))

    def strategy(self) -> str:
        parts = [box.currentData() for box in self.combos.values() if box.currentData()]
        parts += [name for name, check in self.checks.items() if check.isChecked()]
        return "+".join(parts) or "none"

    def set_strategy(self, text: str) -> bool:
        """Show ``text`` in the widgets; False (and nothing changed) when it does not parse."""
        try:
            plan = parse_strategy(text)
        except StrategyError:
            return False
        blockers = [w.blockSignals(True) for w in (*self.combos.values(), *self.checks.values())]
        for axis, box in self.combos.items():
            chosen = plan.on(axis)
            box.setCurrentIndex(box.findData(chosen[0]) if chosen else 0)
        for name, check in self.checks.items():
            check.setChecked(plan.has(name))
        for w, b in zip((*self.combos.values(), *self.checks.values()), blockers):
            w.blockSignals(b)
        self.changed.emit()
        return True

    def describe(self) -> str:
        """The chosen strategy and one line per component, for the form's hint label."""
        name = self.strategy()
        plan = parse_strategy(name)
        lines = [f"<b>{name}</b>"] + [f"• {c}: {COMPONENTS[c].description}" for c in plan.components]
        return "<br>".join(lines if plan.components else lines + ["• plain cross-entropy on the data as it is"])
