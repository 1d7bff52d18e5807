"""Review's detail pane widgets: the selected image with its two Grad-CAM overlays, and the side
column of actions (move to class, exclude, undo) with the journal. The Review view wires them."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QComboBox, QHBoxLayout, QLabel, QListWidget, QPushButton, QVBoxLayout, QWidget

PANE = 200  # pixels of each image pane


def array_to_pixmap(arr: np.ndarray, size: int = PANE - 4) -> QPixmap:
    arr = np.ascontiguousarray(arr)
    h, w, _ = arr.shape
    image = QImage(arr.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(size, size, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.SmoothTransformation)


class CamPanel(QWidget):
    """The image, Grad-CAM for the predicted class and Grad-CAM for the true class, side by side."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.image_label, self.pred_cam, self.true_cam = QLabel(), QLabel(), QLabel()
        for lab in (self.image_label, self.pred_cam, self.true_cam):
            lab.setFixedSize(PANE, PANE)
            lab.setAlignment(Qt.AlignmentFlag.AlignCenter)
            lab.setObjectName("imagePane")
        self.pred_cam_caption = QLabel("Grad-CAM: predicted class")
        self.true_cam_caption = QLabel("Grad-CAM: true class")
        for caption in (self.pred_cam_caption, self.true_cam_caption):
            caption.setTextFormat(Qt.TextFormat.PlainText)  # class names are folder names: never markup
        layout = QHBoxLayout(self)
        for lab, cap in ((self.image_label, QLabel("Image")), (self.pred_cam, self.pred_cam_caption),
                         (self.true_cam, self.true_cam_caption)):
            col = QVBoxLayout()
            col.addWidget(cap)
            col.addWidget(lab)
            layout.addLayout(col)
        layout.addStretch(1)

    def set_classes(self, predicted: str, true: str) -> None:
        self.pred_cam_caption.setText(f"Grad-CAM: predicted '{predicted}'")
        self.true_cam_caption.setText(f"Grad-CAM: true '{true}'")

    def show_overlays(self, result: dict) -> None:
        self.image_label.setPixmap(array_to_pixmap(result["image"]))
        self.pred_cam.setPixmap(array_to_pixmap(result["overlays"][0]))
        self.true_cam.setPixmap(array_to_pixmap(result["overlays"][1]))

    def clear(self) -> None:
        for lab in (self.image_label, self.pred_cam, self.true_cam):
            lab.clear()
        self.pred_cam_caption.setText("Grad-CAM: predicted class")  # no class of an image no longer shown
        self.true_cam_caption.setText("Grad-CAM: true class")


class ActionsPanel(QWidget):
    """Beside the images (so the thumbnails keep their height at 1280x800): what is selected, the
    journaled actions for it, and the journal."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.detail_title = QLabel("")
        self.detail_title.setWordWrap(True)
        self.relabel_box = QComboBox()
        self.relabel_button = QPushButton("Move to class")
        self.exclude_button = QPushButton("Exclude (quarantine)")
        self.undo_button = QPushButton("Undo last action")
        self.undo_button.setEnabled(False)  # until a journal with something to undo is shown
        self.journal_list = QListWidget()
        self.journal_list.setWordWrap(True)
        journal_caption = QLabel("Journal (every move can be undone; nothing is ever deleted):")
        journal_caption.setWordWrap(True)
        move_row = QHBoxLayout()
        move_row.addWidget(self.relabel_box, 1)
        move_row.addWidget(self.relabel_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.detail_title)
        layout.addLayout(move_row)
        layout.addWidget(self.exclude_button)
        layout.addWidget(self.undo_button)
        layout.addWidget(journal_caption)
        layout.addWidget(self.journal_list, 1)

    def set_selected_count(self, n: int) -> None:
        self.relabel_button.setText(f"Move {n} to class" if n > 1 else "Move to class")
        self.exclude_button.setText(f"Exclude {n} (quarantine)" if n > 1 else "Exclude (quarantine)")

    def show_journal(self, journal) -> None:
        self.journal_list.clear()
        if journal is None:
            self.undo_button.setEnabled(False)
            return
        for a in reversed(journal.actions[-200:]):
            self.journal_list.addItem(f"[{a.state}] {a.kind}: {a.src} → {a.dst}")
        self.undo_button.setEnabled(bool(journal.undoable()))
