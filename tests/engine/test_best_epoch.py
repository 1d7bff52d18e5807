"""Which epoch best.pt keeps: a later epoch wins what the validation split cannot tell apart."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from balancelab.engine.core.events import Finished
from balancelab.engine.core.metrics import HEADLINE
from balancelab.engine.train.checkpoints import CheckpointKeeper, load_checkpoint
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.run import train

STATE = {"model": {"w": torch.zeros(2)}, "model_name": "tiny-2conv", "classes": ["a", "b"], "in_channels": 1,
         "image_size": 16}


def kept(values, tolerance, metric="balanced_accuracy", patience=0, tmp=None):
    keeper = CheckpointKeeper(str(tmp), metric, patience, tolerance)
    flags = []
    for epoch, value in enumerate(values, start=1):
        flags.append(keeper.improves(value))
        keeper.step(epoch, value, lambda best: {**STATE, "epoch": epoch, "best_metric": best})
        if keeper.exhausted:
            break
    return keeper, flags


def test_a_later_epoch_within_one_image_of_the_best_is_kept(tmp_path):
    # long-tailed MNIST, seed 2: validation balanced accuracy per epoch of a 5-epoch cosine run,
    # 8 images of the rarest digit (one image: 1.25 points)
    history = [0.991, 0.9882, 0.9895, 0.9901, 0.9902]
    keeper, _ = kept(history, tolerance=1 / 80, tmp=tmp_path)
    assert keeper.best_epoch == 5 and keeper.peak == 0.991 and keeper.best_value == 0.9902
    assert load_checkpoint(str(tmp_path / "best.pt"))["epoch"] == 5
    strict, _ = kept(history, tolerance=0.0, tmp=tmp_path / "strict")
    assert strict.best_epoch == 1  # the old rule kept the under-trained first epoch


def test_the_kept_epoch_never_drifts_more_than_the_tolerance_below_the_peak(tmp_path):
    keeper, flags = kept([0.99, 0.98, 0.97, 0.975], tolerance=0.0125, tmp=tmp_path)
    assert flags == [True, True, False, False] and keeper.best_epoch == 2


def test_clearly_better_earlier_epochs_are_kept_and_early_stopping_waits_for_a_new_peak(tmp_path):
    keeper, _ = kept([0.95, 0.99, 0.96, 0.96], tolerance=0.01, tmp=tmp_path)
    assert keeper.best_epoch == 2
    stopped, flags = kept([0.90, 0.895, 0.89, 0.88], tolerance=0.02, patience=2, tmp=tmp_path / "es")
    assert flags == [True, True, True] and stopped.exhausted  # kept the 3rd, yet no new peak in 2 epochs


def test_validation_loss_ties_go_to_the_later_epoch(tmp_path):
    keeper, _ = kept([0.30, 0.20, 0.20, 0.25], tolerance=0.0, metric="val_loss", tmp=tmp_path)
    assert keeper.best_epoch == 3


def test_resume_recovers_the_peak_from_the_history(tmp_path):
    keeper = CheckpointKeeper(str(tmp_path), "balanced_accuracy", 0, 0.01)
    keeper.restore({"best_metric": 0.985, "history": [
        {"epoch": 1, "val_balanced_accuracy": 0.99, "is_best": True},
        {"epoch": 2, "val_balanced_accuracy": 0.985, "is_best": True},
        {"epoch": 3, "val_balanced_accuracy": True},  # crafted: not a number
        "not an entry"]})
    assert keeper.peak == 0.99 and keeper.best_epoch == 2
    assert keeper.improves(0.981) and not keeper.improves(0.979)


def test_resolution_is_one_image_of_the_smallest_class():
    counts = [900, 8, 0, 100]  # the empty class does not count
    assert HEADLINE["balanced_accuracy"].resolution(counts) == pytest.approx(1 / (3 * 8))
    assert HEADLINE["macro_f1"].resolution(counts) == pytest.approx(1 / 24)
    assert HEADLINE["accuracy"].resolution(counts) == pytest.approx(1 / 1008)
    assert HEADLINE["balanced_accuracy"].resolution([]) == 0.0


def test_a_run_records_the_tolerance_it_chose_with(demo_root, tmp_path):
    cfg = TrainConfig(data=str(demo_root), out=str(tmp_path / "run"), model="tiny-2conv", epochs=2, batch_size=64,
                      lr=3e-3, seed=0)
    last = list(train(cfg))[-1]
    assert isinstance(last, Finished), last
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    split = json.loads((tmp_path / "run" / "split.json").read_text())
    classes = metrics["classes"]
    counts = np.bincount([classes.index(label) for _, label in split["val"]], minlength=len(classes))
    assert metrics["selection_tolerance"] == pytest.approx(HEADLINE["balanced_accuracy"].resolution(counts))
    assert 0 < metrics["selection_tolerance"] < 0.1


def test_the_kept_epoch_is_explained_in_one_line():
    from balancelab.engine.train.checkpoints import selection_sentence

    history = [{"epoch": e + 1, "val_balanced_accuracy": v} for e, v in enumerate([0.991, 0.9882, 0.9902])]
    metrics = {"history": history, "best_epoch": 3, "select_metric": "balanced_accuracy", "selection_tolerance": 0.0125}
    line = selection_sentence(metrics)
    assert line.startswith("kept epoch 3 of 3: validation balanced accuracy 0.9902; epoch 1's 0.9910 is ahead")
    assert "(0.0125)" in line and "\n" not in line
    assert selection_sentence({**metrics, "best_epoch": 1}) == "kept epoch 1 of 3 (the best validation balanced accuracy, 0.9910)"
    loss = [{"epoch": 1, "val_loss": 0.3}, {"epoch": 2, "val_loss": 0.2}]
    assert selection_sentence({"history": loss, "best_epoch": 2, "select_metric": "val_loss"}).endswith("loss, 0.2000)")
    for damaged in ({}, {"history": "x", "best_epoch": 1}, {"history": history, "best_epoch": "3"},
                    {"history": [{"epoch": 1, "val_balanced_accuracy": "high"}], "best_epoch": 1}):
        assert "\n" not in selection_sentence(damaged)  # says less, never fails


def test_an_equal_earlier_epoch_is_not_called_ahead():
    from balancelab.engine.train.checkpoints import selection_sentence

    history = [{"epoch": 1, "val_balanced_accuracy": 0.99}, {"epoch": 2, "val_balanced_accuracy": 0.99}]
    line = selection_sentence({"history": history, "best_epoch": 2, "selection_tolerance": 0.01})
    assert line == "kept epoch 2 of 2 (the best validation balanced accuracy, 0.9900)"
