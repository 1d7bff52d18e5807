"""Error review: a run's images filtered by true class, predicted class, outcome and confidence (a
confusion-matrix cell sets the first two), a larger view with Grad-CAM for the predicted and the
true class and the feature maps of every convolution layer, and journaled relabel / exclude / undo
for the selection (keys: digits, Delete, Ctrl+Z)."""
from __future__ import annotations

import html
import os

import numpy as np
from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSplitter, QTabWidget, QVBoxLayout, QWidget

from balancelab.engine.data.imageio import ImageDecodeError
from balancelab.engine.results.feature_maps import FeatureMapExplainer
from balancelab.engine.results.gradcam import CamExplainer
from balancelab.gui.views.review_detail import ActionsPanel, CamPanel
from balancelab.gui.views.review_filters import FilterBar, ReviewFilter, ordered_rows
from balancelab.gui.views.review_maps import FeatureMapsPanel
from balancelab.gui.widgets.table_models import ThumbnailListModel
from balancelab.gui.widgets.tables import make_grid
from balancelab.gui.widgets.thumbnails import ThumbnailLoader
from balancelab.gui.worker import LatestLoader

# the reviewed run's model stays loaded between clicks (used on the workers only; one model each,
# so a feature-map pass never fires inside a Grad-CAM pass)
_EXPLAINER = CamExplainer()
_MAPS = FeatureMapExplainer()


MAX_SHOWN = 2000  # thumbnails in the grid at once: a refresh costs the same on a run of any size
EMPTY_TITLE = "Click a confusion-matrix cell or double-click a class in Results to review its images."


class ReviewView(QWidget):
    message = Signal(str, str)

    def __init__(self, session, parent=None) -> None:
        super().__init__(parent)
        self.session = session
        self.run = None
        self._listed: set[str] = set()  # the run folders of the last runs list
        self._scores: dict[str, np.ndarray] = {}  # y_true, y_pred, conf, loss of every image of the run
        self._items: dict[int, dict] = {}  # run row -> thumbnail item, built when first shown
        self._row_of: dict[str, int] = {}  # rel path -> run row
        self._present = np.zeros(0, dtype=bool)  # per run row: still where the run evaluated it
        self._scanned: tuple[object, set[str]] = (None, set())  # a scan result and its image paths
        self._moved: dict[str, bool] = {}  # rel path -> present, for what the journal moved since that scan
        self._run_root: str | None = None
        self._scoring = ""  # the post-hoc correction the shown predictions were scored with, in words
        self._maps_key: tuple = ()  # (run, image, channels) of the feature maps on screen
        # "cam" and "maps": newest selection only; a file gone or unreadable, or a model without a
        # convolution layer, is a message; anything else a bug with its traceback
        self.workers = LatestLoader(errors=(ValueError, OSError, ImageDecodeError), serial=True, parent=self)

        self.title = QLabel(EMPTY_TITLE)
        self.title.setTextFormat(Qt.TextFormat.PlainText)  # class and run names are folder names: never markup
        self.title.setWordWrap(True)
        self.filters = FilterBar(self)
        self.sort_box = self.filters.sort_box
        self.filters.changed.connect(self._refresh)
        self.loader = ThumbnailLoader(96, parent=self)
        self.model = ThumbnailListModel(self.loader, self)
        self.grid = make_grid(self.model)
        self.grid.selectionModel().currentChanged.connect(self._item_selected)
        self.grid.selectionModel().selectionChanged.connect(self._selection_changed)
        self.grid.setToolTip("Keys: arrows move, Shift/Ctrl select several, 0-9 move the selection to that class, "
                            "Delete excludes it, Ctrl+Z undoes the last action.")
        self._shortcuts()

        self.cams = CamPanel(self)
        self.actions = ActionsPanel(self)
        self.maps_panel = FeatureMapsPanel(self)
        self.maps_panel.channels_changed.connect(lambda _n: self._request_maps())
        self.image_label, self.pred_cam, self.true_cam = self.cams.image_label, self.cams.pred_cam, self.cams.true_cam
        a = self.actions
        self.detail_title, self.relabel_box, self.journal_list = a.detail_title, a.relabel_box, a.journal_list
        self.relabel_button, self.exclude_button, self.undo_button = a.relabel_button, a.exclude_button, a.undo_button
        self.relabel_button.clicked.connect(self._relabel)
        self.exclude_button.clicked.connect(self._exclude)
        self.undo_button.clicked.connect(self._undo)
        self.detail_tabs = QTabWidget()
        self.detail_tabs.addTab(self.cams, "Grad-CAM")
        self.detail_tabs.addTab(self.maps_panel, "Feature maps")
        self.detail_tabs.currentChanged.connect(lambda _i: self._request_maps())
        detail = QWidget()
        dl = QHBoxLayout(detail)
        dl.setContentsMargins(0, 0, 0, 0)
        dl.addWidget(self.detail_tabs, 3)
        dl.addWidget(self.actions, 1)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.grid)
        split.addWidget(detail)
        split.setSizes([400, 300])
        split.setStretchFactor(0, 1)
        layout = QVBoxLayout(self)
        layout.addWidget(self.title)
        layout.addWidget(self.filters)
        layout.addWidget(split, 1)
        self._set_actions_enabled(False)
        session.dataset_opened.connect(self._dataset_opened)
        session.journal_changed.connect(self._refresh_journal)
        session.files_moved.connect(self._files_moved)
        session.runs_changed.connect(self._runs_listed)

    @property
    def root(self) -> str | None:
        return self.session.root

    @property
    def journal(self):
        return self.session.journal

    @property
    def cam_thread(self):
        """The worker computing Grad-CAM now, if any."""
        return self.workers.running("cam")

    # --- what is shown --------------------------------------------------------------------------

    def _dataset_opened(self, result) -> None:
        """Another dataset: nothing of the old one stays. A rescan: show what is still where the run saw it."""
        if self.run is not None and self._run_root != result.root:
            self.run, self._scores, self._items = None, {}, {}
            self.filters.set_classes([])
            self.relabel_box.clear()  # the old dataset's classes
        self._moved = {}  # the new scan is the truth now
        if self.run is not None:
            self._present = self._scanned_rows()
        self._refresh()

    def _runs_listed(self, runs: list[dict]) -> None:
        """The runs were re-listed: a run that has dropped out of the list (deleted, no longer
        complete) is not reviewed any more; its Grad-CAM would come from a model that is gone."""
        listed, before = {r["dir"] for r in runs}, self._listed
        self._listed = listed
        if self.run is not None and self.run.dir in before and self.run.dir not in listed:
            self.run, self._scores, self._items = None, {}, {}
            self.filters.set_classes([])
            self._refresh()

    def show_images(self, run, true_idx: int | None, pred_idx: int | None, tau: float = 0.0,
                    tau_norm: tuple[float, object] | None = None) -> None:
        """Review ``run`` scored at ``tau`` (or with classifier τ-norm: (strength, TauNormScorer)),
        filtered to one cell (or a true class when ``pred_idx`` is None): the images are those the
        Results tab's matrix counts under the same correction."""
        self.run, self._run_root = run, self.root
        probs = run.predicted(tau)
        self._scoring = f"post-hoc τ = {tau:g}" if tau else ""
        if tau_norm is not None:
            strength, scorer = tau_norm
            probs, unscored = scorer.probabilities_for(run.paths, strength, probs)
            self._scoring = f"classifier τ-norm = {strength:g}" + (
                f"; {unscored} of the run's images were not re-scored (moved, unreadable or of another split now) "
                "and keep the run's own scores" if unscored else "")
        y_true = np.asarray(run.y_true, dtype=np.int64)
        y_pred = probs.argmax(axis=1)
        rows = np.arange(len(y_true))
        self._scores = {"y_true": y_true, "y_pred": y_pred, "conf": probs[rows, y_pred].astype(np.float64),
                        "loss": -np.log(np.maximum(probs[rows, y_true], 1e-12))}
        self._items = {}
        self._row_of = {p: i for i, p in enumerate(run.paths)}
        self._present = self._scanned_rows()
        self.relabel_box.clear()
        self.relabel_box.addItems(run.classes)
        self.filters.set_classes(run.classes)
        self.filters.set_filter(ReviewFilter(true_idx, pred_idx))
        self._refresh()

    def _item(self, row: int) -> dict:
        item = self._items.get(row)
        if item is None:
            s, classes, rel = self._scores, self.run.classes, self.run.paths[row]
            t, p, conf, loss = int(s["y_true"][row]), int(s["y_pred"][row]), float(s["conf"][row]), float(s["loss"][row])
            item = self._items[row] = {
                "path": os.path.join(self.root, rel), "rel": rel, "true": t, "pred": p, "conf": conf, "loss": loss,
                "caption": f"{classes[t]}→{classes[p]} {conf:.2f}",
                "tooltip": f"{rel}\ntrue {classes[t]}, predicted {classes[p]} (p={conf:.3f}), loss {loss:.3f}",
            }
        return item

    def _scanned_rows(self) -> np.ndarray:
        """Which run rows are where the run evaluated them: in the last scan, unless moved since."""
        result, paths = self.session.result, self.run.paths
        if result is None:
            return np.array([os.path.isfile(os.path.join(self.root or "", p)) for p in paths], dtype=bool)
        if self._scanned[0] is not result:
            self._scanned = (result, {img.path for img in result.images})
        scanned, moved = self._scanned[1], self._moved
        return np.fromiter((moved.get(p, p in scanned) for p in paths), dtype=bool, count=len(paths))

    def _refresh(self) -> None:
        """Re-filter and re-sort the run's images (numpy masks; only the shown rows become items)."""
        if self.run is None or self.root is None:
            self.model.set_items([])
            self.title.setText(EMPTY_TITLE)
            self._clear_detail()
            return
        s = self._scores
        flt = self.filters.current()
        rows = ordered_rows(flt, s["y_true"], s["y_pred"], s["conf"], s["loss"], self.sort_box.currentText())
        present = self._present[rows]
        shown, gone = rows[present], int(len(rows) - present.sum())
        self.model.set_items([self._item(int(r)) for r in shown[:MAX_SHOWN]])
        more = (f"; showing the first {MAX_SHOWN:,} of {len(shown):,} (narrow the filters for the rest)"
                if len(shown) > MAX_SHOWN else "")
        split = self.run.metrics.get("evaluated_on")
        split = f" {split}" if isinstance(split, str) and split else ""
        scored = f" (scored with {self._scoring})" if self._scoring else ""
        self.title.setText(f"{len(shown)}{split} image(s): {flt.describe(self.run.classes)}{scored} — run {self.run.name}"
                           + (f" ({gone} moved since, see the journal)" if gone else "") + more)
        self._clear_detail()

    def _clear_detail(self) -> None:
        """No image selected: nothing in the detail pane and no action that would apply to one."""
        self.grid.clearSelection()
        self.grid.setCurrentIndex(self.model.index(-1, 0))
        self.detail_title.setText("Select an image above." if self.model.items else "")
        self.cams.clear()
        self.workers.cancel("cam")
        self.workers.cancel("maps")
        self.maps_panel.show_message("Select an image to see what each convolution layer of the model computes "
                                     "for it.")
        self._set_actions_enabled(False)

    def _files_moved(self, actions: list) -> None:
        for action in actions:
            forward = action.state == "done"  # relabel / exclude done; "undone" brings the file back
            for rel, present in ((action.src, not forward), (action.dst, forward)):
                self._moved[rel] = present
                row = self._row_of.get(rel)
                if row is not None:
                    self._present[row] = present
        if self.run is not None:  # once per batch
            self._refresh()

    # --- selection and keys -----------------------------------------------------------------------

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
        self.actions.set_selected_count(n)

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
        e = html.escape  # file and class names may hold '<' or '&'
        self.detail_title.setText(f"<b>{e(item['rel'])}</b><br>true <b>{e(classes[item['true']])}</b>, predicted "
                                  f"<b>{e(classes[item['pred']])}</b> (p={item['conf']:.3f}), loss {item['loss']:.3f}")
        self.cams.set_classes(classes[item["pred"]], classes[item["true"]])
        self.relabel_box.setCurrentIndex(item["pred"])
        run_dir, path, pred, true = self.run.dir, item["path"], item["pred"], item["true"]
        self.workers.load("cam", lambda: {"path": path, **_EXPLAINER.overlays(run_dir, path, [pred, true])},
                          self._on_cam, lambda msg: self.message.emit("error", f"Grad-CAM: {msg}"))
        self._request_maps()

    # --- worker results (only the newest selection's arrive) -----------------------------------------

    def _on_cam(self, r: dict) -> None:
        current = self._current_item()
        if current is None or current["path"] != r["path"]:
            return
        self.cams.show_overlays(r)

    def _request_maps(self) -> None:
        """Feature maps are computed only while their panel is shown, for the current image."""
        item = self._current_item()
        if self.detail_tabs.currentWidget() is not self.maps_panel or item is None or self.run is None:
            self.workers.cancel("maps")
            return
        key = run_dir, path, n = self.run.dir, item["path"], self.maps_panel.channels.value()
        if self.maps_panel.maps is not None and self._maps_key == key:
            return  # back on the tab: what it shows is current
        self.maps_panel.show_message(f"Computing the feature maps of {item['rel']}…")
        self.workers.load("maps", lambda: _MAPS.maps(run_dir, path, n), lambda maps: self._on_maps(maps, key),
                          lambda msg: self.maps_panel.show_message(f"No feature maps: {msg}"))

    def _on_maps(self, maps, key: tuple) -> None:
        current = self._current_item()
        if current is not None and current["path"] == maps.path:
            self.maps_panel.show_maps(maps)
            self._maps_key = key

    # --- journaled actions (through the session: every view sees the move) ----------------------

    def _relabel(self) -> None:
        """One image moves at once; several as one journal batch on a worker (the session says how it went)."""
        self.session.move_files("relabel", [it["rel"] for it in self._selected_items()], self.relabel_box.currentText())

    def _exclude(self) -> None:
        self.session.move_files("exclude", [it["rel"] for it in self._selected_items()])

    def _undo(self) -> None:
        if a := self.session.undo():
            self.message.emit("info", f"undone: {a.dst} is back at {a.src}")

    def _refresh_journal(self) -> None:
        self.actions.show_journal(self.journal)

    def shutdown(self) -> None:
        self.workers.shutdown(10000)
        self.loader.shutdown()
        _EXPLAINER.clear()
        _MAPS.clear()
