"""Error review: the images behind a confusion-matrix cell or a class, sortable by confidence or
loss, a larger view with Grad-CAM for the predicted and the true class, and journaled
relabel / exclude / undo."""
from __future__ import annotations

import os

import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QImage, QKeySequence, QPixmap, QShortcut
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QListWidget, QPushButton, QSplitter, QVBoxLayout,
                               QWidget)

from balancelab.engine.core.events import Finished
from balancelab.engine.results.gradcam import CamExplainer

from balancelab.gui.widgets.tables import make_grid
from balancelab.gui.widgets.table_models import ThumbnailListModel
from balancelab.gui.widgets.thumbnails import ThumbnailLoader
from balancelab.gui.worker import GeneratorThread

SORTS = {
    "most confident first": lambda conf, loss: -conf,
    "least confident first": lambda conf, loss: conf,
    "highest loss first": lambda conf, loss: -loss,
    "lowest loss first": lambda conf, loss: loss,
}
_EXPLAINER = CamExplainer()  # keeps the reviewed run's model loaded between clicks (used on the worker only)


def _cam_job(run_dir: str, abs_path: str, true_idx: int, pred_idx: int):
    """Worker-thread generator: Grad-CAM overlays for the predicted and the true class."""

    def job(stop):
        yield Finished({"path": abs_path, **_EXPLAINER.overlays(run_dir, abs_path, [pred_idx, true_idx])})

    return job


def array_to_pixmap(arr: np.ndarray, size: int = 224) -> QPixmap:
    arr = np.ascontiguousarray(arr)
    h, w, _ = arr.shape
    image = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation)


EMPTY_TITLE = "Click a confusion-matrix cell or double-click a class in Results to review its images."


class ReviewView(QWidget):
    message = Signal(str, str)

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.run = None
        self._cell: list[dict] = []  # every image of the reviewed cell, whether or not it was moved since
        self._cell_title = ""
        self.cam_thread: GeneratorThread | None = None
        self._pending_cam = None

        self.title = QLabel(EMPTY_TITLE)
        self.title.setWordWrap(True)
        self.sort_box = QComboBox()
        self.sort_box.addItems(list(SORTS))
        self.sort_box.currentIndexChanged.connect(self._resort)
        self.loader = ThumbnailLoader(96, parent=self)
        self.model = ThumbnailListModel(self.loader, self)
        self.grid = make_grid(self.model)
        self.grid.selectionModel().currentChanged.connect(self._item_selected)
        self.grid.selectionModel().selectionChanged.connect(self._selection_changed)
        self.grid.setToolTip("Keys: arrows move, Shift/Ctrl select several, 0-9 move the selection to that class, "
                            "Delete excludes it, Ctrl+Z undoes the last action.")
        self._shortcuts()

        self.detail_title = QLabel("")
        self.detail_title.setWordWrap(True)
        self.image_label = QLabel()
        self.pred_cam = QLabel()
        self.true_cam = QLabel()
        for lab in (self.image_label, self.pred_cam, self.true_cam):
            lab.setFixedSize(230, 230)
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lab.setObjectName("imagePane")
        self.pred_cam_caption = QLabel("Grad-CAM: predicted class")
        self.true_cam_caption = QLabel("Grad-CAM: true class")

        self.relabel_box = QComboBox()
        self.relabel_button = QPushButton("Move to class")
        self.relabel_button.clicked.connect(self._relabel)
        self.exclude_button = QPushButton("Exclude (quarantine)")
        self.exclude_button.clicked.connect(self._exclude)
        self.undo_button = QPushButton("Undo last action")
        self.undo_button.clicked.connect(self._undo)
        self.journal_list = QListWidget()
        self.journal_list.setMaximumHeight(120)

        top = QHBoxLayout()
        top.addWidget(self.title, 1)
        top.addWidget(QLabel("Sort:"))
        top.addWidget(self.sort_box)

        images = QHBoxLayout()
        for lab, cap in ((self.image_label, QLabel("Image")), (self.pred_cam, self.pred_cam_caption), (self.true_cam, self.true_cam_caption)):
            col = QVBoxLayout()
            col.addWidget(cap)
            col.addWidget(lab)
            images.addLayout(col)
        actions = QHBoxLayout()
        actions.addWidget(self.relabel_box)
        actions.addWidget(self.relabel_button)
        actions.addWidget(self.exclude_button)
        actions.addWidget(self.undo_button)
        actions.addStretch(1)
        detail = QWidget()
        dl = QVBoxLayout(detail)
        dl.addWidget(self.detail_title)
        dl.addLayout(images)
        dl.addLayout(actions)
        dl.addWidget(QLabel("Journal (every move can be undone; nothing is ever deleted):"))
        dl.addWidget(self.journal_list)
        dl.addStretch(1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.grid)
        split.addWidget(detail)
        split.setSizes([330, 420])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(split, 1)
        self._set_actions_enabled(False)
        session.dataset_opened.connect(self._dataset_opened)
        session.journal_changed.connect(self._refresh_journal)
        session.files_moved.connect(self._files_moved)

    @property
    def root(self) -> str | None:
        return self.session.root

    @property
    def journal(self):
        return self.session.journal

    def _dataset_opened(self, result) -> None:
        """Another dataset: nothing of the old one stays. A rescan: show what is still where the run saw it."""
        if self._cell and not self._cell[0]["path"].startswith(os.path.join(result.root, "")):
            self.run, self._cell = None, []
            self.title.setText(EMPTY_TITLE)
        self._resort()

    def show_images(self, run, true_idx: int, pred_idx: int | None, tau: float = 0.0) -> None:
        self.run = run
        probs = run.predicted(tau)
        y_pred = probs.argmax(axis=1)
        mask = run.y_true == true_idx
        if pred_idx is not None:
            mask &= y_pred == pred_idx
        rows = np.flatnonzero(mask)
        classes = run.classes
        self.relabel_box.clear()
        self.relabel_box.addItems(classes)
        items = []
        for i in rows:
            conf = float(probs[i, y_pred[i]])
            loss = float(-np.log(max(probs[i, run.y_true[i]], 1e-12)))
            rel = run.paths[i]
            items.append({
                "path": os.path.join(self.root, rel), "rel": rel, "true": int(run.y_true[i]), "pred": int(y_pred[i]),
                "conf": conf, "loss": loss,
                "caption": f"{classes[run.y_true[i]]}→{classes[y_pred[i]]} {conf:.2f}",
                "tooltip": f"{rel}\ntrue {classes[run.y_true[i]]}, predicted {classes[y_pred[i]]} (p={conf:.3f}), loss {loss:.3f}",
            })
        self._cell = items
        what = f"true <b>{classes[true_idx]}</b>" + (f", predicted <b>{classes[pred_idx]}</b>" if pred_idx is not None else "")
        self._cell_title = f"{what} — run {run.name}"
        self._resort()

    def _present(self) -> list[dict]:
        """The cell's images still at the path the run evaluated (moved ones drop out; undone ones return)."""
        return [it for it in self._cell if os.path.isfile(it["path"])]

    def _resort(self) -> None:
        items = self._present()
        key = SORTS[self.sort_box.currentText()]
        self.model.set_items(sorted(items, key=lambda it: key(it["conf"], it["loss"])))
        if self._cell:
            gone = len(self._cell) - len(items)
            self.title.setText(f"{len(items)} image(s): {self._cell_title}"
                               + (f" ({gone} moved since, see the journal)" if gone else ""))
        self._clear_detail()

    def _clear_detail(self) -> None:
        """No image selected: nothing in the detail pane and no action that would apply to one."""
        self.grid.clearSelection()
        self.grid.setCurrentIndex(self.model.index(-1, 0))
        self.detail_title.setText("Select an image above." if self.model.items else "")
        for lab in (self.image_label, self.pred_cam, self.true_cam):
            lab.clear()
        self._set_actions_enabled(False)

    def _files_moved(self, _action) -> None:
        if self._cell:
            self._resort()

    def _current_item(self) -> dict | None:
        idx = self.grid.currentIndex()
        return self.model.items[idx.row()] if idx.isValid() and idx.row() < len(self.model.items) else None

    def _selected_items(self) -> list[dict]:
        """The images the actions apply to: every selected thumbnail (multi-select), in grid order."""
        rows = sorted({i.row() for i in self.grid.selectionModel().selectedIndexes()})
        return [self.model.items[r] for r in rows if r < len(self.model.items)]

    def _set_actions_enabled(self, on: bool) -> None:
        for w in (self.relabel_box, self.relabel_button, self.exclude_button):
            w.setEnabled(on and self.journal is not None)

    def _selection_changed(self, *_args) -> None:
        n = len(self._selected_items())
        self._set_actions_enabled(n > 0)
        self.relabel_button.setText(f"Move {n} to class" if n > 1 else "Move to class")
        self.exclude_button.setText(f"Exclude {n} (quarantine)" if n > 1 else "Exclude (quarantine)")

    def _shortcuts(self) -> None:
        # the grid would use digits for its keyboard search: it gets an event filter, the rest of the tab a shortcut
        self.grid.installEventFilter(self)
        QShortcut(QKeySequence.StandardKey.Undo, self, self._undo, context=Qt.ShortcutContext.WidgetWithChildrenShortcut)

    def eventFilter(self, watched, event) -> bool:
        if watched is self.grid and event.type() == QEvent.Type.KeyPress:
            key, mods = event.key(), event.modifiers()
            if Qt.Key.Key_0 <= key <= Qt.Key.Key_9 and not mods & ~Qt.KeyboardModifier.KeypadModifier:
                self._relabel_to(key - Qt.Key.Key_0)
                return True
            if key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace) and not mods:
                self._exclude()
                return True
            if event.matches(QKeySequence.StandardKey.Undo):
                self._undo()
                return True
        return super().eventFilter(watched, event)

    def _relabel_to(self, class_index: int) -> None:
        if self.run is not None and class_index < len(self.run.classes) and self._selected_items():
            self.relabel_box.setCurrentIndex(class_index)
            self._relabel()

    def _item_selected(self, current, _prev) -> None:
        item = self._current_item()
        if item is None or self.run is None:
            return
        classes = self.run.classes
        self.detail_title.setText(f"<b>{item['rel']}</b><br>true <b>{classes[item['true']]}</b>, predicted "
                                  f"<b>{classes[item['pred']]}</b> (p={item['conf']:.3f}), loss {item['loss']:.3f}")
        self.pred_cam_caption.setText(f"Grad-CAM: predicted '{classes[item['pred']]}'")
        self.true_cam_caption.setText(f"Grad-CAM: true '{classes[item['true']]}'")
        self.relabel_box.setCurrentIndex(item["pred"])
        self._request_cam(item)

    def _request_cam(self, item: dict) -> None:
        if self.cam_thread is not None and self.cam_thread.isRunning():
            self._pending_cam = item  # computed when the running one ends: never two at once
            return
        self.cam_thread = GeneratorThread(_cam_job(self.run.dir, item["path"], item["true"], item["pred"]), parent=self)
        self.cam_thread.event.connect(self._on_cam)
        self.cam_thread.finished.connect(self._cam_done)
        self.cam_thread.start()

    def _cam_done(self) -> None:
        if self._pending_cam is not None:
            item, self._pending_cam = self._pending_cam, None
            self._request_cam(item)

    def _on_cam(self, ev) -> None:
        if isinstance(ev, Finished):
            r = ev.result
            current = self._current_item()
            if current is None or current["path"] != r["path"]:
                return
            self.image_label.setPixmap(array_to_pixmap(r["image"]))
            self.pred_cam.setPixmap(array_to_pixmap(r["overlays"][0]))
            self.true_cam.setPixmap(array_to_pixmap(r["overlays"][1]))
        else:
            msg = getattr(ev, "message", None)
            if msg:
                self.message.emit("error", f"Grad-CAM: {msg}")

    # --- journaled actions (through the session: every view sees the move) ----------------------

    def _relabel(self) -> None:
        label = self.relabel_box.currentText()
        done = [a for it in self._selected_items() if (a := self.session.relabel(it["rel"], label))]
        if done:
            self.message.emit("info", f"moved {done[0].src} → {done[0].dst}" if len(done) == 1 else
                              f"moved {len(done)} images to class {label} (each can be undone)")

    def _exclude(self) -> None:
        done = [a for it in self._selected_items() if (a := self.session.exclude(it["rel"]))]
        if done:
            self.message.emit("info", f"excluded {done[0].src} → {done[0].dst}" if len(done) == 1 else
                              f"excluded {len(done)} images to _excluded/ (each can be undone)")

    def _undo(self) -> None:
        if a := self.session.undo():
            self.message.emit("info", f"undone: {a.dst} is back at {a.src}")

    def _refresh_journal(self) -> None:
        self.journal_list.clear()
        if self.journal is None:
            self.undo_button.setEnabled(False)
            return
        for a in reversed(self.journal.actions[-200:]):
            self.journal_list.addItem(f"[{a.state}] {a.kind}: {a.src} → {a.dst}")
        self.undo_button.setEnabled(bool(self.journal.undoable()))

    def shutdown(self) -> None:
        self._pending_cam = None
        if self.cam_thread is not None:
            self.cam_thread.wait(10000)
        self.loader.shutdown()
        _EXPLAINER.clear()
