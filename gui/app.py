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


def run_app(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = create_application(argv)
    from balancelab.gui.main_window import MainWindow

    window = MainWindow()
    window.show()
    return app.exec()
