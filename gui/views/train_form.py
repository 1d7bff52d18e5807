"""The settings half of the Train tab: model, strategy, schedule and device, with a preview of the
class mix the chosen strategy makes the model see. Defaults come from TrainConfig; the last
choices are kept as preferences."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSettings, Qt
from PySide6.QtWidgets import (QCheckBox, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QFrame, QGroupBox, QHBoxLayout, QLabel,
                               QLineEdit, QPushButton, QScrollArea, QSpinBox, QVBoxLayout, QWidget)

from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.experiments.recipe import Recipe
from balancelab.engine.train.augment import AUGMENTATIONS
from balancelab.engine.train.config import FINETUNE, INT_RANGES, SCHEDULES, SETTING_HELP, TrainConfig
from balancelab.engine.data.splits import trainable_classes
from balancelab.engine.train.strategies import BAGGING
from balancelab.engine.train.device import describe_device
from balancelab.engine.train.models import MODELS
from balancelab.engine.train.strategies import StrategyError, effective_class_mix, parse_strategy
from balancelab.gui.preferences import on_off, real_number, whole_number
from balancelab.gui.widgets.charts import ChartCanvas, grouped_bars
from balancelab.gui.widgets.strategy_form import StrategyForm


def combo(items: list[str]) -> QComboBox:
    box = QComboBox()
    for it in items:
        box.addItem(it, it)
    return box


def spin(lo: int, hi: int, value: int) -> QSpinBox:
    s = QSpinBox()
    s.setRange(lo, hi)
    s.setValue(value)
    return s


def setting_spin(name: str, value: int) -> QSpinBox:
    """A spin box over the range TrainConfig accepts for ``name`` (one owner of the limits; a Qt
    spin box stops at 2^31 - 1)."""
    lo, hi = INT_RANGES[name]
    return spin(lo, min(hi if hi is not None else QT_INT_MAX, QT_INT_MAX), value)


QT_INT_MAX = 2**31 - 1


class TrainForm(QScrollArea):
    """Scrolls, so the window fits a 1280x800 screen while Start/Stop stay in view."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.result: ScanResult | None = None
        self.model_box = QComboBox()
        for spec in MODELS.values():
            self.model_box.addItem(spec.name, spec.name)
            self.model_box.setItemData(self.model_box.count() - 1, spec.description, Qt.ItemDataRole.ToolTipRole)
        defaults = TrainConfig(data="", out="")  # the one place defaults live
        self.model_box.setCurrentIndex(self.model_box.findData(defaults.model))
        self.strategy_form = StrategyForm(self)
        self.strategy_label = QLabel()
        self.strategy_label.setWordWrap(True)
        self.strategy_label.setObjectName("hint")
        self.augment_box = combo(list(AUGMENTATIONS))
        self.augment_box.setCurrentIndex(self.augment_box.findData(defaults.augment))
        for i, name in enumerate(AUGMENTATIONS):
            self.augment_box.setItemData(i, AUGMENTATIONS[name], Qt.ItemDataRole.ToolTipRole)
        self.deskew = QCheckBox("straighten slanted strokes")
        self.deskew.setChecked(defaults.deskew)
        self.schedule_box = combo(list(SCHEDULES))
        self.schedule_box.setCurrentIndex(self.schedule_box.findData(defaults.schedule))
        self.bagging_members = setting_spin("bagging_members", defaults.bagging_members)
        self.epochs = setting_spin("epochs", defaults.epochs)
        self.batch = setting_spin("batch_size", defaults.batch_size)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 10.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(defaults.lr)
        devices, found = describe_device()
        self.device_box = combo(devices)
        self.device_label = QLabel(found)
        self.device_label.setObjectName("hint")
        self.seed = setting_spin("seed", defaults.seed)
        self.image_size = setting_spin("image_size", defaults.image_size)
        self.image_size.setSpecialValueText("model default")
        self.pretrained = QLineEdit()
        self.pretrained.setPlaceholderText("from scratch (or a weights file / 'imagenet' for the torch cache)")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_weights)
        self.finetune = combo(list(FINETUNE))
        self.finetune.setCurrentIndex(self.finetune.findData(defaults.finetune))
        pre_row = QHBoxLayout()
        pre_row.addWidget(self.pretrained, 1)
        pre_row.addWidget(browse)

        for name, widget in (("schedule", self.schedule_box), ("bagging_members", self.bagging_members),
                             ("epochs", self.epochs), ("batch_size", self.batch), ("lr", self.lr), ("seed", self.seed),
                             ("image_size", self.image_size), ("pretrained", self.pretrained),
                             ("finetune", self.finetune), ("deskew", self.deskew)):
            text = SETTING_HELP[name]  # the words of train --help: one owner
            widget.setToolTip(text[0].upper() + text[1:])
        form = QFormLayout()
        form.addRow("Model", self.model_box)
        for label, widget in self.strategy_form.rows:
            form.addRow(label, widget)
        form.addRow("Bagging members (k)", self.bagging_members)
        form.addRow("Augmentation", self.augment_box)
        form.addRow("Deskew", self.deskew)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Learning rate", self.lr)
        form.addRow("LR schedule", self.schedule_box)
        form.addRow("Device", self.device_box)
        form.addRow("", self.device_label)
        form.addRow("Seed", self.seed)
        form.addRow("Image size", self.image_size)
        form.addRow("Pretrained", pre_row)
        form.addRow("Fine-tune", self.finetune)
        form_box = QGroupBox("Balance && train")
        form_box.setLayout(form)

        # the class-mix preview is shown beside the form, not under it (below the fold even at
        # 1920x1080): the Train view places ``preview_box`` above the live curves
        self.preview = ChartCanvas(None, height=2.4)
        self.preview.setMinimumHeight(150)
        self.preview_box = QGroupBox("What the model sees per epoch (after sampling / weighting)")
        QVBoxLayout(self.preview_box).addWidget(self.preview)
        settings = QWidget()
        sl = QVBoxLayout(settings)
        sl.setContentsMargins(0, 0, 6, 0)
        sl.addWidget(form_box)
        sl.addWidget(self.strategy_label)
        sl.addStretch(1)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setWidget(settings)

        self.strategy_form.changed.connect(self._strategy_changed)
        self.model_box.currentIndexChanged.connect(self._model_changed)
        self.restore_settings()
        self._strategy_changed()
        self._model_changed()

    # --- strategy and model -------------------------------------------------------------------

    def strategy(self) -> str:
        return self.strategy_form.strategy()

    def _strategy_changed(self) -> None:
        self.strategy_label.setText(self.strategy_form.describe())
        self.bagging_members.setEnabled(BAGGING.name in self.strategy().split("+"))
        self.draw_preview()

    def _model_changed(self) -> None:
        spec = MODELS[self.model_box.currentData()]
        self.pretrained.setEnabled(spec.torchvision)
        self.finetune.setEnabled(spec.torchvision)
        self.model_box.setToolTip(spec.description)

    def _pretrained(self) -> str | None:
        """The weights to start from; none for a model trained from scratch (the field is disabled
        then, but keeps what was typed for a torchvision model, which must not refuse the run)."""
        return (self.pretrained.text().strip() or None) if self.pretrained.isEnabled() else None

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Pretrained weights", "", "PyTorch weights (*.pt *.pth *.bin);;All files (*)")
        if path:
            self.pretrained.setText(path)

    # --- class-mix preview --------------------------------------------------------------------

    def set_result(self, result: ScanResult) -> None:
        self.result = result
        self.draw_preview()

    def trained_counts(self) -> tuple[list[str], list[int]]:
        """The classes a model will be trained on and their training images: a class too small to
        train gets no share of an epoch, and a class only in test/ no bar."""
        if self.result is None or self.result.training_split is None:
            return [], []
        classes, _ = trainable_classes(self.result)
        counts = self.result.class_counts(self.result.training_split)
        return classes, [counts.get(c, 0) for c in classes]

    def draw_preview(self) -> None:
        if self.result is None:
            self.preview.empty_message("open a dataset to preview the class mix")
            return
        classes, counts = self.trained_counts()
        if not classes:
            self.preview.empty_message("no class of this dataset can be trained")
            return
        try:
            plan = parse_strategy(self.strategy())
            mix = effective_class_mix(plan, np.array(counts), drw_epoch=0)
        except (StrategyError, ValueError) as exc:
            self.preview.empty_message(str(exc))
            return
        total = sum(counts) or 1
        series = {
            "data share": [c / total for c in counts],
            "images per epoch (share)": [s / (sum(mix["samples_per_epoch"]) or 1) for s in mix["samples_per_epoch"]],
            "share of the loss": mix["loss_share"],
        }
        self.preview.plot(lambda: grouped_bars(self.preview.ax, classes, series, "share", legend_above=True))

    # --- the form as a config -----------------------------------------------------------------

    def run_label(self) -> str:
        return f"{self.model_box.currentData()}-{self.strategy().replace('+', '_')}"

    def config(self, root: str, out: str) -> TrainConfig:
        return TrainConfig(
            data=root, out=out, model=self.model_box.currentData(), strategy=self.strategy(),
            epochs=self.epochs.value(), batch_size=self.batch.value(), lr=self.lr.value(),
            device=self.device_box.currentData(), seed=self.seed.value(), image_size=self.image_size.value(),
            schedule=self.schedule_box.currentData(), bagging_members=self.bagging_members.value(),
            augment=self.augment_box.currentData(), deskew=self.deskew.isChecked(), pretrained=self._pretrained(),
            finetune=self.finetune.currentData() if self._pretrained() else "all",
        )

    def apply_recipe(self, r: Recipe) -> None:
        """Show a proposed recipe in the form (the user can still change anything before Start)."""
        self.model_box.setCurrentIndex(self.model_box.findData(r.model))
        self.strategy_form.set_strategy(r.strategy)
        self.epochs.setValue(r.epochs)
        self.batch.setValue(r.batch_size)
        self.lr.setValue(r.lr)
        self.image_size.setValue(r.image_size)

    # --- preferences --------------------------------------------------------------------------

    _WIDGETS = ("model_box", "augment_box", "device_box", "schedule_box")
    _SPINS = ("epochs", "batch", "seed", "image_size", "bagging_members")

    def save_settings(self) -> None:
        s = QSettings()
        for name in self._WIDGETS:
            s.setValue(f"train/{name}", getattr(self, name).currentData())
        for name in self._SPINS:
            s.setValue(f"train/{name}", getattr(self, name).value())
        s.setValue("train/lr", self.lr.value())
        s.setValue("train/deskew", self.deskew.isChecked())
        s.setValue("train/strategy", self.strategy())

    def restore_settings(self) -> None:
        s = QSettings()
        for name in self._WIDGETS:
            value = s.value(f"train/{name}")
            box = getattr(self, name)
            i = box.findData(value) if value is not None else -1
            if i >= 0:
                box.setCurrentIndex(i)
        for name in self._SPINS:  # the preferences file is untrusted: a damaged value keeps the default
            box = getattr(self, name)
            value = whole_number(s.value(f"train/{name}"), box.minimum(), box.maximum())
            if value is not None:
                box.setValue(value)
        lr = real_number(s.value("train/lr"), self.lr.minimum(), self.lr.maximum())
        if lr is not None:
            self.lr.setValue(lr)
        deskew = on_off(s.value("train/deskew"))
        if deskew is not None:
            self.deskew.setChecked(deskew)
        strategy = s.value("train/strategy")
        if isinstance(strategy, str):
            self.strategy_form.set_strategy(strategy)  # a stale or damaged preference is ignored
