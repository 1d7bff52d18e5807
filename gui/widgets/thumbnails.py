"""Lazy thumbnails: made on a small thread pool, newest request first, cached as QPixmaps.

Each comes from the folder's decoded cache, else the JPEG's embedded EXIF thumbnail, and only
else from a reduced-scale decode, always on the pool (see engine/data/thumbnail_source.py).

Views ask only for the rows they show, so a 100k-image folder costs only what is on screen.
Requests are served last-in-first-out: when the user scrolls fast, what is visible now is
decoded before what scrolled past.
"""
from __future__ import annotations

import threading
from collections import OrderedDict

from PySide6.QtCore import QObject, QRunnable, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QPixmap

from balancelab.engine.data.imageio import ImageDecodeError, to_channels
from balancelab.engine.data.thumbnail_source import thumbnail_image


def pil_to_qimage(im) -> QImage:
    im = to_channels(im, 3)
    data = im.tobytes("raw", "RGB")
    return QImage(data, im.width, im.height, 3 * im.width, QImage.Format.Format_RGB888).copy()


class _Emitter(QObject):
    loaded = Signal(str, QImage, str)  # path, image (null on error), error text


class _Job(QRunnable):
    def __init__(self, loader: "ThumbnailLoader") -> None:
        super().__init__()
        self.loader = loader

    def run(self) -> None:
        while True:
            path = self.loader._next_request()
            if path is None:
                return
            try:
                im, source = thumbnail_image(path, self.loader.size, self.loader.canonical)
                self.loader.sources[source] = self.loader.sources.get(source, 0) + 1
                self.loader._emitter.loaded.emit(path, pil_to_qimage(im), "")
            except ImageDecodeError as exc:
                self.loader._emitter.loaded.emit(path, QImage(), exc.reason)
            except Exception as exc:  # noqa: BLE001 - a thumbnail must never crash the app
                self.loader._emitter.loaded.emit(path, QImage(), str(exc))


class ThumbnailLoader(QObject):
    ready = Signal(str)

    def __init__(self, size: int = 96, cache_limit: int = 4000, threads: int = 2, parent=None) -> None:
        super().__init__(parent)
        self.size = size
        self.cache_limit = cache_limit
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(threads)
        self._lock = threading.Lock()
        self._stack: list[str] = []
        self._queued: set[str] = set()
        self._running = 0
        self._cache: OrderedDict[str, QPixmap] = OrderedDict()
        self.errors: dict[str, str] = {}
        self.canonical = None  # the open folder's decoded copy (engine.data.canonical.Canonical), if any
        self.sources: dict[str, int] = {}  # how many thumbnails came from the cache, EXIF or a decode
        self._emitter = _Emitter()
        self._emitter.loaded.connect(self._on_loaded)
        self.placeholder = QPixmap(size, size)
        self.placeholder.fill(QColor("#e6e8eb"))
        self.broken = QPixmap(size, size)
        self.broken.fill(QColor("#f4c7c3"))

    def set_canonical(self, canonical) -> None:
        """Serve thumbnails from this decoded copy from now on (read on the pool, never here)."""
        self.canonical = canonical

    def cached(self, path: str) -> QPixmap | None:
        return self._cache.get(path)

    def pixmap(self, path: str) -> QPixmap:
        pm = self._cache.get(path)
        if pm is not None:
            self._cache.move_to_end(path)
            return pm
        if path in self.errors:
            return self.broken
        self.request(path)
        return self.placeholder

    def request(self, path: str) -> None:
        with self._lock:
            if path in self._queued:
                self._stack.remove(path)
            self._stack.append(path)
            self._queued.add(path)
            start = self._running < self.pool.maxThreadCount()
            if start:
                self._running += 1
        if start:
            self.pool.start(_Job(self))

    def _next_request(self) -> str | None:
        with self._lock:
            if not self._stack:
                self._running -= 1
                return None
            path = self._stack.pop()
            self._queued.discard(path)
            return path

    def _on_loaded(self, path: str, image: QImage, error: str) -> None:
        if image.isNull():
            self.errors[path] = error or "cannot decode"
        else:
            if max(image.width(), image.height()) < self.size:  # small images (digits, icons): enlarge crisply
                image = image.scaled(self.size, self.size, Qt.AspectRatioMode.KeepAspectRatio,
                                     Qt.TransformationMode.FastTransformation)
            self._cache[path] = QPixmap.fromImage(image)
            while len(self._cache) > self.cache_limit:
                self._cache.popitem(last=False)
        self.ready.emit(path)

    def cancel_pending(self) -> None:
        with self._lock:
            self._stack.clear()
            self._queued.clear()

    def shutdown(self) -> None:
        self.cancel_pending()
        self.pool.waitForDone(5000)
