"""Resuming an interrupted run from the settings it saved (the GUI's Resume): the run goes on
where it stopped, and a crafted config.json cannot point training elsewhere or slip bad values
past the form's checks."""
from __future__ import annotations

import json
import os
import sys

import pytest

from balancelab.engine.core.events import Finished
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.train.resume import can_resume, resume_config
from balancelab.engine.train.run import train
from balancelab.engine.train.run_events import CheckpointSaved, EpochEnd
from balancelab.engine.train.run_folder import RunError, read_state
from tests.hostile import write_png


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("resume") / "data"
    for c in ("a", "b"):
        for i in range(10):
            write_png(root / c / f"{i}.png", seed=ord(c) * 10 + i)
    return root


def interrupted(data, out, **kw):
    """A run whose process went away after its first epoch was saved (the generator is closed, as
    when the app quits mid-training; a SIGKILL leaves the same folder, marked "running")."""
    settings = {"data": str(data), "out": str(out), "model": "tiny-2conv", "epochs": 3, "image_size": 16,
                "batch_size": 8, "seed": 7, "lr": 0.002, **kw}
    events = train(TrainConfig(**settings))
    for ev in events:
        if isinstance(ev, CheckpointSaved) and ev.kind == "last":
            break
    events.close()
    assert read_state(str(out)) == "incomplete"
    return out


def rewrite_config(run, **changes):
    path = run / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


def test_an_interrupted_run_goes_on_from_its_saved_epoch_with_its_own_settings(data, tmp_path):
    run = interrupted(data, tmp_path / "run")
    cfg = resume_config(str(run), str(data))
    assert cfg.resume and cfg.out == str(run) and (cfg.seed, cfg.lr, cfg.epochs) == (7, 0.002, 3)
    events = list(train(cfg))
    assert isinstance(events[-1], Finished) and [e.epoch for e in events if isinstance(e, EpochEnd)] == [2, 3]
    assert read_state(str(run)) == "complete"
    with pytest.raises(RunError, match="nothing to resume"):
        resume_config(str(run), str(data))


def test_a_killed_run_marked_running_without_a_live_writer_can_resume(data, tmp_path):
    run = interrupted(data, tmp_path / "run")
    (run / ".balancelab-run").write_text(json.dumps({"state": "running", "schema": 1}))
    assert can_resume(str(run), str(data))


@pytest.mark.parametrize("damage, error, words", [
    ({"data": "/"}, RunError, "another dataset"),
    ({"lr": "fast"}, ConfigError, "learning rate"),
    ({"epochs": 10**9}, ConfigError, "epochs"),
    ({"model": "resnet9000"}, ConfigError, "resnet9000"),
    ({"strategy": "balanced-bagging"}, ConfigError, "bagging"),
    ({"resume": "yes"}, None, None),  # overridden: resuming is what was asked for
])
def test_saved_settings_are_judged_like_the_form(data, tmp_path, damage, error, words):
    run = interrupted(data, tmp_path / "run")
    rewrite_config(run, **damage)
    if error is None:
        assert resume_config(str(run), str(data)).resume is True
        return
    with pytest.raises(error, match=words):
        resume_config(str(run), str(data))
    assert not can_resume(str(run), str(data))


def test_a_run_without_settings_or_not_a_run_is_refused_in_one_line(data, tmp_path):
    run = interrupted(data, tmp_path / "run")
    (run / "config.json").unlink()
    with pytest.raises(RunError, match="before it saved its settings"):
        resume_config(str(run), str(data))
    (run / "config.json").write_text("[" * 100000)
    with pytest.raises(RunError):
        resume_config(str(run), str(data))
    (tmp_path / "plain").mkdir()
    with pytest.raises(RunError, match="not a BalanceLab run"):
        resume_config(str(tmp_path / "plain"), str(data))


@pytest.mark.parametrize("history", [[{"epoch": 1, "val_loss": "x"}], [{"epoch": "1"}], "text", [None],
                                     [{"epoch": 1, "train_loss": float("nan")}], [{"epoch": 5}], [], 5,
                                     [{"epoch": 1, "val_loss": 10**400}],
                                     [{"epoch": "x", "is_best": True}, {"epoch": 1, "is_best": True}]])
def test_a_crafted_or_gapped_history_in_last_pt_refuses_the_resume_and_changes_nothing(data, tmp_path, history):
    """A crafted entry went to the live curves on the GUI thread and to history.csv (a KeyError or a
    text plotted); then it was dropped, so the resumed run's epochs, curves and kept epoch did not
    add up. The weights may be fine, but the run's record is not: the resume is refused."""
    import torch
    from balancelab.engine.core.events import Failed

    run = interrupted(data, tmp_path / "run")
    state = torch.load(run / "last.pt", weights_only=True)
    real = state["history"][0]
    state["history"] = [({**real, **h} if isinstance(h, dict) else h) for h in history] if isinstance(
        history, list) else history
    torch.save(state, run / "last.pt")
    def outputs() -> dict:  # the run's files; its lock and state marker carry timestamps
        return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and not p.name.startswith(".")}

    before = outputs()
    events = list(train(resume_config(str(run), str(data))))
    failed = events[-1]
    assert isinstance(failed, Failed) and "last.pt is damaged" in failed.message, failed
    assert "readable epoch(s) of 1" in failed.message and "start a new run" in failed.message
    assert outputs() == before and read_state(str(run)) == "incomplete"


def test_a_resumed_run_hands_its_earlier_epochs_to_the_curves(data, tmp_path):
    run = interrupted(data, tmp_path / "run")
    events = list(train(resume_config(str(run), str(data))))
    started = next(e for e in events if type(e).__name__ == "TrainStarted")
    assert [h["epoch"] for h in started.history] == [1] and started.start_epoch == 1
    assert [h["epoch"] for h in events[-1].result.metrics["history"]] == [1, 2, 3]


@pytest.mark.parametrize("change, words", [({"lr": 0.01}, "learning rate 0.002, not 0.01"),
                                           ({"strategy": "oversample"}, "strategy 'none', not 'oversample'"),
                                           ({"augment": "none"}, "augment"), ({"seed": 8}, "seed 7, not 8")])
def test_train_resume_with_other_settings_is_refused_and_the_record_kept(data, tmp_path, change, words):
    """--resume took whatever the command line said: epochs 1..k trained one way, the rest another,
    and config.json rewritten to claim the second. Only where the run lives, how fast it trains
    and how long it goes on may change."""
    from balancelab.engine.core.events import Failed

    run = interrupted(data, tmp_path / "run")
    before = (run / "config.json").read_bytes()
    cfg = resume_config(str(run), str(data))
    import dataclasses

    last = list(train(dataclasses.replace(cfg, **change)))[-1]
    assert isinstance(last, Failed) and "cannot resume" in last.message and words in last.message, last.message
    assert (run / "config.json").read_bytes() == before
    longer = dataclasses.replace(cfg, epochs=4, device="cpu", workers=1)
    events = list(train(longer))
    assert isinstance(events[-1], Finished) and [e.epoch for e in events if isinstance(e, EpochEnd)] == [2, 3, 4]


def test_a_refused_resume_leaves_a_finished_run_finished(data, tmp_path):
    """Opening the folder marked it "running", and the refusal then marked it "incomplete": the
    finished run vanished from the runs list and evaluate refused it."""
    import dataclasses

    from balancelab.engine.core.events import Failed
    from balancelab.engine.train.run_folder import list_runs

    run = tmp_path / "run"
    settings = dict(data=str(data), out=str(run), model="tiny-2conv", epochs=1, image_size=16, batch_size=8)
    assert isinstance(list(train(TrainConfig(**settings)))[-1], Finished)
    refused = list(train(TrainConfig(**settings, lr=0.5, resume=True)))[-1]
    assert isinstance(refused, Failed) and "cannot resume" in refused.message
    assert read_state(str(run)) == "complete" and [r["dir"] for r in list_runs(str(tmp_path))] == [str(run)]
    assert "--resume" not in refused.message.split("cannot resume")[1]  # no "the epochs are kept" hint for it
    # a resume that fails before its first checkpoint leaves the finished run as it was, its own
    # config.json put back (it was rewritten with the new epoch count before training)
    grown = TrainConfig(**{**settings, "epochs": 2}, resume=True)
    config_before = (run / "config.json").read_bytes()
    from balancelab.engine.train import run as run_module
    from balancelab.engine.train import run_folder

    def no_space(*a, **k):
        raise OSError(28, "No space left on device")
        yield  # a generator, like the real one

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_module, "train_one_epoch", no_space)
        failed = list(train(dataclasses.replace(grown)))[-1]
    assert isinstance(failed, Failed) and read_state(str(run)) == "complete"
    assert (run / "config.json").read_bytes() == config_before
    # once it has written a checkpoint, a failure leaves it incomplete: its files no longer agree
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(run_folder, "write_predictions", lambda *a, **k: no_space().__next__())
        failed = list(train(dataclasses.replace(grown)))[-1]
    assert isinstance(failed, Failed) and read_state(str(run)) == "incomplete"
    assert isinstance(list(train(grown))[-1], Finished) and read_state(str(run)) == "complete"


def test_a_run_another_trainer_holds_is_not_offered(data, tmp_path):
    from balancelab.engine.train.run_folder import RunFolderWriter

    run = interrupted(data, tmp_path / "run")
    with RunFolderWriter(str(run), resume=True):  # as another process training it now
        with pytest.raises(RunError, match="still being written"):
            resume_config(str(run), str(data))
    assert can_resume(str(run), str(data))


# --- found by a review of the first version -----------------------------------------------------


def refused(cfg) -> str:
    from balancelab.engine.core.events import Failed

    last = list(train(cfg))[-1]
    assert isinstance(last, Failed), last
    return last.message


@pytest.mark.parametrize("damage", [{"data": "/tmp/x\u0000y"}, {"lr": 10**400}, {"epochs": [[[]]]}])
def test_a_crafted_config_is_not_offered_and_raises_nothing(data, tmp_path, damage):
    """A NUL in the data path or a 400-digit number escaped can_resume (ValueError, OverflowError)
    and emptied the app's whole runs list."""
    run = interrupted(data, tmp_path / "run")
    rewrite_config(run, **damage)
    assert can_resume(str(run), str(data)) is False


@pytest.mark.parametrize("value", ["tensor", "deep"])
def test_a_crafted_saved_setting_is_a_refusal_not_a_python_error(data, tmp_path, value):
    import torch

    run = interrupted(data, tmp_path / "run")
    state = torch.load(run / "last.pt", weights_only=True)
    deep: list = []
    for _ in range(5000):
        deep = [deep]
    state["config"]["lr"] = torch.tensor([0.002, 0.002]) if value == "tensor" else deep
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(50000)  # only to write the crafted file
    try:
        torch.save(state, run / "last.pt")
    finally:
        sys.setrecursionlimit(limit)
    message = refused(resume_config(str(run), str(data)))
    assert message.startswith("cannot resume") and "learning rate" in message and "\n" not in message


def test_settings_written_differently_are_the_same_and_every_difference_is_named(data, tmp_path):
    import dataclasses

    run = interrupted(data, tmp_path / "run", image_size=0, split_seed=-1, strategy="focal+oversample",
                      drw_epoch=-1)
    cfg = resume_config(str(run), str(data))
    same = dataclasses.replace(cfg, image_size=cfg.resolved_image_size(), split_seed=7, strategy="oversample+focal",
                               drw_epoch=2)  # 2 = two thirds of the 3 epochs the run was started with
    assert isinstance(list(train(dataclasses.replace(same, epochs=3)))[-1], Finished)
    run2 = interrupted(data, tmp_path / "run2")
    cfg2 = resume_config(str(run2), str(data))
    message = refused(dataclasses.replace(cfg2, lr=0.01, seed=5))
    assert "learning rate 0.002, not 0.01" in message and "seed 7, not 5" in message


def test_raising_epochs_keeps_the_drw_start_and_lowering_below_the_trained_is_refused(data, tmp_path):
    import dataclasses

    run = interrupted(data, tmp_path / "run", strategy="drw")  # drw from epoch 2 of 3
    cfg = resume_config(str(run), str(data))
    assert cfg.drw_epoch == 2  # the saved default, pinned: a longer run must not move it
    message = refused(dataclasses.replace(cfg, epochs=9, drw_epoch=-1))  # as `train --resume --epochs 9` gives it
    assert "drw start epoch 2, not 6" in message
    assert isinstance(list(train(dataclasses.replace(cfg, epochs=9)))[-1], Finished)
    lower = refused(dataclasses.replace(cfg, epochs=2))
    assert "has trained 9 epochs already" in lower and read_state(str(run)) == "complete"


def test_resume_without_last_pt_never_replaces_a_finished_run_or_an_ensemble(data, tmp_path):
    """It trained from scratch over them: a finished run's results replaced, an ensemble folder
    turned into a mix of ensemble.json and one new network."""
    import hashlib

    run = tmp_path / "run"
    base = dict(data=str(data), out=str(run), model="tiny-2conv", epochs=1, image_size=16, batch_size=8)
    assert isinstance(list(train(TrainConfig(**base)))[-1], Finished)
    (run / "last.pt").unlink()
    before = hashlib.sha256((run / "metrics.json").read_bytes()).hexdigest()
    assert "nothing to continue from" in refused(TrainConfig(**base, lr=0.01, resume=True))
    assert hashlib.sha256((run / "metrics.json").read_bytes()).hexdigest() == before
    assert read_state(str(run)) == "complete"
    from balancelab.engine.results.ensemble import build_ensemble

    other = tmp_path / "other"
    assert isinstance(list(train(TrainConfig(**{**base, "out": str(other)})))[-1], Finished)
    ensemble = tmp_path / "ens"
    assert isinstance(list(build_ensemble([str(other)], str(ensemble)))[-1], Finished)
    assert "ensemble run" in refused(TrainConfig(**{**base, "out": str(ensemble)}, resume=True))
    assert read_state(str(ensemble)) == "complete" and not (ensemble / "best.pt").exists()


def test_an_interrupted_run_begun_with_other_settings_is_refused_before_its_first_epoch(data, tmp_path):
    run = interrupted(data, tmp_path / "run")
    (run / "last.pt").unlink()  # killed during its first epoch: only config.json tells how it began
    cfg = resume_config(str(run), str(data))
    import dataclasses

    assert "learning rate 0.002, not 0.5" in refused(dataclasses.replace(cfg, lr=0.5))
    assert isinstance(list(train(cfg))[-1], Finished)


def test_a_run_records_absolute_paths_and_a_gpu_run_resumes_here(data, tmp_path, monkeypatch):
    monkeypatch.chdir(data.parent)
    run = interrupted(data.name, tmp_path / "run")  # a relative --data, as a CLI user types it
    assert json.loads((run / "config.json").read_text())["data"] == str(data)
    rewrite_config(run, device="cuda:7")
    monkeypatch.chdir(tmp_path)
    assert resume_config(str(run), str(data)).device == "auto"


# --- found by a second review ------------------------------------------------------------------


def test_a_config_without_data_or_out_is_not_offered_and_the_cli_says_so(data, tmp_path, capsys):
    from balancelab.engine.cli.main import main

    run = interrupted(data, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    del config["out"], config["data"]
    (run / "config.json").write_text(json.dumps(config))
    assert can_resume(str(run), str(data)) is False  # was TypeError: the app listed no run at all
    assert main(["resume", str(run)]) == 2 and "dataset folder" in capsys.readouterr().err


def test_a_finished_run_is_not_run_again_without_more_epochs(data, tmp_path):
    """Each `train --resume` of a finished crt run re-trained its re-trained classifier again."""
    import hashlib

    run = tmp_path / "run"
    base = dict(data=str(data), out=str(run), model="tiny-2conv", epochs=1, image_size=16, batch_size=8,
                strategy="crt", retrain_epochs=2)
    assert isinstance(list(train(TrainConfig(**base)))[-1], Finished)
    best = hashlib.sha256((run / "best.pt").read_bytes()).hexdigest()
    assert "finished its 1 epochs" in refused(TrainConfig(**base, resume=True))
    assert hashlib.sha256((run / "best.pt").read_bytes()).hexdigest() == best and read_state(str(run)) == "complete"


def test_an_early_stopped_run_trains_further_only_beyond_its_epochs(data, tmp_path):
    run = tmp_path / "run"
    base = dict(data=str(data), out=str(run), model="tiny-2conv", epochs=6, image_size=16, batch_size=8, lr=1e-9,
                early_stopping=1, select_metric="val_loss")  # the loss cannot improve: it stops after 2 epochs
    last = list(train(TrainConfig(**base)))[-1]
    assert isinstance(last, Finished) and len(last.result.metrics["history"]) < 6
    assert "finished its 6 epochs" in refused(TrainConfig(**base, resume=True))


def test_a_dataset_changed_since_the_run_began_is_refused(data, tmp_path):
    """The hold-out was drawn again: validation images of the first epochs became training images."""
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    run = interrupted(copy, tmp_path / "run")
    (copy / "a" / "0.png").unlink()  # curated after the kill
    message = refused(resume_config(str(run), str(copy)))
    assert "dataset changed since the run began" in message and read_state(str(run)) == "incomplete"


def test_a_last_pt_without_its_settings_is_compared_with_config_json(data, tmp_path):
    import dataclasses

    import torch

    run = interrupted(data, tmp_path / "run")
    state = torch.load(run / "last.pt", weights_only=True)
    del state["config"]
    torch.save(state, run / "last.pt")
    assert "learning rate 0.002, not 0.3" in refused(dataclasses.replace(resume_config(str(run), str(data)), lr=0.3))


def test_a_member_of_an_ensemble_is_never_trained_further(data, tmp_path):
    from balancelab.engine.results.ensemble import build_ensemble

    source = tmp_path / "src"
    base = dict(data=str(data), model="tiny-2conv", epochs=1, image_size=16, batch_size=8)
    assert isinstance(list(train(TrainConfig(**base, out=str(source))))[-1], Finished)
    assert isinstance(list(build_ensemble([str(source)], str(tmp_path / "ens")))[-1], Finished)
    member = next((tmp_path / "ens" / "members").iterdir())
    assert "member of the ensemble" in refused(TrainConfig(**{**base, "epochs": 3}, out=str(member), resume=True))


@pytest.mark.parametrize("field, crafted", [("optimizer", {"state": "x", "param_groups": "y"}),
                                            ("augment_rng", "text"), ("augment_rng", "short tensor")])
def test_a_damaged_optimizer_state_is_named_without_advice_to_retry(data, tmp_path, field, crafted):
    import torch

    run = interrupted(data, tmp_path / "run")
    state = torch.load(run / "last.pt", weights_only=True)
    state[field] = torch.zeros(3, dtype=torch.uint8) if crafted == "short tensor" else crafted
    torch.save(state, run / "last.pt")
    message = refused(resume_config(str(run), str(data)))
    assert "last.pt is damaged" in message and "resume `" not in message and "`resume" not in message


def test_a_run_that_never_trained_is_not_sent_to_resume(tmp_path):
    from balancelab.engine.core.paths import mark_run_folder
    from balancelab.engine.train.run_folder import incomplete_reason

    (tmp_path / "r").mkdir()
    mark_run_folder(str(tmp_path / "r"), "reserved")
    reason = incomplete_reason(str(tmp_path / "r"))
    assert "delete it" in reason and "resume" not in reason


def test_a_tensor_where_a_compared_default_is_read_is_a_refusal(data, tmp_path):
    import torch

    run = interrupted(data, tmp_path / "run")
    state = torch.load(run / "last.pt", weights_only=True)
    state["config"]["image_size"] = torch.tensor([0, 1])  # "== 0" of it raised inside the comparison
    torch.save(state, run / "last.pt")
    message = refused(resume_config(str(run), str(data)))
    assert message.startswith("cannot resume") and "a value that is no setting" in message


def test_a_resumed_run_stops_early_where_an_uninterrupted_one_does(data, tmp_path):
    """The patience spent before the interruption was given back in full: a run killed after epoch
    2 trained one epoch more than the same run left alone."""
    base = dict(data=str(data), model="tiny-2conv", epochs=6, image_size=16, batch_size=8, lr=1e-9,
                early_stopping=2, select_metric="val_loss")  # the loss cannot improve after epoch 1
    whole = list(train(TrainConfig(**base, out=str(tmp_path / "whole"))))[-1]
    events = train(TrainConfig(**base, out=str(tmp_path / "run")))
    next(ev for ev in events if isinstance(ev, CheckpointSaved) and ev.kind == "last" and ev.epoch == 2)
    events.close()
    resumed = list(train(resume_config(str(tmp_path / "run"), str(data))))[-1]
    assert len(resumed.result.metrics["history"]) == len(whole.result.metrics["history"]) == 3


def test_other_settings_are_refused_before_anything_is_decoded(data, tmp_path, monkeypatch):
    """The checkpoint's settings were compared after scanning and decoding: minutes on a large
    dataset before a one-line refusal."""
    import dataclasses

    from balancelab.engine.train import run as run_module

    run = interrupted(data, tmp_path / "run")

    def decoded(*a, **k):
        raise AssertionError("the data was decoded before the refusal")
        yield

    monkeypatch.setattr(run_module, "_prepare_data", decoded)
    message = refused(dataclasses.replace(resume_config(str(run), str(data)), lr=0.5))
    assert "learning rate 0.002, not 0.5" in message


def test_a_damaged_last_pt_is_refused_without_advice_to_resume_again(data, tmp_path):
    """A truncated last.pt failed with "continue with `resume …`" appended: the very command that
    had just failed. A refusal of the resume itself (ResumeRefused) carries no such hint."""
    from balancelab.engine.core.events import Failed

    run = interrupted(data, tmp_path / "run")
    last = run / "last.pt"
    last.write_bytes(last.read_bytes()[:200])
    failed = list(train(resume_config(str(run), str(data))))[-1]
    assert isinstance(failed, Failed) and failed.message.startswith("cannot resume"), failed.message
    assert "truncated" in failed.message and "`resume" not in failed.message and "\n" not in failed.message


def test_a_run_recorded_with_a_relative_dataset_path_is_told_to_name_the_dataset(data, tmp_path, monkeypatch):
    """Runs before absolute paths were recorded saved ``--data`` as typed; from another folder the
    resume said only "dataset folder does not exist"."""
    import dataclasses

    from balancelab.engine.train.resume import checked_for_resume, saved_settings

    run = interrupted(data, tmp_path / "run")
    rewrite_config(run, data="data")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"relative to the folder it was started in; give the dataset folder"):
        checked_for_resume(saved_settings(str(run)))
    assert not can_resume(str(run), str(data))
    cfg = checked_for_resume(dataclasses.replace(saved_settings(str(run)), data=str(data)))  # resume --data ROOT
    events = list(train(cfg))
    assert isinstance(events[-1], Finished) and [e.epoch for e in events if isinstance(e, EpochEnd)] == [2, 3]


def test_a_run_from_a_pretrained_file_resumes_after_the_file_is_gone(data, tmp_path):
    """Its weights are in last.pt by the first epoch, yet resuming wanted the pretrained file again
    (and an ImageNet-pretrained run the torch cache). The checkpoint's normalisation is kept."""
    import torch
    import torchvision

    from balancelab.engine.core.events import Failed
    from balancelab.engine.train.checkpoints import load_checkpoint

    weights = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), weights)
    run = interrupted(data, tmp_path / "run", model="mobilenet_v3_small", image_size=32, pretrained=str(weights),
                      finetune="head")
    mean = load_checkpoint(str(run / "last.pt"))["mean"]
    weights.unlink()
    events = list(train(resume_config(str(run), str(data))))
    assert isinstance(events[-1], Finished) and [e.epoch for e in events if isinstance(e, EpochEnd)] == [2, 3]
    assert load_checkpoint(str(run / "best.pt"))["mean"] == mean == pytest.approx([0.485, 0.456, 0.406])
    # a run with nothing saved yet still needs the file
    fresh = TrainConfig(str(data), str(tmp_path / "fresh"), model="mobilenet_v3_small", image_size=32, epochs=1,
                        pretrained=str(weights), resume=True)
    failed = list(train(fresh))[-1]
    assert isinstance(failed, Failed) and "pretrained weights file not found" in failed.message


@pytest.mark.parametrize("strategy", ["oversample+minority-augment", "mixup"])
def test_a_resumed_run_trains_exactly_what_an_uninterrupted_one_does(data, tmp_path, strategy):
    """The augmentation generator was re-seeded on resume, so epochs 2.. drew other shifts and
    erasures than an uninterrupted run and ended elsewhere; last.pt now keeps its state."""
    import torch

    from balancelab.engine.train.checkpoints import load_checkpoint

    settings = {"data": str(data), "model": "tiny-2conv", "epochs": 3, "image_size": 16, "batch_size": 8, "seed": 7,
                "lr": 0.002, "strategy": strategy, "augment": "light"}
    whole = list(train(TrainConfig(out=str(tmp_path / "whole"), **settings)))[-1]
    assert isinstance(whole, Finished)
    run = interrupted(data, tmp_path / "run", strategy=strategy, augment="light")
    assert isinstance(list(train(resume_config(str(run), str(data))))[-1], Finished)
    a, b = (load_checkpoint(str(tmp_path / name / "last.pt")) for name in ("whole", "run"))
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]


def test_more_epochs_for_a_finished_run_start_at_the_stretched_schedules_rate(data, tmp_path):
    """A finished cosine ends at rate 0, and the resumed run's first step used the rate the
    checkpoint's optimizer last had: with one step per epoch, the first new epoch did not move the
    weights at all. It now takes the stretched schedule's rate for that step."""
    import dataclasses
    import math

    from balancelab.engine.train.checkpoints import load_checkpoint
    from balancelab.engine.train.resume import checked_for_resume, saved_settings

    run = tmp_path / "run"
    settings = dict(data=str(data), out=str(run), model="tiny-2conv", epochs=2, image_size=16, batch_size=64)
    assert isinstance(list(train(TrainConfig(**settings)))[-1], Finished)
    before = load_checkpoint(str(run / "last.pt"))
    assert before["optimizer"]["param_groups"][0]["lr"] == 0.0  # where the 2-epoch cosine ended
    cfg = checked_for_resume(dataclasses.replace(saved_settings(str(run), finished_too=True), epochs=4))
    events = list(train(cfg))
    assert isinstance(events[-1], Finished)
    third = next(e.entry for e in events if isinstance(e, EpochEnd) and e.epoch == 3)
    assert third["lr"] == pytest.approx(0.001 * 0.5 * (1 + math.cos(math.pi * 3 / 4)))  # the 4-epoch cosine
    history = events[-1].result.metrics["history"]
    assert history[2]["val_loss"] != history[1]["val_loss"]  # the first new epoch moved the weights


def test_a_damaged_setting_in_config_json_is_named_with_its_file(data, tmp_path):
    """`resume` said only "image size must be a whole number (got '16')", for a setting the
    command has no option for."""
    from balancelab.engine.train.resume import checked_for_resume, saved_settings

    run = interrupted(data, tmp_path / "run")
    rewrite_config(run, image_size="16")
    with pytest.raises(ConfigError, match=r"config\.json is damaged: image size must be a whole number"):
        checked_for_resume(saved_settings(str(run)))


def test_a_disk_error_reading_last_pt_is_not_called_damage(data, tmp_path, monkeypatch):
    """An I/O error while reading last.pt said it was "truncated or corrupt" and to start a new
    run: the saved epochs were fine, and resuming again once the disk answers is the way on."""
    import errno

    from balancelab.engine.core.events import Failed
    from balancelab.engine.train import checkpoints

    run = interrupted(data, tmp_path / "run")
    cfg = resume_config(str(run), str(data))

    def eio(path):
        raise OSError(errno.EIO, os.strerror(errno.EIO), path)

    monkeypatch.setattr(checkpoints, "load_weights_only", eio)
    failed = list(train(cfg))[-1]
    assert isinstance(failed, Failed) and "cannot read checkpoint" in failed.message
    assert "corrupt" not in failed.message and f"`resume {run}`" in failed.message
    monkeypatch.undo()
    assert isinstance(list(train(cfg))[-1], Finished)


def test_a_run_from_before_deskewing_cannot_be_resumed_deskewed(data, tmp_path):
    """Its saved settings name no deskew: it trained without, and epochs 2-3 must not be deskewed
    under a config.json that then claims all of them were."""
    import dataclasses

    import torch

    run = interrupted(data, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    del config["deskew"]
    (run / "config.json").write_text(json.dumps(config))
    state = torch.load(run / "last.pt", weights_only=True)
    del state["deskew"], state["config"]["deskew"]
    torch.save(state, run / "last.pt")
    cfg = resume_config(str(run), str(data))
    assert cfg.deskew is False
    assert "deskew False, not True" in refused(dataclasses.replace(cfg, deskew=True))
    events = list(train(cfg))  # as it was trained: it goes on
    assert isinstance(events[-1], Finished)


def test_a_checkpoint_deskewed_otherwise_than_its_settings_say_is_refused(data, tmp_path):
    import dataclasses

    import torch

    run = interrupted(data, tmp_path / "run")
    state = torch.load(run / "last.pt", weights_only=True)
    state["deskew"] = True  # crafted or torn: the weights were trained on straightened images
    torch.save(state, run / "last.pt")
    assert "trained with deskewing" in refused(dataclasses.replace(resume_config(str(run), str(data))))
