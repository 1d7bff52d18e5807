"""The Train form's schedule and bagging controls come from TrainConfig and the strategy registry."""
from balancelab.engine.train.config import SCHEDULES, TrainConfig
from balancelab.engine.train.strategies import BAGGING


def test_schedule_choices_and_bagging_members_reach_the_config(qtbot, qsettings_tmp, tmp_path):
    from balancelab.gui.views.train_form import TrainForm

    form = TrainForm()
    qtbot.addWidget(form)
    defaults = TrainConfig(data="", out="")
    assert [form.schedule_box.itemData(i) for i in range(form.schedule_box.count())] == list(SCHEDULES)
    assert form.config("d", "o").schedule == defaults.schedule
    assert not form.bagging_members.isEnabled()  # no bagging in the default strategy
    form.schedule_box.setCurrentIndex(form.schedule_box.findData("plateau"))
    form.strategy_form.set_strategy(f"oversample+{BAGGING.name}")
    assert form.bagging_members.isEnabled()
    form.bagging_members.setValue(3)
    cfg = form.config(str(tmp_path), str(tmp_path / "run"))
    assert cfg.schedule == "plateau" and cfg.bagging_members == 3 and BAGGING.name in cfg.strategy.split("+")
    cfg.validate()


def test_augmentation_choices_come_from_the_registry(qtbot, qsettings_tmp, tmp_path):
    from balancelab.engine.train.augment import AUGMENTATIONS
    from balancelab.gui.views.train_form import TrainForm

    form = TrainForm()
    qtbot.addWidget(form)
    assert [form.augment_box.itemData(i) for i in range(form.augment_box.count())] == list(AUGMENTATIONS)
    form.augment_box.setCurrentIndex(form.augment_box.findData("geometric"))
    assert form.config(str(tmp_path), str(tmp_path / "run")).augment == "geometric"


def test_live_panel_says_which_epoch_was_kept_and_forgets_it_for_the_next_run(qtbot):
    from balancelab.engine.core.events import Finished
    from balancelab.engine.train.run_events import RunResult
    from balancelab.gui.views.train_live import LiveTrainingPanel

    panel = LiveTrainingPanel()
    qtbot.addWidget(panel)
    history = [{"epoch": e + 1, "val_balanced_accuracy": v} for e, v in enumerate([0.991, 0.9882, 0.9902])]
    metrics = {"balanced_accuracy": 0.98, "macro_f1": 0.98, "evaluated_on": "test", "best_epoch": 3,
               "history": history, "select_metric": "balanced_accuracy", "selection_tolerance": 0.0125}
    panel.show_event(Finished(RunResult("run", metrics)))
    assert "best epoch 3" in panel.status.text()
    assert "kept epoch 3 of 3" in panel.status.toolTip() and "epoch 1's 0.9910" in panel.status.toolTip()
    panel.reset()
    assert panel.status.toolTip() == ""


def test_deskew_reaches_the_config_and_is_kept_as_a_preference(qtbot, qsettings_tmp, tmp_path):
    from PySide6.QtCore import QSettings

    from balancelab.engine.train.config import SETTING_HELP
    from balancelab.gui.views.train_form import TrainForm

    form = TrainForm()
    qtbot.addWidget(form)
    assert form.config("d", "o").deskew is TrainConfig(data="", out="").deskew is False
    assert form.deskew.toolTip().lower() == SETTING_HELP["deskew"].lower()  # train --help's words
    form.deskew.setChecked(True)
    assert form.config(str(tmp_path), str(tmp_path / "run")).deskew is True
    form.save_settings()
    again = TrainForm()
    qtbot.addWidget(again)
    assert again.deskew.isChecked()
    for damaged in ("maybe", 3, ["true"]):  # the preferences file is untrusted: the default stays
        QSettings().setValue("train/deskew", damaged)
        third = TrainForm()
        qtbot.addWidget(third)
        assert not third.deskew.isChecked()
    QSettings().setValue("train/deskew", "true")  # an INI file stores text
    fourth = TrainForm()
    qtbot.addWidget(fourth)
    assert fourth.deskew.isChecked()


def test_the_runs_table_says_when_a_run_deskewed():
    from balancelab.gui.widgets.table_models import model_and_strategy

    assert model_and_strategy({}, {"model": "mnist-classic", "strategy": "none", "deskew": True}) == \
        ("mnist-classic (deskewed)", "none")
    for untrusted in (False, "true", 1, None):  # config.json is read back: only a real true counts
        assert model_and_strategy({}, {"model": "m", "strategy": "s", "deskew": untrusted})[0] == "m"


def test_review_feature_maps_say_when_the_model_straightened_the_image(qtbot):
    import numpy as np

    from balancelab.engine.results.feature_maps import FeatureMaps, LayerMaps
    from balancelab.gui.views.review_maps import FeatureMapsPanel

    panel = FeatureMapsPanel()
    qtbot.addWidget(panel)
    layer = LayerMaps("backbone.features.0", 4, (8, 8), (0, 1), np.zeros((8, 18), dtype=np.uint8))
    panel.show_maps(FeatureMaps("x.png", [layer]))
    assert "straightened" not in panel.status.text()
    panel.show_maps(FeatureMaps("x.png", [layer], deskewed=True))
    assert "straightened image" in panel.status.text() and panel.shown_layers() == 1
