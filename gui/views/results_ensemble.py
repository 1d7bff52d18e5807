"""The Results tab's "Ensemble" action: the runs selected in the runs table averaged into a new
run of the dataset, built on a worker (members are checked, copied and scored there), then listed
through the session like any finished run."""
from __future__ import annotations


from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QCheckBox, QHBoxLayout, QPushButton, QWidget

from balancelab.engine.core.events import Failed, Finished, Progress
from balancelab.engine.core.paths import new_run_dir
from balancelab.engine.results.ensemble import build_ensemble
from balancelab.gui.worker import GeneratorThread


class EnsembleAction(QObject):
    """A button and a "weighted" check box; ``selected()`` gives the run folders to combine."""

    message = Signal(str, str)
    done = Signal(object)  # the new run folder, or None after a failure

    def __init__(self, session, selected, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.selected = selected
        self.thread: GeneratorThread | None = None
        self.button = QPushButton("Ensemble…")
        self.button.clicked.connect(self.start)
        self._selected = 0
        self.selection_changed(0)
        self.weighted = QCheckBox("weighted by validation")
        self.weighted.setToolTip("Weight each run by its validation balanced accuracy (best epoch) instead of equally.")
        self.widget = QWidget()
        row = QHBoxLayout(self.widget)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.button)
        row.addWidget(self.weighted)

    TIP = ("Average the class probabilities of the selected runs into a new run: same classes, image size and test "
           "split needed.")

    def selection_changed(self, n: int) -> None:
        """Enabled for two runs or more: an ensemble of one run is that run."""
        self._selected = n
        self.button.setEnabled(n >= 2 and not self.running())
        self.button.setToolTip(self.TIP if n >= 2 else "Select two runs or more in the runs table (Ctrl- or "
                               "Shift-click) to average them.")

    def running(self) -> bool:
        return self.thread is not None and self.thread.is_busy()

    def start(self) -> None:
        runs = self.selected()
        if self.session.root is None or not runs:
            self.message.emit("error", "Select the runs to combine in the runs table (Ctrl- or Shift-click).")
            return
        if self.running():
            self.message.emit("warning", "An ensemble is still being built.")
            return
        try:
            out = str(new_run_dir(self.session.root, f"ensemble-of-{len(runs)}"))
        except OSError as exc:
            self.message.emit("error", f"cannot create a run folder: {exc}")
            return
        weighted = self.weighted.isChecked()
        self.thread = GeneratorThread(lambda stop: build_ensemble(runs, out, weighted, stop), throttle=(Progress,),
                                      parent=self)
        self.thread.event.connect(self._event)
        self.out = out
        self.button.setEnabled(False)
        self.message.emit("info", f"building an ensemble of {len(runs)} run(s) into {out}")
        self.thread.start()

    def _event(self, ev) -> None:
        if isinstance(ev, Finished):
            self.button.setEnabled(self._selected >= 2)
            if ev.result.metrics:
                m = ev.result.metrics
                self.message.emit("info", f"ensemble written: {ev.result.run_dir} (balanced accuracy "
                                          f"{m['balanced_accuracy']:.4f})")
                self.session.add_run(ev.result.run_dir)
            self.done.emit(ev.result.run_dir if ev.result.metrics else None)
        elif isinstance(ev, Failed):
            self.button.setEnabled(self._selected >= 2)
            self.message.emit("error", f"ensemble failed: {ev.message}")
            self.done.emit(None)

    def shutdown(self) -> None:
        if self.thread is not None:
            self.thread.request_stop()
            self.thread.wait(60000)
