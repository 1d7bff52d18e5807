"""Start the desktop app."""
from __future__ import annotations

import logging
import os
import sys

from PySide6.QtCore import QCoreApplication
from PySide6.QtGui import QIcon
from PySide6.QtWidgets import QApplication

RESOURCES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "resources")


def configure_application() -> None:
    QCoreApplication.setOrganizationName("BalanceLab")
    QCoreApplication.setApplicationName("BalanceLab")


def load_stylesheet() -> str:
    path = os.path.join(RESOURCES, "style.qss")
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError:
        return ""


def prewarm_torch() -> None:
    """Import what the first optimizer pulls in (torch._dynamo, ~2 s) on the GUI thread at start-up.

    Done later on the training thread, that import holds the GIL in long C calls and freezes
    the GUI for a few hundred milliseconds at the start of the first training.
    """
    import torch

    torch.optim.Adam([torch.zeros(1, requires_grad=True)])


def create_application(argv: list[str] | None = None) -> QApplication:
    """The QApplication as the app runs it (names, style sheet, torch pre-warmed); benches use it too
    so they measure what users get."""
    configure_application()
    app = QApplication.instance() or QApplication(argv or sys.argv)
    app.setStyleSheet(load_stylesheet())
    app.setWindowIcon(QIcon(os.path.join(RESOURCES, "icon.png")))
    app.setApplicationDisplayName("BalanceLab")
    prewarm_torch()
    return app


def missing_display() -> str | None:
    """Why the desktop app cannot open here, before Qt aborts the process over it (on Linux
    without X11 or Wayland and no platform chosen, Qt prints six lines and dies with SIGABRT)."""
    if not sys.platform.startswith("linux") or os.environ.get("QT_QPA_PLATFORM"):
        return None
    if os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
        return None
    return ("no display to open the app on (set DISPLAY, or QT_QPA_PLATFORM=offscreen); every command works "
            "without one: python main.py --help")


def run_app(argv: list[str] | None = None) -> int:
    problem = missing_display()
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = create_application(argv)
    from balancelab.gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    return app.exec()
