"""Balance & train tab: strategy/model form with a preview of the effective class mix, and the
live training view (curves, progress, ETA, images per second, Stop)."""
from __future__ import annotations

import dataclasses

import numpy as np
from PySide6.QtCore import QSettings, Qt, Signal
from PySide6.QtWidgets import (QFrame, QScrollArea, QComboBox, QDoubleSpinBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout,
                               QLabel, QLineEdit, QProgressBar, QPushButton, QSpinBox, QSplitter, QVBoxLayout, QWidget)

from balancelab.engine.train.augment import AUGMENTATIONS
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.train.models import MODELS
from balancelab.engine.core.paths import new_run_dir, runs_dir_for
from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.train.strategies import StrategyError, effective_class_mix, parse_strategy
from balancelab.engine.data.splits import SplitError
from balancelab.engine.experiments.recipe import RecipeError, recommend
from balancelab.engine.experiments.recipe_search import SearchRound, SearchStep, search
from balancelab.engine.train.run_events import BatchProgress, CheckpointSaved, EpochEnd, MemberStep, TrainStarted
from balancelab.engine.train.run import train

from balancelab.gui.widgets.charts import ChartCanvas, grouped_bars
from balancelab.gui.widgets.live_curves import LiveCurves
from balancelab.gui.widgets.strategy_form import StrategyForm
from balancelab.gui.worker import GeneratorThread
from balancelab.engine.train.device import describe_device



class TrainView(QWidget):
    run_finished = Signal(str)  # run folder
    message = Signal(str, str)  # level, text
    training_state = Signal(bool)

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.result: ScanResult | None = None
        self.thread: GeneratorThread | None = None
        self.history: list[dict] = []

        # --- form ---
        self.model_box = QComboBox()
        for spec in MODELS.values():
            self.model_box.addItem(spec.name, spec.name)
            self.model_box.setItemData(self.model_box.count() - 1, spec.description, Qt.ItemDataRole.ToolTipRole)
        defaults = TrainConfig(data="", out="")  # the one place defaults live
        self.strategy_form = StrategyForm(self)
        self.strategy_label = QLabel()
        self.strategy_label.setWordWrap(True)
        self.strategy_label.setObjectName("hint")
        self.augment_box = self._combo(list(AUGMENTATIONS))
        self.augment_box.setCurrentIndex(self.augment_box.findData(defaults.augment))
        for i, name in enumerate(AUGMENTATIONS):
            self.augment_box.setItemData(i, AUGMENTATIONS[name], Qt.ItemDataRole.ToolTipRole)
        self.epochs = self._spin(1, 1000, defaults.epochs)
        self.batch = self._spin(1, 4096, defaults.batch_size)
        self.lr = QDoubleSpinBox()
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 10.0)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(defaults.lr)
        devices, found = describe_device()
        self.device_box = self._combo(devices)
        self.device_label = QLabel(found)
        self.device_label.setObjectName("hint")
        self.seed = self._spin(0, 2**31 - 1, defaults.seed)
        self.image_size = self._spin(0, 1024, 0)
        self.image_size.setSpecialValueText("model default")
        self.pretrained = QLineEdit()
        self.pretrained.setPlaceholderText("from scratch (or a weights file / 'imagenet' for the torch cache)")
        browse = QPushButton("…")
        browse.setFixedWidth(28)
        browse.clicked.connect(self._browse_weights)
        self.finetune = self._combo(["all", "head"])
        pre_row = QHBoxLayout()
        pre_row.addWidget(self.pretrained, 1)
        pre_row.addWidget(browse)

        form = QFormLayout()
        form.addRow("Model", self.model_box)
        for label, widget in self.strategy_form.rows:
            form.addRow(label, widget)
        form.addRow("Augmentation", self.augment_box)
        form.addRow("Epochs", self.epochs)
        form.addRow("Batch size", self.batch)
        form.addRow("Learning rate", self.lr)
        form.addRow("Device", self.device_box)
        form.addRow("", self.device_label)
        form.addRow("Seed", self.seed)
        form.addRow("Image size", self.image_size)
        form.addRow("Pretrained", pre_row)
        form.addRow("Fine-tune", self.finetune)
        form_box = QGroupBox("Balance && train")
        form_box.setLayout(form)

        self.preview = ChartCanvas(self, height=2.4)
        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("primary")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 1)
        buttons.addWidget(self.stop_button)

        settings = QWidget()  # scrolls, so the window fits a 1280x800 screen; Start/Stop stay in view
        sl = QVBoxLayout(settings)
        sl.setContentsMargins(0, 0, 6, 0)
        sl.addWidget(form_box)
        sl.addWidget(self.strategy_label)
        sl.addWidget(QLabel("What the model sees per epoch (after sampling / weighting):"))
        self.preview.setMinimumHeight(200)
        sl.addWidget(self.preview, 1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(settings)
        # --- one click: the proposed recipe, or a budgeted search for the best one ---
        self.recipe = None
        self.recipe_label = QLabel("Open a dataset to get a proposed recipe.")
        self.recipe_label.setWordWrap(True)
        self.recipe_label.setObjectName("hint")
        self.train_recipe_button = QPushButton("Train the proposed recipe")
        self.train_recipe_button.setObjectName("primary")
        self.train_recipe_button.clicked.connect(self.train_recipe)
        self.search_button = QPushButton("Find the best recipe")
        self.search_button.setToolTip("Successive halving over the registry's strategies on this dataset, within a "
                                      "budget of about 3 full trainings; every run is kept. Stop cancels it.")
        self.search_button.clicked.connect(self.find_best_recipe)
        for b in (self.train_recipe_button, self.search_button):
            b.setEnabled(False)
        recipe_buttons = QHBoxLayout()
        recipe_buttons.addWidget(self.train_recipe_button, 1)
        recipe_buttons.addWidget(self.search_button)
        recipe_box = QGroupBox("Balance && train in one click")
        rb = QVBoxLayout(recipe_box)
        rb.addWidget(self.recipe_label)
        rb.addLayout(recipe_buttons)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(recipe_box)
        ll.addWidget(scroll, 1)
        ll.addLayout(buttons)

        # --- live view ---
        self.status = QLabel("Idle.")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFormat("%p%")
        self.rate_label = QLabel("")
        self.curves = LiveCurves(self)
        right = QWidget()
        rl = QVBoxLayout(right)
        rl.addWidget(self.status)
        rl.addWidget(self.progress)
        rl.addWidget(self.rate_label)
        rl.addWidget(self.curves, 1)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([430, 670])
        layout = QVBoxLayout(self)
        layout.addWidget(split)

        self.strategy_form.changed.connect(self._strategy_changed)
        self.model_box.currentIndexChanged.connect(self._model_changed)
        self._restore_settings()
        self._strategy_changed()
        self._model_changed()
        self._draw_curves()
        session.dataset_opened.connect(self.set_result)

    @staticmethod
    def _combo(items: list[str]) -> QComboBox:
        box = QComboBox()
        for it in items:
            box.addItem(it, it)
        return box

    @staticmethod
    def _spin(lo: int, hi: int, value: int) -> QSpinBox:
        s = QSpinBox()
        s.setRange(lo, hi)
        s.setValue(value)
        return s

    # --- strategy -----------------------------------------------------------------------------

    def strategy(self) -> str:
        return self.strategy_form.strategy()

    def _strategy_changed(self) -> None:
        self.strategy_label.setText(self.strategy_form.describe())
        self._draw_preview()

    def _model_changed(self) -> None:
        spec = MODELS[self.model_box.currentData()]
        self.pretrained.setEnabled(spec.torchvision)
        self.finetune.setEnabled(spec.torchvision)
        self.model_box.setToolTip(spec.description)

    def _browse_weights(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Pretrained weights", "", "PyTorch weights (*.pt *.pth *.bin);;All files (*)")
        if path:
            self.pretrained.setText(path)

    def train_counts(self) -> list[int]:
        if self.result is None:
            return []
        split = self.result.training_split
        return list(self.result.class_counts(split).values()) if split else []

    def _draw_preview(self) -> None:
        if self.result is None:
            self.preview.empty_message("open a dataset to preview the class mix")
            return
        counts = self.train_counts()
        classes = self.result.classes
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
        self.preview.plot(lambda: grouped_bars(self.preview.ax, classes, series, "share"))

    # --- training -------------------------------------------------------------------------------

    def set_result(self, result: ScanResult) -> None:
        self.result = result
        self._propose_recipe(result)
        self.start_button.setEnabled(True)
        self._draw_preview()

    def run_label(self) -> str:
        return f"{self.model_box.currentData()}-{self.strategy().replace('+', '_')}"

    def config(self) -> TrainConfig:
        """The form as a config; ``out`` is a placeholder in the dataset's runs folder until
        ``start`` reserves a fresh, timestamped folder for the run."""
        root = self.result.root
        return TrainConfig(
            data=root, out=str(runs_dir_for(root) / self.run_label()), model=self.model_box.currentData(), strategy=self.strategy(),
            epochs=self.epochs.value(), batch_size=self.batch.value(), lr=self.lr.value(),
            device=self.device_box.currentData(), seed=self.seed.value(), image_size=self.image_size.value(),
            augment=self.augment_box.currentData(), pretrained=self.pretrained.text().strip() or None,
            finetune=self.finetune.currentData() if self.pretrained.text().strip() else "all",
        )

    def is_training(self) -> bool:
        return self.thread is not None and self.thread.isRunning()

    def start(self) -> None:
        if self.result is None:
            self.message.emit("error", "Open a dataset first.")
            return
        if self.is_training():
            self.message.emit("error", "A training is already running; stop it first.")
            return
        cfg = self.config()
        try:
            cfg.validate()
        except ConfigError as exc:
            self.message.emit("error", str(exc))
            return
        try:
            cfg = dataclasses.replace(cfg, out=str(new_run_dir(cfg.data, self.run_label())))
        except OSError as exc:
            self.message.emit("error", f"cannot create a run folder: {exc}")
            return
        self._save_settings()
        self.history = []
        self.curves.clear_batches()
        self._draw_curves()
        result = self.result
        self.thread = GeneratorThread(lambda stop: train(cfg, stop, scan_result=result),
                                      throttle=(BatchProgress, Progress, MemberStep), interval=0.1, parent=self)
        self.thread.event.connect(self._on_event)
        self.thread.finished.connect(self._on_thread_finished)
        self._set_running(True)
        self.status.setText(f"Starting {cfg.model} with {cfg.strategy}…")
        self.progress.setValue(0)
        self.message.emit("info", f"training started: {cfg.out}")
        self.thread.start()

    # --- one click ------------------------------------------------------------------------------

    def _propose_recipe(self, result: ScanResult) -> None:
        try:
            self.recipe = recommend(result)
        except (RecipeError, SplitError) as exc:
            self.recipe = None
            self.recipe_label.setText(f"No recipe to propose: {exc}")
        else:
            r = self.recipe
            self.recipe_label.setText(f"<b>Proposed:</b> {r.model}, <b>{r.strategy}</b>, {r.epochs} epochs, batch "
                                      f"{r.batch_size}, {r.image_size} px — {r.reason}.")
        busy = self.is_training()
        self.train_recipe_button.setEnabled(self.recipe is not None and not busy)
        self.search_button.setEnabled(self.recipe is not None and not busy)

    def apply_recipe(self) -> None:
        """Show the proposed recipe in the form (the user can still change anything before Start)."""
        r = self.recipe
        if r is None:
            return
        self.model_box.setCurrentIndex(self.model_box.findData(r.model))
        self.strategy_form.set_strategy(r.strategy)
        self.epochs.setValue(r.epochs)
        self.batch.setValue(r.batch_size)
        self.lr.setValue(r.lr)
        self.image_size.setValue(r.image_size)

    def train_recipe(self) -> None:
        self.apply_recipe()
        self.start()

    def find_best_recipe(self) -> None:
        if self.result is None or self.recipe is None or self.is_training():
            return
        root, seed, device = self.result.root, self.seed.value(), self.device_box.currentData()
        self.history = []
        self.curves.clear_batches()
        self._draw_curves()
        self.thread = GeneratorThread(lambda stop: search(root, 3.0, seed=seed, stop=stop, device=device),
                                      throttle=(BatchProgress, Progress, SearchStep), interval=0.1, parent=self)
        self.thread.event.connect(self._on_search_event)
        self.thread.finished.connect(self._on_thread_finished)
        self._set_running(True)
        self.status.setText("Searching for the best recipe: every candidate trains 1 epoch, the best half goes on…")
        self.message.emit("info", f"recipe search started on {root}")
        self.thread.start()

    def _on_search_event(self, ev) -> None:
        if isinstance(ev, SearchStep):
            if isinstance(ev.event, TrainStarted):  # the curves follow the candidate now training
                self.history = []
                self.curves.clear_batches()
                self._draw_curves()
            if not isinstance(ev.event, (Finished, Failed)):
                self._on_event(ev.event)
        elif isinstance(ev, SearchRound):
            rows = "".join(f"<tr><td>{c.strategy}</td><td>{c.state}</td><td>{c.epochs}</td>"
                           f"<td>{'' if c.score is None else f'{c.score:.4f}'}</td></tr>" for c in ev.leaderboard)
            self.status.setText(f"Round {ev.round + 1}/{ev.rounds} (to {ev.target_epochs} epochs; {ev.epochs_used}/"
                                f"{ev.epochs_budget} epochs of the budget used) — validation balanced accuracy:"
                                f"<table cellspacing=6><tr><th align=left>strategy</th><th align=left>state</th>"
                                f"<th>epochs</th><th>score</th></tr>{rows}</table>")
        elif isinstance(ev, Failed):
            self._on_event(ev)
        elif isinstance(ev, Finished) and ev.result is not None and ev.result.winner:
            res = ev.result
            self.message.emit("info", f"best recipe: {res.winner}, trained to full length in {res.winner_run_dir}")
            self.status.setText(self.status.text() + f"<br><b>Winner: {res.winner}</b> — its full-length run is in "
                                f"Results.")
            self.session.add_run(res.winner_run_dir)
        elif isinstance(ev, Finished):
            self.status.setText(self.status.text() + "<br>The search was stopped; every finished run is kept.")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running and self.result is not None)
        self.stop_button.setEnabled(running)
        for b in (self.train_recipe_button, self.search_button):
            b.setEnabled(not running and self.recipe is not None)
        self.training_state.emit(running)

    def stop(self) -> None:
        if self.is_training():
            self.thread.request_stop()
            self.stop_button.setEnabled(False)
            self.status.setText("Stopping after the current batch; the best checkpoint is kept…")

    def _on_thread_finished(self) -> None:
        self._set_running(False)

    def _on_member_event(self, step: MemberStep) -> None:
        """A balanced-bagging member's event: the curves follow the member now training, the status names it."""
        if isinstance(step.event, TrainStarted):
            self.history = []
            self.curves.clear_batches()
            self._draw_curves()
        if not isinstance(step.event, (Finished, Failed)):
            self._on_event(step.event)
        if isinstance(step.event, (TrainStarted, Progress, Finished)):
            done = " done" if isinstance(step.event, Finished) else ""
            self.status.setText(f"<b>Ensemble member {step.index + 1} of {step.total}{done}</b> — {self.status.text()}"
                                if not done else f"<b>Ensemble member {step.index + 1} of {step.total} done</b>")

    def _on_event(self, ev) -> None:
        if isinstance(ev, MemberStep):
            self._on_member_event(ev)
        elif isinstance(ev, Progress):
            self.status.setText(f"{ev.phase}… {ev.message}")
            if ev.total:
                self.progress.setRange(0, ev.total)
                self.progress.setValue(ev.done)
        elif isinstance(ev, TrainStarted):
            self.epochs_total = ev.epochs
            self.status.setText(f"Training on <b>{ev.device}</b>: {ev.n_train:,} train / {ev.n_val:,} val / "
                                f"{ev.n_test:,} test images, {len(ev.classes)} classes"
                                + (f", {ev.skipped} unreadable file(s) skipped" if ev.skipped else ""))
            for name, why in ev.excluded_classes.items():  # visible, not silently trained as a dead class
                self.message.emit("warning", f"class '{name}' is not trained: {why}")
            if ev.excluded_classes:
                self.status.setText(self.status.text() + "<br><span style='color:#8a5300'>Not trained: "
                                    + ", ".join(ev.excluded_classes) + " (see the log)</span>")
            self.progress.setRange(0, ev.epochs * ev.batches_per_epoch)
            self.curves.set_epochs(ev.epochs)
            self.batches_per_epoch = ev.batches_per_epoch
        elif isinstance(ev, BatchProgress):
            self.progress.setValue((ev.epoch - 1) * ev.batches + ev.batch)
            self.curves.add_batch(ev.epoch - 1 + ev.batch / ev.batches, ev.loss)
            epoch_seconds = ev.batches * self.batch.value() / ev.images_per_second if ev.images_per_second else 0.0
            eta = ev.eta_seconds + (self.epochs_total - ev.epoch) * epoch_seconds
            self.rate_label.setText(f"epoch {ev.epoch}/{self.epochs_total}, batch {ev.batch}/{ev.batches} — "
                                    f"loss {ev.loss:.4f} — {ev.images_per_second:,.0f} images/s — ETA {eta:,.0f} s")
        elif isinstance(ev, EpochEnd):
            self.history.append(ev.entry)
            self._draw_curves()
        elif isinstance(ev, CheckpointSaved) and ev.kind == "best":
            self.message.emit("info", f"best checkpoint so far: epoch {ev.epoch}")
        elif isinstance(ev, Failed):
            self.status.setText(f"<span style='color:#b3261e'>Training failed: {ev.message}</span>")
            self.message.emit("error", ev.message)
            if ev.detail:
                self.message.emit("debug", ev.detail)
        elif isinstance(ev, Finished):
            result = ev.result
            if result.metrics:
                m = result.metrics
                self.status.setText(f"{'Stopped' if ev.stopped else 'Finished'}: balanced accuracy "
                                    f"<b>{m['balanced_accuracy']:.4f}</b>, macro-F1 {m['macro_f1']:.4f} on "
                                    f"{m['evaluated_on']} (best epoch {m['best_epoch']}).")
                self.progress.setValue(self.progress.maximum())
                self.run_finished.emit(result.run_dir)
                self.session.add_run(result.run_dir)
            else:
                self.status.setText("Stopped before the first epoch finished; nothing was kept.")

    def _draw_curves(self) -> None:
        self.curves.set_history(self.history)

    # --- preferences --------------------------------------------------------------------------

    _WIDGETS = ("model_box", "augment_box", "device_box")

    def _save_settings(self) -> None:
        s = QSettings()
        for name in self._WIDGETS:
            s.setValue(f"train/{name}", getattr(self, name).currentData())
        for name in ("epochs", "batch", "seed", "image_size"):
            s.setValue(f"train/{name}", getattr(self, name).value())
        s.setValue("train/lr", self.lr.value())
        s.setValue("train/strategy", self.strategy())

    def _restore_settings(self) -> None:
        s = QSettings()
        for name in self._WIDGETS:
            value = s.value(f"train/{name}")
            box = getattr(self, name)
            i = box.findData(value) if value is not None else -1
            if i >= 0:
                box.setCurrentIndex(i)
        for name in ("epochs", "batch", "seed", "image_size"):
            value = s.value(f"train/{name}")
            if value is not None:
                getattr(self, name).setValue(int(value))
        if s.value("train/lr") is not None:
            self.lr.setValue(float(s.value("train/lr")))
        strategy = s.value("train/strategy")
        if isinstance(strategy, str):
            self.strategy_form.set_strategy(strategy)  # a stale or damaged preference is ignored

    def shutdown(self) -> None:
        if self.thread is not None:
            self.thread.request_stop()
            self.thread.wait(30000)
