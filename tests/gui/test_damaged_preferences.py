"""The preferences file is read back like any other file: untrusted. A damaged value is ignored,
never a window that cannot open."""
import math

import pytest

pytest.importorskip("pytestqt")


@pytest.mark.parametrize("damage", [
    {"train/epochs": "abc", "train/batch": "1e400", "train/seed": [1, 2], "train/image_size": "-5",
     "train/bagging_members": "nan", "train/lr": "nan"},
    {"train/lr": "inf", "train/epochs": "99999999999999999999", "train/model_box": 5},
    {"window/geometry": "not bytes", "window/state": 12, "dataset/last": ["a", "b"], "dataset/recent": 7,
     "train/strategy": 3},
])
def test_damaged_preferences_are_ignored_and_the_window_opens(qtbot, qsettings_tmp, damage):
    from PySide6.QtCore import QSettings

    from balancelab.engine.train.config import TrainConfig
    from balancelab.gui.main_window import MainWindow

    s = QSettings()
    for key, value in damage.items():
        s.setValue(key, value)
    s.sync()
    w = MainWindow(open_demo_if_empty=False)
    qtbot.addWidget(w)
    w.show()
    defaults = TrainConfig(data="", out="")
    form = w.train_view.form
    assert math.isfinite(form.lr.value()) and form.lr.value() == defaults.lr  # "nan" and "inf" are not 10.0
    if "train/epochs" in damage:
        assert form.epochs.value() == defaults.epochs
    if "train/model_box" in damage:
        assert form.model_box.currentData() == defaults.model
    if "dataset/recent" in damage:
        assert w._recent() == []  # a number where a list of folders belongs: no recent folders
    w.shutdown()


def test_a_preference_in_range_is_restored(qtbot, qsettings_tmp):
    from PySide6.QtCore import QSettings

    from balancelab.gui.main_window import MainWindow

    s = QSettings()
    s.setValue("train/epochs", "7")  # an INI file stores text
    s.setValue("train/lr", "0.003")
    s.sync()
    w = MainWindow(open_demo_if_empty=False)
    qtbot.addWidget(w)
    assert w.train_view.form.epochs.value() == 7 and w.train_view.form.lr.value() == 0.003
    w.shutdown()
