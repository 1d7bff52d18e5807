"""Decoupled classifier re-training (cRT) inside a run, and tau-normalisation of the classifier."""
import json

import numpy as np
import pytest
import torch

from balancelab.engine.core.events import Failed, Finished, Progress, StopToken
from balancelab.engine.results.inference import evaluate_run, predict_paths
from balancelab.engine.train.checkpoints import load_checkpoint
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.train.decoupled import apply_tau_norm, final_linear, tau_normalised
from balancelab.engine.train.models import ModelError, build_model
from balancelab.engine.train.run import train
from balancelab.engine.train.run_folder import RunError


def quick(demo_root, out, **kw) -> TrainConfig:
    base = dict(data=str(demo_root), out=str(out), model="tiny-2conv", epochs=1, batch_size=64, lr=3e-3, seed=0,
                device="cpu", retrain_epochs=3)
    base.update(kw)
    return TrainConfig(**base)


def finish(cfg, stop=None):
    events = list(train(cfg, stop))
    assert isinstance(events[-1], Finished), events[-1]
    return events, events[-1].result


@pytest.fixture(scope="module")
def plain_and_crt(demo_root, tmp_path_factory):
    """The same seeded training twice, the second followed by cRT with SMOTE features."""
    base = tmp_path_factory.mktemp("crt")
    _, plain = finish(quick(demo_root, base / "plain", strategy="oversample"))
    events, crt = finish(quick(demo_root, base / "crt", strategy="oversample+crt-smote"))
    return base, plain, crt, events


def test_crt_changes_only_the_classifier_layer(plain_and_crt):
    base, _, _, _ = plain_and_crt
    before = load_checkpoint(str(base / "plain" / "best.pt"))["model"]
    after = load_checkpoint(str(base / "crt" / "best.pt"))["model"]
    assert before.keys() == after.keys()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"backbone.classifier.1.weight", "backbone.classifier.1.bias"}  # tiny-2conv's last layer


def test_crt_is_a_phase_of_the_run_and_its_summary_is_kept(plain_and_crt, demo_root):
    base, _, crt, events = plain_and_crt
    phases = [e.phase for e in events if isinstance(e, Progress)]
    assert phases.index("classifier features") < phases.index("re-training the classifier") < phases.index("final evaluation")
    summary = crt.metrics["retrain"]
    assert summary["strategy"] == "crt-smote" and summary["synthetic_features"] > 0
    assert len(set(summary["features_per_class"])) == 1  # SMOTE balanced every class
    on_disk = json.loads((base / "crt" / "metrics.json").read_text())
    assert on_disk["retrain"]["val_balanced_accuracy"] == summary["val_balanced_accuracy"]
    assert load_checkpoint(str(base / "crt" / "best.pt"))["retrain"]["strategy"] == "crt-smote"
    # the stored predictions and a reload of best.pt agree: the re-trained layer is the run's model
    again = evaluate_run(str(base / "crt"), str(demo_root))
    assert again["confusion_matrix"] == crt.metrics["confusion_matrix"]


def test_stopping_during_re_training_keeps_the_trained_classifier(demo_root, tmp_path):
    stop = StopToken()
    events = []
    for ev in train(quick(demo_root, tmp_path / "stopped", strategy="crt"), stop):
        events.append(ev)
        if isinstance(ev, Progress) and ev.phase == "re-training the classifier":
            stop.request()
    last = events[-1]
    assert isinstance(last, Finished) and last.stopped and "retrain" not in last.result.metrics
    finish(quick(demo_root, tmp_path / "plain", strategy="none"))
    a = load_checkpoint(str(tmp_path / "stopped" / "best.pt"))
    b = load_checkpoint(str(tmp_path / "plain" / "best.pt"))
    assert "retrain" not in a and all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])


def test_tau_zero_is_the_original_model_and_tau_one_gives_unit_norms():
    w = torch.randn(5, 7) * torch.arange(1, 6).view(5, 1)
    assert torch.equal(tau_normalised(w, 0.0), w)
    assert torch.allclose(tau_normalised(w, 1.0).norm(dim=1), torch.ones(5))
    model = build_model("mnist-classic", 5, 1, 28).eval()
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        original = model(x)
        assert torch.equal(apply_tau_norm(model, "mnist-classic", 0.0)(x), original)
        apply_tau_norm(model, "mnist-classic", 1.0)
        assert torch.allclose(final_linear(model, "mnist-classic").weight.norm(dim=1), torch.ones(5))


def test_tau_norm_on_a_finished_run(plain_and_crt, demo_root):
    base, plain, _, _ = plain_and_crt
    run = str(base / "plain")
    assert evaluate_run(run, str(demo_root), tau_norm=0.0)["confusion_matrix"] == plain.metrics["confusion_matrix"]
    normed = evaluate_run(run, str(demo_root), tau_norm=1.0)
    assert normed["tau_norm"] == 1.0 and np.array(normed["confusion_matrix"]).sum() == 300
    image = str(demo_root / "test" / "3" / sorted(p.name for p in (demo_root / "test" / "3").iterdir())[0])
    top0 = predict_paths(run, [image], tau_norm=0.0)[0]["top"]
    assert top0 == predict_paths(run, [image])[0]["top"]


def test_a_model_without_a_linear_classifier_is_refused_before_training(demo_root, tmp_path):
    model = build_model("squeezenet1_0", 3, 3, 64)
    with pytest.raises(ModelError, match="linear layer"):
        final_linear(model, "squeezenet1_0")
    for bad, message in (({"retrain_epochs": 0}, "re-training epochs"), ({"retrain_lr": -1.0}, "re-training learning"),
                         ({"remix_kappa": 0.5}, "Remix kappa"), ({"remix_tau": 2.0}, "Remix tau")):
        with pytest.raises(ConfigError, match=message):
            quick(demo_root, tmp_path / "bad", **bad).validate()
    events = list(train(quick(demo_root, tmp_path / "sq", model="squeezenet1_0", image_size=32, strategy="crt")))
    assert isinstance(events[-1], Failed) and "linear layer" in events[-1].message
    assert not any(type(e).__name__ == "EpochEnd" for e in events)


def test_tau_norm_of_a_model_without_a_linear_classifier_is_one_line(monkeypatch, plain_and_crt, demo_root):
    import balancelab.engine.results.inference as inference

    def refuse(*_a, **_k):
        raise ModelError("squeezenet1_0 does not classify with a linear layer")
    monkeypatch.setattr(inference, "apply_tau_norm", refuse)
    with pytest.raises(RunError, match="linear layer"):
        evaluate_run(str(plain_and_crt[0] / "plain"), str(demo_root), tau_norm=1.0)


def test_the_tau_norm_scorer_matches_re_evaluation_and_tau_zero_is_the_run(plain_and_crt, demo_root):
    from balancelab.engine.results.inference import tau_norm_scorer

    base, plain, _, _ = plain_and_crt
    run = str(base / "plain")
    events = list(tau_norm_scorer(run, str(demo_root)))
    assert isinstance(events[-1], Finished)
    scorer = events[-1].result
    assert scorer.metrics(0.0)["confusion_matrix"] == plain.metrics["confusion_matrix"]
    assert scorer.metrics(1.0)["confusion_matrix"] == evaluate_run(run, str(demo_root), tau_norm=1.0)["confusion_matrix"]
    stop = StopToken()
    stop.request()
    last = list(tau_norm_scorer(run, str(demo_root), stop=stop))[-1]
    assert isinstance(last, Finished) and last.stopped and last.result is None
