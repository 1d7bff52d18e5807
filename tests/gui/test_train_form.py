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
