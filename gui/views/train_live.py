"""The live half of the Train tab: status line, progress bar, rate and ETA, and the curves.

It only displays training events; what they cause elsewhere (messages, a new run in the
session) is the Train view's business."""
from __future__ import annotations

from PySide6.QtWidgets import QLabel, QProgressBar, QVBoxLayout, QWidget

from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.train.checkpoints import selection_sentence
from balancelab.engine.train.run_events import BatchProgress, EpochEnd, MemberStep, TrainStarted
from balancelab.gui.widgets.live_curves import LiveCurves


class LiveTrainingPanel(QWidget):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.history: list[dict] = []
        self.epochs_total = 0
        self.batch_size = 0  # from TrainStarted
        self.resuming = False  # the training shown continues a saved run (stopping it early keeps that run)
        self._trained = (100, 0)  # (maximum, value) of the bar at the last batch
        self.status = QLabel("Idle.")
        self.status.setWordWrap(True)
        self.progress = QProgressBar()
        self.progress.setFormat("%p%")
        self.rate_label = QLabel("")
        self.curves = LiveCurves(self)
        layout = QVBoxLayout(self)
        layout.addWidget(self.status)
        layout.addWidget(self.progress)
        layout.addWidget(self.rate_label)
        layout.addWidget(self.curves, 1)
        self.draw_curves()

    def reset(self) -> None:
        """A new training (or a new search candidate) starts: empty curves, progress and rate, no
        word on the last run's epoch."""
        self.history = []
        self.status.setToolTip("")
        self.rate_label.setText("")
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        self._trained = (100, 0)
        self.curves.reset_view()

    def idle(self, text: str) -> None:
        """Nothing is training (another dataset was opened, or the last run ended without a result)."""
        self.reset()
        self.status.setText(text)

    def draw_curves(self) -> None:
        self.curves.set_history(self.history)

    def show_member(self, step: MemberStep) -> None:
        """A balanced-bagging member's event: the curves follow the member now training, the status names it."""
        if isinstance(step.event, TrainStarted):
            self.reset()
        if not isinstance(step.event, (Finished, Failed)):
            self.show_event(step.event)
        name = f"Ensemble member {step.index + 1} of {step.total}"
        if isinstance(step.event, Finished):
            self.status.setText(f"<b>{name} done</b>")
        elif isinstance(step.event, (TrainStarted, Progress)):
            self.status.setText(f"<b>{name}</b> — {self.status.text()}")

    def show_event(self, ev: object) -> None:
        if isinstance(ev, MemberStep):
            self.show_member(ev)
        elif isinstance(ev, Progress):
            self.status.setText(f"{ev.phase}… {ev.message}")
            if ev.total:
                self.progress.setRange(0, ev.total)
                self.progress.setValue(ev.done)
        elif isinstance(ev, TrainStarted):
            self.epochs_total = ev.epochs
            self.batch_size = ev.batch_size  # the run's own (a resumed run's may not be the form's)
            self.status.setText(f"Training on <b>{ev.device}</b>: {ev.n_train:,} train / {ev.n_val:,} val / "
                                f"{ev.n_test:,} test images, {len(ev.classes)} classes"
                                + (f", resumed after epoch {ev.start_epoch}" if ev.start_epoch else "")
                                + (f", {ev.skipped} unreadable file(s) skipped" if ev.skipped else ""))
            if ev.excluded_classes:
                self.status.setText(self.status.text() + "<br><span style='color:#8a5300'>Not trained: "
                                    + ", ".join(ev.excluded_classes) + " (see the log)</span>")
            self.progress.setRange(0, ev.epochs * ev.batches_per_epoch)
            self.curves.set_epochs(ev.epochs)
            self.history = list(ev.history)  # a resumed run: the epochs before the interruption stay drawn
            self.draw_curves()
        elif isinstance(ev, BatchProgress):
            self.progress.setValue((ev.epoch - 1) * ev.batches + ev.batch)
            self._trained = (self.progress.maximum(), self.progress.value())  # where a stop leaves the bar
            self.curves.add_batch(ev.epoch - 1 + ev.batch / ev.batches, ev.loss)
            epoch_seconds = ev.batches * self.batch_size / ev.images_per_second if ev.images_per_second else 0.0
            eta = ev.eta_seconds + (self.epochs_total - ev.epoch) * epoch_seconds
            self.rate_label.setText(f"epoch {ev.epoch}/{self.epochs_total}, batch {ev.batch}/{ev.batches} — "
                                    f"loss {ev.loss:.4f} — {ev.images_per_second:,.0f} images/s — ETA {eta:,.0f} s")
        elif isinstance(ev, EpochEnd):
            self.history.append(ev.entry)
            self.draw_curves()
        elif isinstance(ev, Failed):
            self.status.setText(f"<span style='color:#b3261e'>Training failed: {ev.message}</span>")
        elif isinstance(ev, Finished):
            m = ev.result.metrics
            if m:
                done = ev.result.completed_epochs
                early = ev.stopped and done < self.epochs_total  # a stop after the last epoch stopped nothing
                self.status.setText((f"Stopped after epoch {done} of {self.epochs_total}" if early else "Finished")
                                    + f": balanced accuracy <b>{m['balanced_accuracy']:.4f}</b>, macro-F1 "
                                    f"{m['macro_f1']:.4f} on {m['evaluated_on']} (best epoch {m['best_epoch']}).")
                self.status.setToolTip(selection_sentence(m))
                self.rate_label.setText("")  # the last batch's rate and ETA are no longer true
                if early:  # the bar shows how far the training got, not the final evaluation's 1 of 1
                    self.progress.setRange(0, self._trained[0])
                    self.progress.setValue(self._trained[1])
                else:
                    self.progress.setValue(self.progress.maximum())
            else:  # what was kept is only known once the worker has closed the folder: ended_without_result
                self.idle("Stopped before a result…")

    def ended_without_result(self, kept: bool) -> str:
        """The run stopped (or failed) before it had a result and its folder is closed now: say
        what is left, from the folder itself (a resumed run's saved epochs, a balanced-bagging run's
        finished members, or nothing), and return the sentence for the log."""
        if not kept:
            text = "nothing was kept (its run folder was removed)"
        elif self.resuming:
            text = "the run stays as it was saved (Resume… in Results continues it)"
        else:
            text = "what it wrote is kept as an incomplete run (listed under Results)"
        self.idle(f"Stopped before a result: {text}.")
        return text
