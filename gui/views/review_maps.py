"""Review's "Feature maps" panel: one grid of channel tiles per convolution layer of the run's
model for the selected image. The grids are computed on a worker by the Review view (lazily:
only while this panel is shown); this widget only displays what it is given."""
from __future__ import annotations

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHBoxLayout, QLabel, QListView, QListWidget, QListWidgetItem, QSpinBox, \
    QVBoxLayout, QWidget

from balancelab.engine.results.feature_maps import MAX_CHANNELS, FeatureMaps, LayerMaps

GRID_WIDTH = 200  # the box a layer's grid is enlarged to fit (nearest neighbour: tiles stay crisp)


def grid_pixmap(grid: np.ndarray, width: int = GRID_WIDTH) -> QPixmap:
    grid = np.ascontiguousarray(grid)
    h, w = grid.shape
    image = QImage(grid.data, w, h, w, QImage.Format.Format_Grayscale8).copy()
    return QPixmap.fromImage(image).scaled(width, width, Qt.AspectRatioMode.KeepAspectRatio,
                                           Qt.TransformationMode.FastTransformation)


def layer_caption(i: int, layer: LayerMaps) -> str:
    h, w = layer.size
    shown = f"{len(layer.shown)} most active" if len(layer.shown) < layer.channels else "all"
    return f"{i + 1}. {layer.name}\n{layer.channels} ch of {h}×{w}, {shown}"


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
        self.layers = QListWidget()  # icon mode: the layers' grids flow left to right and wrap
        self.layers.setViewMode(QListView.ViewMode.IconMode)
        self.layers.setResizeMode(QListView.ResizeMode.Adjust)
        self.layers.setMovement(QListView.Movement.Static)
        self.layers.setIconSize(QSize(GRID_WIDTH, GRID_WIDTH))
        self.layers.setGridSize(QSize(GRID_WIDTH + 24, GRID_WIDTH + 44))
        self.layers.setWordWrap(True)
        self.layers.setSpacing(4)
        self.layers.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        top = QHBoxLayout()
        top.addWidget(self.status, 1)
        top.addWidget(QLabel("Channels per layer:"))
        top.addWidget(self.channels)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.layers, 1)

    def show_message(self, text: str) -> None:
        self.maps = None
        self.layers.clear()
        self.status.setText(text)

    def show_maps(self, maps: FeatureMaps) -> None:
        self.maps = maps
        self.layers.clear()
        self.status.setText(f"{len(maps.layers)} convolution layer(s), in the order the image passes them; each "
                            f"channel is scaled to black–white on its own."
                            + (" The model straightens the image's slant first: these are maps of the "
                               "straightened image." if maps.deskewed else ""))
        for i, layer in enumerate(maps.layers):
            item = QListWidgetItem(QIcon(grid_pixmap(layer.grid)), layer_caption(i, layer))
            item.setToolTip(f"{layer.name}: channels {', '.join(map(str, layer.shown))} of {layer.channels}")
            self.layers.addItem(item)

    def shown_layers(self) -> int:
        return self.layers.count()
