"""GUI responsiveness while training: a 20 ms timer on the GUI thread measures its own lateness
during a real training run started from the Train tab (offscreen).

    QT_QPA_PLATFORM=offscreen python bench/gui_responsiveness.py [--model cifar-classic] [--epochs 5]

Reports the maximum and 99th-percentile timer lateness (the longest the GUI thread was busy).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("BALANCELAB_NO_DIALOGS", "1")

import numpy as np
from PySide6.QtCore import QEventLoop, QSettings, QTimer


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="cifar-classic")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--stop-after", type=float, default=0.0,
                    help="press Stop this many seconds into training and report how long it took to end")
    args = ap.parse_args()
    home = tempfile.mkdtemp(prefix="bl-resp-")
    os.environ.setdefault("BALANCELAB_HOME", home)
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, home)
    from balancelab.gui.app import create_application

    app = create_application(sys.argv)  # as run_app does
    from balancelab.engine.core.events import Finished, Progress
    from balancelab.gui.main_window import MainWindow

    w = MainWindow()
    w.show()
    while w.dataset_view.result is None:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 50)
    tv = w.train_view
    w.tabs.setCurrentWidget(tv)
    tv.model_box.setCurrentIndex(tv.model_box.findData(args.model))
    tv.epochs.setValue(args.epochs)
    tv.batch.setValue(args.batch)
    settle = time.perf_counter() + 0.5  # the user sees the painted form before pressing Start
    while time.perf_counter() < settle:
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)
    lateness: list[float] = []
    interval = 0.020
    last = [time.perf_counter()]

    stalls: list[tuple[float, float, str]] = []

    def tick() -> None:
        now = time.perf_counter()
        late = max(0.0, now - last[0] - interval)
        lateness.append(late)
        if late > 0.05:
            stalls.append((late * 1000, now - t0, tv.status.text()[:70]))
        last[0] = now

    timer = QTimer()
    timer.setInterval(int(interval * 1000))
    timer.timeout.connect(tick)
    t0 = time.perf_counter()
    tv.start()
    print(f"Start button handler: {(time.perf_counter() - t0) * 1000:.0f} ms")
    arrivals: list[tuple[float, object]] = []  # (GUI-thread arrival time, event)
    tv.thread.event.connect(lambda ev: arrivals.append((time.perf_counter(), ev)))
    last[0] = time.perf_counter()
    timer.start()
    stop_at = None
    while tv.is_training():
        app.processEvents(QEventLoop.ProcessEventsFlag.AllEvents, 10)
        if args.stop_after and stop_at is None and time.perf_counter() - t0 > args.stop_after and tv.history:
            stop_at = time.perf_counter()
            tv.stop()
    if stop_at is not None:
        ended = time.perf_counter()
        after = [(t - stop_at, ev) for t, ev in arrivals if t >= stop_at]
        loop_end = next((dt for dt, ev in after if isinstance(ev, Progress) and ev.phase == "final evaluation"), None)
        saved = next((dt for dt, ev in after if isinstance(ev, Finished)), None)
        print(f"Stop pressed at t={stop_at - t0:.1f}s: training loop ended {loop_end:.2f} s later, final evaluation of "
              f"the best checkpoint on the test split delivered {saved:.2f} s after Stop, thread ended "
              f"{ended - stop_at:.2f} s after Stop")
    timer.stop()
    wall = time.perf_counter() - t0
    lat = np.array(lateness) * 1000
    print(f"training {args.model}, {args.epochs} epochs, batch {args.batch}: {wall:.1f} s, {len(lat)} timer ticks")
    print(f"GUI timer lateness: max {lat.max():.1f} ms, p99 {np.percentile(lat, 99):.1f} ms, median {np.median(lat):.1f} ms")
    for ms, at, status in sorted(stalls, reverse=True)[:8]:
        print(f"  stall {ms:6.1f} ms at t={at:5.1f}s during: {status}")
    w.close()


if __name__ == "__main__":
    main()
