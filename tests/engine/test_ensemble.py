"""Ensembles: of finished runs (probability averaging, weights, member checks, damaged member
references, export as one model) and balanced bagging (balanced member draws, events, stop)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from balancelab.engine.core.events import Failed, Finished, StopToken
from balancelab.engine.results.ensemble import build_ensemble
from balancelab.engine.results.export import export_run
from balancelab.engine.results.inference import load_run_model, predict_arrays
from balancelab.engine.results.loaded_run import load_run
from balancelab.engine.train.bagging import member_cap, member_indices
from balancelab.engine.train.config import ConfigError, TrainConfig
from balancelab.engine.train.run import train
from balancelab.engine.train.run_events import MemberStep
from balancelab.engine.train.run_folder import RunError, list_runs, read_ensemble, read_metrics, read_predictions
from tests.hostile import write_png


def make_data(root: Path, train_counts: dict, test: bool = True) -> Path:
    for c, n in train_counts.items():
        for i in range(n):
            write_png(root / "train" / c / f"{i}.png", value=40 * len(c), seed=hash(c) % 1000 + i)
            if test and i < 4:
                write_png(root / "test" / c / f"{i}.png", value=40 * len(c), seed=hash(c) % 1000 + 500 + i)
    return root


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("ens") / "data", {"a": 24, "bb": 12, "ccc": 6})


def cfg(data, out, **kw) -> TrainConfig:
    return TrainConfig(**{"data": str(data), "out": str(out), "model": "tiny-2conv", "epochs": 1, "image_size": 16,
                          "batch_size": 8, "seed": 0, "augment": "none", "device": "cpu", **kw})


def finish(events) -> Finished:
    events = list(events)
    assert isinstance(events[-1], Finished), events[-1]
    return events[-1]


@pytest.fixture(scope="module")
def runs(data, tmp_path_factory):
    base = tmp_path_factory.mktemp("runs")
    out = []
    for seed in (0, 1):
        finish(train(cfg(data, base / f"seed{seed}", seed=seed, epochs=2)))
        out.append(str(base / f"seed{seed}"))
    return out


def test_an_ensemble_of_one_run_equals_that_run(runs, tmp_path):
    result = finish(build_ensemble(runs[:1], str(tmp_path / "one"))).result
    member = read_metrics(runs[0])
    assert result.metrics["confusion_matrix"] == member["confusion_matrix"]
    assert result.metrics["balanced_accuracy"] == pytest.approx(member["balanced_accuracy"])
    np.testing.assert_allclose(read_predictions(result.run_dir)[4], read_predictions(runs[0])[4], atol=1e-6)
    x = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 1), dtype=np.uint8)
    np.testing.assert_allclose(predict_arrays(load_run_model(result.run_dir)[0], x),
                               predict_arrays(load_run_model(runs[0])[0], x), atol=1e-6)


def test_the_ensemble_is_a_run_listed_loaded_and_reviewed_like_any(runs, tmp_path):
    parent = tmp_path / "parent"
    finish(build_ensemble(runs, str(parent / "ens")))
    listed = list_runs(str(parent))
    assert [r["name"] for r in listed] == ["ens"]  # members inside are not runs of their own in the list
    loaded = load_run(listed[0])
    assert loaded.classes == ["a", "bb", "ccc"] and loaded.probs.shape == (12, 3)
    assert "ensemble of 2" in listed[0]["config"]["model"]


def test_weights_follow_validation_balanced_accuracy(runs, tmp_path):
    result = finish(build_ensemble(runs, str(tmp_path / "w"), weighted=True)).result
    scores = []
    for r in runs:
        m = read_metrics(r)
        scores.append(next(h["val_balanced_accuracy"] for h in m["history"] if h["epoch"] == m["best_epoch"]))
    want = np.array(scores) / sum(scores)
    got = [w for _, w in read_ensemble(result.run_dir)]
    np.testing.assert_allclose(got, want)
    p0, p1 = read_predictions(runs[0])[4], read_predictions(runs[1])[4]
    np.testing.assert_allclose(read_predictions(result.run_dir)[4], want[0] * p0 + want[1] * p1, atol=2e-6)
    equal = finish(build_ensemble(runs, str(tmp_path / "e"))).result
    np.testing.assert_allclose(read_predictions(equal.run_dir)[4], (p0 + p1) / 2, atol=2e-6)


def one_line_error(events) -> str:
    last = list(events)[-1]
    assert isinstance(last, Failed) and "\n" not in last.message
    return last.message


def test_members_that_differ_are_refused_before_anything_is_written(runs, data, tmp_path):
    other_size = tmp_path / "size"
    finish(train(cfg(data, other_size, image_size=20)))
    assert "image size" in one_line_error(build_ensemble([runs[0], str(other_size)], str(tmp_path / "x1")))
    other_classes = tmp_path / "classes"
    finish(train(cfg(make_data(tmp_path / "d2", {"a": 12, "zz": 12}), other_classes)))
    assert "classes" in one_line_error(build_ensemble([runs[0], str(other_classes)], str(tmp_path / "x2")))
    no_test = make_data(tmp_path / "d3", {"a": 24, "bb": 12, "ccc": 6}, test=False)
    held = []
    for seed in (0, 1):  # no test/ folder: each run is scored on its own validation hold-out
        finish(train(cfg(no_test, tmp_path / f"v{seed}", seed=seed)))
        held.append(str(tmp_path / f"v{seed}"))
    assert "test" in one_line_error(build_ensemble(held, str(tmp_path / "x3")))
    assert "twice" in one_line_error(build_ensemble([runs[0], runs[0]], str(tmp_path / "x4")))
    for name in ("x1", "x2", "x3", "x4"):
        assert not (tmp_path / name).exists()


@pytest.mark.parametrize("damage", ["../../elsewhere", "/etc", "members/../../x", "members", "members/missing",
                                    "weight", "link", "not-json"])
def test_a_damaged_member_reference_is_refused_in_one_line(runs, tmp_path, damage):
    ens = Path(finish(build_ensemble(runs, str(tmp_path / "ens"))).result.run_dir)
    spec = json.loads((ens / "ensemble.json").read_text())
    if damage == "weight":
        spec["members"][0]["weight"] = -1
    elif damage == "link":
        target = ens / "members" / spec["members"][0]["path"].split("/")[1]
        os.rename(target, tmp_path / "moved")
        os.symlink(tmp_path / "moved", target)
    elif damage != "not-json":
        spec["members"][0]["path"] = damage
    (ens / "ensemble.json").write_text("{" if damage == "not-json" else json.dumps(spec))
    with pytest.raises(RunError) as err:
        load_run_model(str(ens))
    assert "\n" not in str(err.value) and "ensemble.json" in str(err.value)
    # not listed as a run any more, but named among the runs that are not (the Results tab's note)
    from balancelab.engine.train.run_folder import list_incomplete_runs, list_runs

    assert all(r["dir"] != str(ens) for r in list_runs(str(ens.parent)))
    assert str(ens) in dict(list_incomplete_runs(str(ens.parent)))


@pytest.mark.parametrize("kind", ["torchscript", "onnx"])
def test_export_of_an_ensemble_reloads_and_matches_the_averaged_predictions(runs, data, tmp_path, kind):
    ens = finish(build_ensemble(runs, str(tmp_path / "ens"), weighted=True)).result.run_dir
    info = export_run(kind, ens, str(tmp_path / "ens.model"), str(data))
    assert info["max_abs_prob_diff"] < 1e-5 and info["same_top1"]
    assert info["metadata"]["classes"] == ["a", "bb", "ccc"] and "ensemble of 2" in info["metadata"]["model"]
    x = np.random.default_rng(1).integers(0, 256, (4, 16, 16, 1), dtype=np.uint8)
    images = x.transpose(0, 3, 1, 2).astype(np.float32) / 255
    if kind == "torchscript":
        import torch

        logits = torch.jit.load(str(tmp_path / "ens.model"))(torch.from_numpy(images)).detach().numpy()
    else:
        import onnxruntime as ort

        session = ort.InferenceSession(str(tmp_path / "ens.model"), providers=["CPUExecutionProvider"])
        logits = session.run(None, {session.get_inputs()[0].name: images})[0]
    got = np.exp(logits - logits.max(1, keepdims=True))
    got /= got.sum(1, keepdims=True)
    weights = [w for _, w in read_ensemble(ens)]  # one model file that averages the members, with their weights
    want = sum(w * predict_arrays(load_run_model(r)[0], x) for w, r in zip(weights, runs))
    np.testing.assert_allclose(got, want, atol=1e-5)


# --- balanced bagging -----------------------------------------------------------------------------

def test_bagging_members_see_balanced_draws_with_every_minority_image():
    labels = np.repeat(np.arange(4), [1000, 300, 80, 50])
    assert member_cap(np.bincount(labels), 4, 0.0) == 250
    draws = [member_indices(labels, 4, 0.0, 7, m) for m in range(4)]
    for idx in draws:
        assert np.bincount(labels[idx], minlength=4).tolist() == [250, 250, 80, 50]
        assert set(np.flatnonzero(labels >= 2)) <= set(idx)  # classes under the cap: every image, every member
    big = [set(idx[labels[idx] == 0]) for idx in draws]
    assert all(not (big[i] & big[j]) for i in range(4) for j in range(i))  # fraction 1/k: disjoint slices
    assert set().union(*big) == set(np.flatnonzero(labels == 0))  # ... that together cover the class
    assert not np.array_equal(draws[0], draws[1])
    assert np.bincount(labels[member_indices(labels, 2, 1.0, 0, 1)]).tolist() == [1000, 300, 80, 50]
    strict = member_indices(labels, 3, 1e-9, 0, 0)  # pure EasyEnsemble: every class cut to the rarest
    assert np.bincount(labels[strict]).tolist() == [50, 50, 50, 50]


def test_bagging_trains_k_members_into_one_ensemble_run(data, tmp_path):
    events = list(train(cfg(data, tmp_path / "bag", strategy="oversample+balanced-bagging", bagging_members=2)))
    assert isinstance(events[-1], Finished) and events[-1].result.metrics, events[-1]
    steps = [e for e in events if isinstance(e, MemberStep)]
    assert {e.index for e in steps} == {0, 1} and all(e.total == 2 for e in steps)
    assert sum(isinstance(e.event, Finished) for e in steps) == 2
    members = read_ensemble(str(tmp_path / "bag"))
    assert [os.path.basename(m) for m, _ in members] == ["member-1", "member-2"]
    for folder, _ in members:
        split = json.loads(Path(folder, "split.json").read_text())
        counts = {c: sum(1 for _, k in split["train"] if k == c) for c in ("a", "bb", "ccc")}
        assert counts["a"] == counts["bb"] >= counts["ccc"]  # capped majority, minority whole
        assert read_metrics(folder)["strategy"] == "oversample"
    assert "balanced-bagging" in read_metrics(str(tmp_path / "bag"))["strategy"]
    assert load_run(list_runs(str(tmp_path))[0]).probs.shape[0] == 12


def test_bagging_stops_on_request_and_refuses_resume(data, tmp_path):
    stop = StopToken()
    last = None
    for ev in train(cfg(data, tmp_path / "bag", strategy="balanced-bagging", bagging_members=3), stop):
        if isinstance(ev, MemberStep):
            stop.request()
        last = ev
    assert isinstance(last, Finished) and last.stopped and not last.result.metrics
    assert not (tmp_path / "bag" / "members" / "member-2").exists()
    last = list(train(cfg(data, tmp_path / "bag2", strategy="balanced-bagging", resume=True)))[-1]
    assert isinstance(last, Failed) and "resumed" in last.message
    with pytest.raises(ConfigError):
        cfg(data, tmp_path / "b3", strategy="balanced-bagging", bagging_members=0).validate()
