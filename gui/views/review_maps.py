"""Review's "Feature maps" panel: one grid of channel tiles per convolution layer of the run's
model for the selected image. The grids are computed on a worker by the Review view (lazily:
only while this panel is shown); this widget only displays what it is given."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QScrollArea, QSpinBox, QVBoxLayout, QWidget

from balancelab.engine.results.feature_maps import MAX_CHANNELS, FeatureMaps, LayerMaps

GRID_WIDTH = 360  # pixels a layer's grid is enlarged to (nearest neighbour: tiles stay crisp)


def grid_pixmap(grid: np.ndarray, width: int = GRID_WIDTH) -> QPixmap:
    grid = np.ascontiguousarray(grid)
    h, w = grid.shape
    image = QImage(grid.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    scale = max(1, width // max(w, 1))
    return QPixmap.fromImage(image).scaled(w * scale, h * scale, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.FastTransformation)


def layer_caption(i: int, layer: LayerMaps) -> str:
    h, w = layer.size
    shown = f"the {len(layer.shown)} most active" if len(layer.shown) < layer.channels else "all"
    return f"<b>{i + 1}. {layer.name}</b> — {layer.channels} channels of {h}×{w}; {shown} shown"


class FeatureMapsPanel(QWidget):
    channels_changed = Signal(int)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.maps: FeatureMaps | None = None
        self.status = QLabel("Select an image to see what each convolution layer of the model computes for it.")
        self.status.setWordWrap(True)
        self.status.setObjectName("hint")
        self.channels = QSpinBox()
        self.channels.setRange(1, 64)
        self.channels.setValue(MAX_CHANNELS)
        self.channels.setToolTip("At most this many channels per layer: the ones that respond most to the image")
        self.channels.valueChanged.connect(self.channels_changed)
        self.layers = QWidget()
        self.layers_layout = QVBoxLayout(self.layers)
        self.layers_layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.layers)
        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        top.addWidget(QLabel("Channels per layer:"))
        top.addWidget(self.channels)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(scroll, 1)

    def _clear_layers(self) -> None:
        while self.layers_layout.count() > 1:
            item = self.layers_layout.takeAt(0)
            if item.widget() is not None:
                item.widget().deleteLater()

    def show_message(self, text: str) -> None:
        self.maps = None
        self._clear_layers()
        self.status.setText(text)

    def show_maps(self, maps: FeatureMaps) -> None:
        self.maps = maps
        self._clear_layers()
        self.status.setText(f"{len(maps.layers)} convolution layer(s), in the order the image passes them; each "
                            f"channel is scaled to black–white on its own.")
        for i, layer in enumerate(maps.layers):
            caption = QLabel(layer_caption(i, layer))
            picture = QLabel()
            picture.setPixmap(grid_pixmap(layer.grid))
            picture.setToolTip(f"channels {', '.join(map(str, layer.shown))}")
            self.layers_layout.insertWidget(self.layers_layout.count() - 1, caption)
            self.layers_layout.insertWidget(self.layers_layout.count() - 1, picture)

    def shown_layers(self) -> int:
        return sum(1 for i in range(self.layers_layout.count())
                   if isinstance(self.layers_layout.itemAt(i).widget(), QLabel)
                   and self.layers_layout.itemAt(i).widget().pixmap() is not None
                   and not self.layers_layout.itemAt(i).widget().pixmap().isNull())
