"""Shared fixtures. Qt runs offscreen; BalanceLab's data folder is a temporary one."""
from __future__ import annotations

import os
import sys
import threading

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest



@pytest.fixture(scope="session", autouse=True)
def balancelab_home(tmp_path_factory):
    home = tmp_path_factory.mktemp("balancelab-home")
    os.environ["BALANCELAB_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def demo_root(balancelab_home, tmp_path_factory):
    from balancelab.engine.data.demo_dataset import build_demo_dataset

    return build_demo_dataset(tmp_path_factory.mktemp("demo") / "digits")


@pytest.fixture(autouse=True)
def no_thread_left_running():
    """Fail any test that leaves a Python or Qt thread running."""
    before = {t.ident for t in threading.enumerate()}
    yield
    import time

    deadline = time.monotonic() + 5.0
    while True:
        extra = [t for t in threading.enumerate() if t.ident not in before and t.is_alive() and not t.daemon]
        if not extra or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert not extra, f"threads left running: {[t.name for t in extra]}"
    if "PySide6.QtCore" in sys.modules:
        from PySide6.QtCore import QThreadPool

        pool = QThreadPool.globalInstance()
        assert pool.waitForDone(5000), "QThreadPool work left running"
    if "balancelab.gui.worker" in sys.modules:
        from balancelab.gui.worker import running_threads

        left = running_threads()
        assert not left, f"worker threads left running: {left}"


@pytest.fixture
def qsettings_tmp(tmp_path):
    """QSettings in a temporary INI file so tests never read or write the user's preferences."""
    from PySide6.QtCore import QCoreApplication, QSettings

    QCoreApplication.setOrganizationName("BalanceLabTests")
    QCoreApplication.setApplicationName("BalanceLabTests")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    QSettings().clear()
    return tmp_path / "settings"
