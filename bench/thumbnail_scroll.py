"""Thumbnail grid on a 100,000-image class: time per scroll step on the GUI thread, and how long
until the visible thumbnails are decoded by the worker pool.

    QT_QPA_PLATFORM=offscreen python bench/thumbnail_scroll.py /tmp/mnist_png [--items 100000]
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np
from PySide6.QtCore import QEventLoop
from PySide6.QtWidgets import QApplication


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root")
    ap.add_argument("--items", type=int, default=100_000)
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    files = []
    for d, _, names in os.walk(args.root):
        files += [os.path.join(d, n) for n in names if n.endswith(".png")]
    files.sort()
    # beyond the number of real files, paths repeat (MNIST has 70,000 files)
    items = [{"path": files[i % len(files)], "caption": str(i)} for i in range(args.items)]
    app = QApplication(sys.argv)
    from balancelab.gui.widgets.tables import make_grid
    from balancelab.gui.widgets.table_models import ThumbnailListModel
    from balancelab.gui.widgets.thumbnails import ThumbnailLoader

    loader = ThumbnailLoader(96)
    model = ThumbnailListModel(loader)
    t = time.perf_counter()
    model.set_items(items)
    view = make_grid(model)
    view.resize(1000, 700)
    view.show()
    while loader._stack or loader._running:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
    first = time.perf_counter() - t
    bar = view.verticalScrollBar()
    rng = np.random.default_rng(0)
    step_times, settle_times = [], []
    for _ in range(args.steps):
        t = time.perf_counter()
        bar.setValue(int(rng.integers(0, bar.maximum() + 1)))
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents)
        view.viewport().repaint()
        step_times.append(time.perf_counter() - t)
        while loader._stack or loader._running:
            app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 5)
        settle_times.append(time.perf_counter() - t)
    st, se = np.array(step_times) * 1000, np.array(settle_times) * 1000
    print(f"{len(items):,} items; first screen with thumbnails: {first * 1000:.0f} ms")
    print(f"random jump + repaint on the GUI thread: median {np.median(st):.1f} ms, max {st.max():.1f} ms")
    print(f"until every visible thumbnail is decoded: median {np.median(se):.0f} ms, max {se.max():.0f} ms")
    loader.shutdown()


if __name__ == "__main__":
    main()
