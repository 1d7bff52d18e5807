"""The weight average (--ema-decay): the formula, what the run keeps, and resume."""
from __future__ import annotations

import pytest
import torch

from balancelab.engine.core.events import Finished
from balancelab.engine.results.inference import evaluate_run
from balancelab.engine.train.checkpoints import load_checkpoint
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.train.ema import ModelEma
from balancelab.engine.train.run import train
from balancelab.engine.train.run_events import EpochEnd


def test_average_follows_the_warmed_up_decay():
    source = torch.nn.Linear(3, 2)
    ema = ModelEma(source, 0.9)
    start = source.weight.detach().clone()
    with torch.no_grad():
        source.weight.add_(1.0)
    ema.update()  # step 0: decay min(0.9, 1/10) = 0.1, so 90 % of the way to the new weights
    assert torch.allclose(ema.module.weight, start + 0.9, atol=1e-6)
    for _ in range(200):
        ema.update()
    assert ema.current_decay() == pytest.approx(0.9)
    assert torch.allclose(ema.module.weight, source.weight, atol=1e-6)
    assert not any(p.requires_grad for p in ema.module.parameters())
    with pytest.raises(ValueError):
        ModelEma(source, 1.0)


def quick(demo_root, out, **kw) -> TrainConfig:
    base = dict(data=str(demo_root), out=str(out), model="tiny-2conv", epochs=2, batch_size=64, lr=3e-3, seed=0,
                ema_decay=0.99)
    base.update(kw)
    return TrainConfig(**base)


def test_a_run_keeps_and_evaluates_the_average(demo_root, tmp_path):
    events = list(train(quick(demo_root, tmp_path / "run")))
    assert isinstance(events[-1], Finished), events[-1]
    best = load_checkpoint(str(tmp_path / "run" / "best.pt"))
    raw, averaged = best["train_model"], best["model"]
    assert best["ema_steps"] > 0 and set(raw) == set(averaged)
    assert any(not torch.equal(raw[k], averaged[k]) for k in raw)  # the average is not the last step
    # what the run reported is what evaluating best.pt ("model": the average) gives
    again = evaluate_run(str(tmp_path / "run"), str(demo_root))
    assert again["confusion_matrix"] == events[-1].result.metrics["confusion_matrix"]
    plain = list(train(quick(demo_root, tmp_path / "plain", ema_decay=0.0)))[-1]
    assert "train_model" not in load_checkpoint(str(tmp_path / "plain" / "best.pt"))
    assert plain.result.metrics["history"][0]["train_loss"] == events[-1].result.metrics["history"][0]["train_loss"]


def test_resume_continues_both_the_weights_and_their_average(demo_root, tmp_path):
    list(train(quick(demo_root, tmp_path / "run", epochs=1)))
    first = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    events = list(train(quick(demo_root, tmp_path / "run", epochs=2, resume=True)))
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [2]
    second = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert second["ema_steps"] == 2 * first["ema_steps"]  # the average went on from the saved one


def test_ema_decay_is_judged_with_the_other_settings(demo_root, tmp_path):
    for bad in (1.0, -0.1, "0.9", float("nan")):
        with pytest.raises(ValueError, match="EMA decay"):
            quick(demo_root, tmp_path / "x", ema_decay=bad).validate()
