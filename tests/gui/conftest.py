"""Fixtures of the GUI tests: a real main window (offscreen) and a writable copy of the demo dataset."""
import os
import shutil

import pytest

os.environ.setdefault("BALANCELAB_NO_DIALOGS", "1")


@pytest.fixture
def demo_copy(demo_root, tmp_path):
    target = tmp_path / "digits"
    shutil.copytree(demo_root, target)
    return target


@pytest.fixture
def window(qtbot, qsettings_tmp):
    from balancelab.gui.main_window import MainWindow

    w = MainWindow(open_demo_if_empty=False)
    qtbot.addWidget(w)
    w.show()
    yield w
    w.shutdown()
