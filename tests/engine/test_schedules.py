"""Learning-rate schedules: plateau (ReduceLROnPlateau on the validation loss, per epoch) is
judged by TrainConfig, listed by the CLI, and its state survives checkpoint and resume."""
import pytest
import torch

from balancelab.engine.core.events import Finished
from balancelab.engine.train.checkpoints import load_checkpoint
from balancelab.engine.train.config import SCHEDULES, ConfigError, TrainConfig
from balancelab.engine.train.loop import PlateauSchedule, lr_factor, make_scheduler
from balancelab.engine.train.run import train


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(data="", out="", **kw)


def _optimizer(lr: float = 1.0) -> torch.optim.Optimizer:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)


def test_plateau_is_a_schedule_with_judged_settings(tmp_path):
    assert {"step", "cosine", "plateau"} <= set(SCHEDULES)
    base = dict(data=str(tmp_path), out=str(tmp_path / "run"), schedule="plateau")
    TrainConfig(**base).validate()
    for bad, words in (({"plateau_factor": 1.0}, "plateau factor"), ({"plateau_factor": 0.0}, "plateau factor"),
                       ({"plateau_patience": -1}, "plateau patience"), ({"plateau_factor": "half"}, "plateau factor")):
        with pytest.raises(ConfigError, match=words):
            TrainConfig(**base, **bad).validate()


def test_step_schedule_decays_every_step_size_epochs():
    cfg = _cfg(schedule="step", step_size=2, step_gamma=0.5, epochs=6)
    assert [lr_factor(cfg, e * 10, 10) for e in range(6)] == [1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_plateau_cuts_only_when_the_validation_loss_stops_falling():
    opt = _optimizer()
    sched = make_scheduler(_cfg(schedule="plateau", plateau_patience=1, plateau_factor=0.5), opt, 10)
    assert isinstance(sched, PlateauSchedule)
    lrs = []
    for loss in (1.0, 0.8, 0.6, 0.6, 0.6, 0.6):
        for _ in range(10):
            sched.step()  # per batch: no change within an epoch
        sched.epoch_end(loss)
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 1.0, 1.0, 0.5, 0.5]  # two epochs without improvement (patience 1), then a cut


def test_plateau_warm_up_ramps_then_hands_over():
    opt = _optimizer(2.0)
    sched = make_scheduler(_cfg(schedule="plateau", warmup_epochs=1), opt, 4)
    seen = [opt.param_groups[0]["lr"]]
    for _ in range(5):
        sched.step()
        seen.append(opt.param_groups[0]["lr"])
    assert seen == pytest.approx([0.5, 1.0, 1.5, 2.0, 2.0, 2.0])


def test_plateau_state_is_checkpointed_and_restored_on_resume(demo_root, tmp_path):
    """lr 1e-7: the validation loss cannot improve by the relative threshold, so with patience 1 the
    rate is cut after the third epoch. Interrupted after epoch 2, the cut still comes only if the
    resumed run restored the plateau's memory of epochs 1 and 2."""
    def cfg(out, epochs, resume=False):
        return TrainConfig(data=str(demo_root), out=str(out), model="tiny-2conv", epochs=epochs, batch_size=128,
                           lr=1e-7, augment="none", schedule="plateau", plateau_patience=1, plateau_factor=0.5,
                           seed=0, device="cpu", resume=resume)

    whole = list(train(cfg(tmp_path / "whole", 4)))[-1]
    assert isinstance(whole, Finished), whole
    want = [h["lr"] for h in whole.result.metrics["history"]]
    assert want == pytest.approx([1e-7, 1e-7, 1e-7, 5e-8], rel=1e-6)
    list(train(cfg(tmp_path / "cut", 2)))
    saved = load_checkpoint(str(tmp_path / "cut" / "last.pt"))["scheduler"]
    assert saved["plateau"]["num_bad_epochs"] == 1 and saved["plateau"]["last_epoch"] == 2
    resumed = list(train(cfg(tmp_path / "cut", 4, resume=True)))[-1]
    assert isinstance(resumed, Finished), resumed
    assert [h["lr"] for h in resumed.result.metrics["history"]] == pytest.approx(want, rel=1e-6)


def test_resume_with_another_schedule_is_refused(demo_root, tmp_path):
    from balancelab.engine.core.events import Failed

    base = dict(data=str(demo_root), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1, augment="none", seed=0)
    list(train(TrainConfig(**base, schedule="plateau")))
    last = list(train(TrainConfig(**{**base, "epochs": 2}, schedule="cosine", resume=True)))[-1]
    assert isinstance(last, Failed) and "plateau" in last.message and "schedule" in last.message


def test_cli_train_lists_plateau_and_its_settings(capsys):
    from balancelab.engine.cli.main import main

    assert main(["train", "--help"]) == 0
    text = capsys.readouterr().out
    assert "plateau" in text and "--plateau-patience" in text and "--plateau-factor" in text
