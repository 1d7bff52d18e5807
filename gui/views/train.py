"""Balance & train tab: the one-click recipe box and the settings form on the left
(:mod:`train_recipe`, :mod:`train_form`), the live training view on the right
(:mod:`train_live`). This module starts and stops the work and turns its events into messages
and new runs in the session."""
from __future__ import annotations

import dataclasses
import html
import os

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QPushButton, QSplitter, QVBoxLayout, QWidget

from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.core.paths import new_run_dir, runs_dir_for
from balancelab.engine.data.scanner import ScanResult
from balancelab.engine.data.splits import data_warnings, why_not_trainable
from balancelab.engine.experiments.recipe import Recipe
from balancelab.engine.experiments.recipe_search import DEFAULT_BUDGET, SearchRound, SearchStep, search
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.train.resume import resume_config
from balancelab.engine.train.run_folder import RunError
from balancelab.engine.train.run import train
from balancelab.engine.train.run_events import BatchProgress, CheckpointSaved, MemberStep, TrainStarted
from balancelab.gui.views.train_form import TrainForm
from balancelab.gui.views.train_live import LiveTrainingPanel
from balancelab.gui.views.train_recipe import RecipeBox, leaderboard_html
from balancelab.gui.worker import GeneratorThread


class TrainView(QWidget):
    run_finished = Signal(str)  # run folder
    message = Signal(str, str)  # level, text
    training_state = Signal(bool)

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.result: ScanResult | None = None
        self.untrainable: str | None = None  # why the open dataset cannot be trained, if it cannot
        self._relist_when_done = False  # a run ended without a result: re-list the runs once its folder is closed
        self._ended_without_result: str | None = None  # the run folder of a run that stopped before a result
        self.thread: GeneratorThread | None = None

        self.form = TrainForm(self)
        self.recipe_box = RecipeBox(self)
        self.live = LiveTrainingPanel(self)
        # the widgets tests, benches and the main window reach for, under their historic names
        f, r, lv = self.form, self.recipe_box, self.live
        self.model_box, self.strategy_form, self.augment_box, self.device_box = (f.model_box, f.strategy_form,
                                                                               f.augment_box, f.device_box)
        self.epochs, self.batch, self.lr, self.seed, self.image_size = f.epochs, f.batch, f.lr, f.seed, f.image_size
        self.pretrained, self.finetune, self.preview = f.pretrained, f.finetune, f.preview
        self.recipe_label, self.train_recipe_button, self.search_button = (r.recipe_label, r.train_recipe_button,
                                                                           r.search_button)
        self.status, self.progress, self.rate_label, self.curves = lv.status, lv.progress, lv.rate_label, lv.curves

        self.start_button = QPushButton("Start training")
        self.start_button.setObjectName("primary")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.train_recipe_button.clicked.connect(self.train_recipe)
        self.search_button.clicked.connect(self.find_best_recipe)
        buttons = QHBoxLayout()
        buttons.addWidget(self.start_button, 1)
        buttons.addWidget(self.stop_button)
        left = QWidget()
        ll = QVBoxLayout(left)
        ll.addWidget(self.recipe_box)
        ll.addWidget(self.form, 1)
        ll.addLayout(buttons)

        right = QSplitter(Qt.Orientation.Vertical)  # what the model will see, then how it learns
        right.addWidget(f.preview_box)
        right.addWidget(self.live)
        right.setChildrenCollapsible(False)
        right.setSizes([190, 610])  # the mix is a glance, the curves are watched
        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setSizes([430, 670])
        layout = QVBoxLayout(self)
        layout.addWidget(split)
        session.dataset_opened.connect(self.set_result)
        self._set_running(False)  # no dataset yet: Start says why it is disabled

    @property
    def history(self) -> list[dict]:
        return self.live.history

    @property
    def recipe(self) -> Recipe | None:
        return self.recipe_box.recipe

    def strategy(self) -> str:
        return self.form.strategy()

    # --- training -------------------------------------------------------------------------------

    def set_result(self, result: ScanResult) -> None:
        """Another dataset (or a rescan): the form, the recipe and Start follow it; the live panel
        forgets the last dataset's run unless a training is still going."""
        other = self.result is None or self.result.root != result.root
        self.result = result
        self.recipe_box.propose(result)
        self.recipe_box.set_busy(self.is_training())
        self.form.set_result(result)
        was_untrainable, self.untrainable = self.untrainable, why_not_trainable(result)
        self._set_running(self.is_training())
        if self.is_training():
            return
        if self.untrainable:
            self.live.idle(f"This dataset cannot be trained: {html.escape(self.untrainable)}.")
        elif other or was_untrainable:
            self.live.idle("Idle.")

    def run_label(self) -> str:
        return self.form.run_label()

    def config(self) -> TrainConfig:
        """The form as a config; ``out`` is a placeholder in the dataset's runs folder until
        ``start`` reserves a fresh, timestamped folder for the run."""
        root = self.result.root
        return self.form.config(root, str(runs_dir_for(root) / self.run_label()))

    def is_training(self) -> bool:
        return self.thread is not None and self.thread.is_busy()

    def start(self) -> None:
        if self.result is None:
            self.message.emit("error", "Open a dataset first.")
            return
        if self.untrainable:
            self.message.emit("error", f"cannot train this dataset: {self.untrainable}")
            return
        if self.is_training():
            self.message.emit("error", "A training is already running; stop it first.")
            return
        if self._files_moving():
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
        self.form.save_settings()
        self._launch(cfg, f"Starting {cfg.model} with {cfg.strategy}…", f"training started: {cfg.out}")
        for warning in data_warnings(self.result):  # said when it matters, not only on the Dataset tab
            self.message.emit("warning", warning)

    def _files_moving(self) -> bool:
        """A batch of moves is still running: a training started now would scan a folder half moved."""
        if self.session.moving():
            self.message.emit("warning", "Files are still being moved; start the training when they are.")
            return True
        return False

    def resume(self, run_dir: str) -> bool:
        """Continue an interrupted run of the open dataset with the settings it saved (not the
        form's: a run resumed with another learning rate or model would be neither run); False,
        with a message, when it cannot go on."""
        if self.result is None or self.is_training():
            self.message.emit("error", "A training is already running; stop it first." if self.result is not None
                              else "Open a dataset first.")
            return False
        if self._files_moving():
            return False
        try:
            cfg = resume_config(run_dir, self.result.root)
        except (RunError, ConfigError, OSError, ValueError) as exc:
            self.message.emit("error", f"cannot resume {os.path.basename(run_dir)}: {exc}")
            self.session.refresh_runs()  # it changed on disk since it was listed: list what is there now
            return False
        name = os.path.basename(cfg.out)
        self._launch(cfg, f"Resuming {html.escape(name)}: {cfg.model} with {cfg.strategy}, from its last saved epoch…",
                     f"training resumed: {cfg.out}")
        return True

    def _launch(self, cfg: TrainConfig, status: str, note: str) -> None:
        self.live.reset()
        self.live.resuming = cfg.resume
        # files moved since the shown scan: the training scans the folder again, or it would look
        # for moved files where they were and miss them where they are
        result = None if self.session.moved_since_scan() else self.result
        self.thread = GeneratorThread(lambda stop: train(cfg, stop, scan_result=result),
                                      throttle=(BatchProgress, Progress, MemberStep), interval=0.1, parent=self)
        self.thread.event.connect(self._on_event)
        self.thread.finished.connect(self._on_thread_finished)
        self._set_running(True)
        self.status.setText(status)
        self.progress.setValue(0)
        self.message.emit("info", note)
        self.thread.start()

    # --- one click ------------------------------------------------------------------------------

    def apply_recipe(self) -> None:
        """Show the proposed recipe in the form (the user can still change anything before Start)."""
        if self.recipe is not None:
            self.form.apply_recipe(self.recipe)

    def train_recipe(self) -> None:
        self.apply_recipe()
        self.start()

    def find_best_recipe(self) -> None:
        if self.result is None or self.recipe is None or self.is_training() or self._files_moving():
            return
        root, seed, device = self.result.root, self.seed.value(), self.device_box.currentData()
        self.live.reset()
        self.live.resuming = False
        self.thread = GeneratorThread(lambda stop: search(root, DEFAULT_BUDGET, seed=seed, stop=stop, device=device),
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
                self.live.reset()
            if not isinstance(ev.event, (Finished, Failed)):
                self._on_event(ev.event)
        elif isinstance(ev, SearchRound):
            self.status.setText(leaderboard_html(ev))
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
        self.start_button.setEnabled(not running and self.result is not None and not self.untrainable)
        self.start_button.setToolTip(f"cannot train: {self.untrainable}" if self.untrainable else
                                     "Open a dataset first." if self.result is None else "")
        self.stop_button.setEnabled(running)
        self.recipe_box.set_busy(running)
        self.training_state.emit(running)

    def stop(self) -> None:
        if self.is_training():
            self.thread.request_stop()
            self.stop_button.setEnabled(False)
            self.status.setText("Stopping after the current batch; the best checkpoint is kept…")

    def _on_thread_finished(self) -> None:
        """The worker has ended, so the run folder is closed (or removed): only now is the list true."""
        self._set_running(False)
        if self._ended_without_result:
            run_dir, self._ended_without_result = self._ended_without_result, None
            said = self.live.ended_without_result(os.path.isdir(run_dir))
            self.message.emit("info", f"training stopped before a result: {said}")
        if self._relist_when_done:
            self._relist_when_done = False
            self.session.refresh_runs()

    def _on_event(self, ev) -> None:
        self.live.show_event(ev)
        if isinstance(ev, TrainStarted):
            for name, why in ev.excluded_classes.items():  # visible, not silently trained as a dead class
                self.message.emit("warning", f"class '{name}' is not trained: {why}")
        elif isinstance(ev, CheckpointSaved) and ev.kind == "best":
            self.message.emit("info", f"best checkpoint so far: epoch {ev.epoch}")
        elif isinstance(ev, Failed):
            self.message.emit("error", ev.message)
            if ev.detail:
                self.message.emit("debug", ev.detail)
            self._relist_when_done = True  # its folder may be kept as an incomplete run, or gone
        elif isinstance(ev, Finished) and ev.result.metrics:
            self.run_finished.emit(ev.result.run_dir)
            self.session.add_run(ev.result.run_dir)
        elif isinstance(ev, Finished):
            self._ended_without_result = ev.result.run_dir  # said once the worker has closed the folder
            self._relist_when_done = True

    def shutdown(self) -> None:
        if self.thread is not None:
            self.thread.request_stop()
            self.thread.wait(30000)
