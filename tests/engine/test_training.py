import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from balancelab.engine.train.checkpoints import CheckpointError, load_checkpoint
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.core.events import Failed, Finished, StopToken
from balancelab.engine.results.inference import evaluate_run, load_run_model, rescore
from balancelab.engine.train.models import MODELS, ModelError, build_model
from balancelab.engine.train.run_folder import read_predictions
from balancelab.engine.train.run_events import BatchProgress, EpochEnd, TrainStarted
from balancelab.engine.train.run import train
from tests.hostile import write_png

ROOT = Path(__file__).resolve().parents[2]


def run(cfg: TrainConfig, stop=None):
    events = list(train(cfg, stop))
    return events, events[-1]


def quick(demo_root, out, **kw) -> TrainConfig:
    base = dict(data=str(demo_root), out=str(out), model="tiny-2conv", epochs=1, batch_size=64, lr=3e-3, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_a_complete_run_folder(demo_root, tmp_path):
    events, last = run(quick(demo_root, tmp_path / "run", epochs=2))
    assert isinstance(last, Finished), last
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert started.device == "cpu" and started.n_test == 300
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [1, 2]
    run_dir = tmp_path / "run"
    for name in ("config.json", "metrics.json", "history.csv", "best.pt", "last.pt", "predictions.csv", "split.json"):
        assert (run_dir / name).exists(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "geometric_mean", "classes", "per_class", "confusion_matrix", "history"):
        assert key in metrics
    assert metrics["evaluated_on"] == "test"
    assert np.array(metrics["confusion_matrix"]).sum() == 300
    assert set(metrics["history"][0]) >= {"epoch", "train_loss", "val_loss", "val_balanced_accuracy", "seconds", "images_per_second"}
    assert [c["name"] for c in metrics["per_class"]] == [str(i) for i in range(10)]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["seed"] == 0 and config["model"] == "tiny-2conv"
    # validation came from train (no val/ folder), never from test
    split = json.loads((run_dir / "split.json").read_text())
    assert split["val_source"] == "train"
    assert not {p for p, _ in split["val"]} & {p for p, _ in split["test"]}
    assert all(p.startswith("train/") for p, _ in split["val"])


def test_run_reloads_and_evaluates_to_the_same_metrics(demo_root, tmp_path):
    _, last = run(quick(demo_root, tmp_path / "run", epochs=2))
    again = evaluate_run(str(tmp_path / "run"), str(demo_root))
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "geometric_mean"):
        assert again[key] == pytest.approx(last.result.metrics[key], abs=1e-9)
    assert again["confusion_matrix"] == last.result.metrics["confusion_matrix"]
    # post-hoc logit adjustment from stored predictions matches re-evaluation with tau
    paths, classes, y_true, _, probs = read_predictions(str(tmp_path / "run"))
    state = load_checkpoint(str(tmp_path / "run" / "best.pt"))
    fast = rescore(probs, y_true, classes, state["log_prior"], 1.0)
    slow = evaluate_run(str(tmp_path / "run"), str(demo_root), posthoc_tau=1.0)
    assert fast["confusion_matrix"] == slow["confusion_matrix"]


def test_same_seed_same_result(demo_root, tmp_path):
    _, a = run(quick(demo_root, tmp_path / "a"))
    _, b = run(quick(demo_root, tmp_path / "b"))
    assert a.result.metrics["confusion_matrix"] == b.result.metrics["confusion_matrix"]


def test_stop_during_a_forward_pass_skips_that_update(demo_root, tmp_path, monkeypatch):
    import balancelab.engine.train.run as training

    stop, calls = StopToken(), [0]
    real_build = training.build_model

    def build_with_hook(*args, **kwargs):
        model = real_build(*args, **kwargs)

        def forward_hook(module, inputs, output):
            if module.training:
                calls[0] += 1
                if calls[0] == 3:  # the user presses Stop while the third batch is in the model
                    stop.request()

        model.register_forward_hook(forward_hook)
        return model

    monkeypatch.setattr(training, "build_model", build_with_hook)
    events = list(train(quick(demo_root, tmp_path / "run", epochs=2, batch_size=16), stop))
    assert [ev.batch for ev in events if isinstance(ev, BatchProgress)] == [1, 2]  # batch 3 never stepped
    assert isinstance(events[-1], Finished) and events[-1].stopped


def test_stop_request_ends_training_within_one_batch(demo_root, tmp_path):
    stop = StopToken()
    batches_after_stop = 0
    events = []
    for ev in train(quick(demo_root, tmp_path / "run", epochs=3, batch_size=16), stop):
        events.append(ev)
        if isinstance(ev, BatchProgress):
            if stop.requested:
                batches_after_stop += 1
            elif ev.epoch == 2 and ev.batch == 3:
                stop.request()
    assert batches_after_stop == 0
    last = events[-1]
    assert isinstance(last, Finished) and last.stopped
    assert last.result.completed_epochs == 1
    assert (tmp_path / "run" / "best.pt").exists()  # the best checkpoint is kept


def _every_strategy() -> list[str]:
    from balancelab.engine.train.strategies import COMPONENTS

    return ["none", *COMPONENTS, "mixup+balanced-softmax", "balanced-sampler+focal", "oversample+minority-augment+crt"]


@pytest.mark.parametrize("strategy", _every_strategy())
def test_every_strategy_trains_as_its_registry_entry_says(demo_root, tmp_path, strategy):
    """Every registered component, read from the registry (a new one is tested without an edit here)."""
    from balancelab.engine.train.run_events import MemberStep
    from balancelab.engine.train.strategies import expected_epoch_counts, parse_strategy

    plan = parse_strategy(strategy)
    events, last = run(quick(demo_root, tmp_path / "run", epochs=2, strategy=strategy, drw_epoch=1,
                             bagging_members=2, retrain_epochs=2))
    assert isinstance(last, Finished), last
    m = last.result.metrics
    assert m["strategy"] == plan.name
    if plan.on("ensemble"):  # balanced bagging: k members, each trained like a run, then averaged
        assert len(m["ensemble"]["members"]) == 2 and any(isinstance(e, MemberStep) for e in events)
        return
    started = next(e for e in events if isinstance(e, TrainStarted))
    expected = expected_epoch_counts(plan, np.array(started.train_counts))
    if plan.sampler in (None, "oversample", "undersample"):  # deterministic draws: exactly what an epoch holds
        assert np.allclose(started.effective_counts, expected), (started.effective_counts, expected)
    else:
        assert np.isclose(sum(started.effective_counts), sum(expected))
    assert ("retrain" in m) == bool(plan.retrain)


def test_resume_continues_from_last_checkpoint(demo_root, tmp_path):
    run(quick(demo_root, tmp_path / "run", epochs=1))
    events, last = run(quick(demo_root, tmp_path / "run", epochs=3, resume=True))
    assert [e.epoch for e in events if isinstance(e, EpochEnd)] == [2, 3]
    assert [h["epoch"] for h in last.result.metrics["history"]] == [1, 2, 3]


@pytest.mark.parametrize("change, message", [
    ({"model": "resnet9000"}, "unknown model"),
    ({"epochs": 0}, "epochs must be at least 1"),
    ({"strategy": "magic"}, "unknown strategy"),
    ({"model": "resnet18", "pretrained": "/no/such/weights.pth"}, "not found"),
    ({"lr": -1}, "learning rate"),
])
def test_bad_configs_fail_clearly(demo_root, tmp_path, change, message):
    _, last = run(quick(demo_root, tmp_path / "run", **change))
    assert isinstance(last, Failed) and message in last.message


def test_single_class_dataset_fails_clearly(tmp_path):
    for i in range(5):
        write_png(tmp_path / "data" / "only" / f"{i}.png", seed=i)
    _, last = run(quick(tmp_path / "data", tmp_path / "run"))
    assert isinstance(last, Failed) and "at least 2 classes" in last.message


def test_pretrained_weights_load_from_a_local_file(tmp_path):
    import torchvision

    reference = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)
    model = build_model("resnet18", 4, 1, 32, pretrained=str(path))
    assert torch.equal(model.backbone.conv1.weight, reference.conv1.weight)
    assert model.backbone.fc.out_features == 4
    out = model(torch.rand(2, 1, 32, 32))
    assert out.shape == (2, 4)
    wrong = tmp_path / "mobilenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), wrong)
    with pytest.raises(ModelError, match="do not fit resnet18"):
        build_model("resnet18", 4, 1, 32, pretrained=str(wrong))
    with pytest.raises(ModelError, match="not in the torch cache"):
        os.environ["TORCH_HOME"] = str(tmp_path / "empty-torch-home")
        try:
            build_model("resnet18", 4, 3, 32, pretrained="imagenet")
        finally:
            del os.environ["TORCH_HOME"]


def test_head_only_finetune_freezes_the_backbone(demo_root, tmp_path):
    import torchvision

    path = tmp_path / "m.pth"
    torch.save(torchvision.models.mobilenet_v3_small(weights=None).state_dict(), path)
    _, last = run(quick(demo_root, tmp_path / "run", model="mobilenet_v3_small", image_size=32,
                        pretrained=str(path), finetune="head"))
    assert isinstance(last, Finished), last
    state = load_checkpoint(str(tmp_path / "run" / "best.pt"))
    original = torch.load(path, weights_only=True)
    assert torch.equal(state["model"]["backbone.features.0.0.weight"], original["features.0.0.weight"])


def test_every_model_builds_and_runs_forward():
    for name, spec in MODELS.items():
        size = max(spec.min_size, 32) if spec.torchvision else spec.default_size
        model = build_model(name, 3, 3, size)
        model.eval()
        with torch.inference_mode():
            assert model(torch.rand(1, 3, size, size)).shape == (1, 3), name


def test_damaged_checkpoints_give_clear_errors(demo_root, tmp_path):
    run(quick(demo_root, tmp_path / "run"))
    best = tmp_path / "run" / "best.pt"
    data = best.read_bytes()
    best.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_run_model(str(tmp_path / "run"))
    best.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_run_model(str(tmp_path / "run"))

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    import pickle

    best.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(CheckpointError):
        load_run_model(str(tmp_path / "run"))
    assert not (tmp_path / "pwned").exists()


def cli(*args):
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], capture_output=True, text=True, cwd=ROOT)


def test_cli_train_evaluate_predict(demo_root, tmp_path):
    out = tmp_path / "run"
    proc = cli("train", "--data", str(demo_root), "--model", "tiny-2conv", "--strategy", "balanced-softmax",
               "--epochs", "1", "--out", str(out), "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    proc = cli("evaluate", "--run", str(out), "--data", str(demo_root), "--json")
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])
    image = next((demo_root / "test" / "7").glob("*.png"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png")
    proc = cli("predict", "--run", str(out), str(image), str(bad), "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result[0]["path"] == str(image) and len(result[0]["top"]) == 3
    assert sum(t["probability"] for t in result[0]["top"]) <= 1.0 + 1e-6
    assert "error" in result[1]
    proc = cli("evaluate", "--run", str(tmp_path / "nope"), "--data", str(demo_root), "--json")
    assert proc.returncode == 2 and "does not exist" in proc.stderr
    assert "mnist-classic" in cli("models").stdout
    assert "balanced-softmax" in cli("strategies").stdout


def test_holdout_is_stratified_seeded_and_keeps_duplicates_together():
    from balancelab.engine.data.splits import SampleList, stratified_holdout

    labels = np.repeat(np.arange(3), [100, 40, 5])
    digests = [f"d{i}" for i in range(len(labels))]
    digests[1] = digests[0] = "same"  # two identical images of class 0
    samples = SampleList([str(i) for i in range(len(labels))], labels)
    tr, va = stratified_holdout(samples, digests, 0.2, seed=1)
    assert sorted(np.concatenate([tr, va]).tolist()) == list(range(len(labels)))
    assert np.bincount(labels[va], minlength=3).tolist() == [20, 8, 1]
    assert (0 in va) == (1 in va)
    tr2, va2 = stratified_holdout(samples, digests, 0.2, seed=1)
    assert np.array_equal(va, va2)


def test_distributed_two_processes_match_single_process(demo_root, tmp_path):
    """torchrun with 2 CPU processes (gloo) reproduces the single-process run of the same seed."""
    common = ["main.py", "train", "--data", str(demo_root), "--model", "tiny-2conv", "--augment", "none",
              "--epochs", "2", "--batch-size", "32", "--seed", "5"]
    single = subprocess.run([sys.executable, *common, "--out", str(tmp_path / "one")], cwd=ROOT, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          *common, "--out", str(tmp_path / "two")], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    a = json.loads((tmp_path / "one" / "metrics.json").read_text())
    b = json.loads((tmp_path / "two" / "metrics.json").read_text())
    assert b["world_size"] == 2 and a["world_size"] == 1
    for ha, hb in zip(a["history"], b["history"]):
        assert hb["train_loss"] == pytest.approx(ha["train_loss"], rel=1e-3)
        assert hb["val_loss"] == pytest.approx(ha["val_loss"], rel=1e-3)
    assert b["accuracy"] == pytest.approx(a["accuracy"], abs=0.01)
    assert not (tmp_path / "two" / "metrics.json.tmp").exists()


def test_runs_started_in_the_same_second_get_their_own_folders(tmp_path, monkeypatch):
    import time as time_module

    from balancelab.engine.core.paths import new_run_dir, runs_dir_for

    monkeypatch.setattr(time_module, "strftime", lambda fmt, *a: "20260101-120000")  # frozen clock
    folders = [new_run_dir(str(tmp_path / "data"), "tiny-2conv-none+focal/x") for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.is_dir() and f.parent == runs_dir_for(str(tmp_path / "data")) for f in folders)
    assert [f.name for f in folders] == ["20260101-120000-tiny-2conv-none+focal_x", "20260101-120000-tiny-2conv-none+focal_x-2",
                                         "20260101-120000-tiny-2conv-none+focal_x-3"]


def test_an_empty_class_folder_is_not_trained_and_says_so(demo_root, tmp_path):
    import shutil

    from balancelab.engine.data.scanner import scan_sync
    from balancelab.engine.data.splits import make_splits

    data = tmp_path / "data"
    shutil.copytree(demo_root, data)
    (data / "train" / "empty").mkdir()
    (data / "train" / "lonely").mkdir()
    shutil.copy(next((data / "train" / "0").iterdir()), data / "train" / "lonely" / "one.png")
    splits = make_splits(scan_sync(str(data)), 0.15, 0)
    assert "empty" not in splits.classes and "lonely" not in splits.classes and len(splits.classes) == 10
    assert splits.excluded == {"empty": "no training images", "lonely": splits.excluded["lonely"]}
    assert "only 1 training image" in splits.excluded["lonely"]
    assert splits.to_dict()["excluded_classes"] == splits.excluded
    events = list(train(TrainConfig(data=str(data), out=str(tmp_path / "run"), model="tiny-2conv", epochs=1,
                                    image_size=16, device="cpu")))
    started = next(e for e in events if isinstance(e, TrainStarted))
    assert set(started.excluded_classes) == {"empty", "lonely"} and len(started.classes) == 10
    metrics = events[-1].result.metrics
    assert set(metrics["excluded_classes"]) == {"empty", "lonely"} and len(metrics["per_class"]) == 10
