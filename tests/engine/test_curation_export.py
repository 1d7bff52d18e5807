"""Strategy comparison, label-issue detection, exports and the HTML report."""
import csv
import warnings
import json
import os

import numpy as np
import pytest
from PIL import Image

from balancelab.engine.experiments.compare import compare, minority_recall
from balancelab.engine.train.config import TrainConfig
from balancelab.engine.core.events import Finished
from balancelab.engine.results.export import export_balanced_dataset, export_onnx, export_torchscript
from balancelab.engine.experiments.label_issues import find_label_issues
from balancelab.engine.experiments.label_ranking import rank_label_issues
from balancelab.engine.results.report import write_report
from balancelab.engine.train.run import train


@pytest.fixture(scope="module")
def trained_run(demo_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "run"
    cfg = TrainConfig(data=str(demo_root), out=str(out), model="mnist-classic", epochs=2, strategy="oversample")
    assert isinstance(list(train(cfg))[-1], Finished)
    return out


def test_compare_uses_identical_splits_and_writes_table(demo_root, tmp_path):
    events = list(compare(str(demo_root), ["none", "balanced-softmax"], [0, 1], str(tmp_path / "cmp"),
                          model="tiny-2conv", epochs=1))
    final = events[-1]
    assert isinstance(final, Finished)
    assert [(r["strategy"], r["seed"]) for r in final.result["rows"]] == [("none", 0), ("none", 1), ("balanced-softmax", 0), ("balanced-softmax", 1)]
    splits = [json.loads((tmp_path / "cmp" / d / "split.json").read_text())["val"] for d in os.listdir(tmp_path / "cmp") if (tmp_path / "cmp" / d).is_dir()]
    assert all(s == splits[0] for s in splits)
    data = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert {s["strategy"] for s in data["summary"]} == {"none", "balanced-softmax"}
    with open(tmp_path / "cmp" / "comparison.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 and "minority_recall_mean" in rows[0]


def test_minority_recall_is_the_rarest_class():
    m = {"train_counts": [100, 5, 5, 50], "per_class": [{"recall": r} for r in (1.0, 0.2, 0.4, 0.9)]}
    assert minority_recall(m) == pytest.approx(0.3)


def test_confident_learning_flags_off_diagonal_samples():
    labels = np.array([0, 0, 0, 1, 1, 1])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9], [0.2, 0.8], [0.1, 0.9], [0.3, 0.7]])
    s = rank_label_issues(labels, probs)
    assert s["order"][0] == 2 and s["flagged"][2] and s["suggested"][2] == 1
    assert not s["flagged"][0]


def test_flipped_labels_rank_at_the_top(tmp_path):
    """Flip the labels of 24 real digits; most of them must be among the 24 top-ranked images."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rng = np.random.default_rng(0)
    keep = np.concatenate([rng.permutation(np.flatnonzero(digits.target == c))[:60] for c in range(10)])
    flip = set(rng.choice(keep, 24, replace=False).tolist())
    root = tmp_path / "digits"
    flipped_paths = set()
    for i in keep:
        label = int(digits.target[i])
        if i in flip:
            label = (label + 1 + int(rng.integers(0, 9))) % 10
        folder = root / str(label)
        folder.mkdir(parents=True, exist_ok=True)
        arr = np.clip(digits.images[i] * 16, 0, 255).astype(np.uint8)
        Image.fromarray(arr, "L").resize((16, 16), Image.Resampling.BILINEAR).save(folder / f"{i}.png")
        if i in flip:
            flipped_paths.add(f"{label}/{i}.png")
    events = list(find_label_issues(str(root), str(tmp_path / "li"), folds=3, model="tiny-2conv", epochs=12,
                                    lr=5e-3, image_size=16, augment="none"))
    final = events[-1]
    assert isinstance(final, Finished), final
    top = {r["path"] for r in final.result["ranking"][:24]}
    precision = len(top & flipped_paths) / 24
    print(f"label-issue precision at 24: {precision:.2f}")
    assert precision >= 0.6


def test_torchscript_and_onnx_exports_agree_with_the_checkpoint(trained_run, demo_root, tmp_path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ts = export_torchscript(str(trained_run), str(tmp_path / "m.pt"), str(demo_root))
    assert not [w for w in caught if "torch.jit" in str(w.message)]  # torch's deprecation notice is not the user's
    assert ts["same_top1"] and ts["max_abs_prob_diff"] < 1e-5
    assert ts["metadata"]["classes"] == [str(i) for i in range(10)] and "center-crop" in ts["metadata"]["preprocessing"]
    onnx_info = export_onnx(str(trained_run), str(tmp_path / "m.onnx"), str(demo_root))
    assert onnx_info["same_top1"] and onnx_info["max_abs_prob_diff"] < 1e-4
    assert onnx_info["metadata"]["image_size"] == 28


def test_balanced_dataset_export_matches_the_sampler(trained_run, demo_root, tmp_path):
    events = list(export_balanced_dataset(str(trained_run), str(demo_root), str(tmp_path / "balanced")))
    info = events[-1].result
    assert [type(e).__name__ for e in events[:-1]] and all(type(e).__name__ == "Progress" for e in events[:-1])
    counts = set(info["class_counts"].values())
    assert len(counts) == 1  # oversample: every class raised to the majority count
    with open(tmp_path / "balanced" / "manifest.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    assert len(rows) == info["files"]
    src = demo_root / rows[0][1]
    assert (tmp_path / "balanced" / rows[0][0]).read_bytes() == src.read_bytes()
    assert info["warnings"] == []


def test_a_balanced_dataset_export_says_which_training_images_are_gone(trained_run, demo_root, tmp_path):
    """Images of the run moved away since were left out of the export without a word."""
    import json
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_root, data)
    gone = json.loads((trained_run / "split.json").read_text())["train"][0][0]
    (data / gone).unlink()
    info = list(export_balanced_dataset(str(trained_run), str(data), str(tmp_path / "balanced")))[-1].result
    assert "1 of the run's" in info["warnings"][0] and gone in info["warnings"][0]
    assert "the run was trained on" in info["warnings"][1] and len(info["warnings"]) == 2  # another folder, same names


def test_a_stopped_dataset_export_leaves_nothing(trained_run, demo_root, tmp_path, monkeypatch):
    """The export linked or copied every image with no progress and no stop (the window waited for it)."""
    from balancelab.engine.core.events import Finished, Progress, StopToken
    from balancelab.engine.results import export_dataset
    from balancelab.engine.results.export import export_steps

    monkeypatch.setattr(export_dataset, "PROGRESS_EVERY", 4)
    stop = StopToken()
    out = tmp_path / "balanced"
    events = export_steps("dataset", str(trained_run), str(out), str(demo_root), stop)
    seen = []
    for ev in events:
        seen.append(ev)
        if isinstance(ev, Progress) and ev.done >= 8:
            stop.request()
    assert isinstance(seen[-1], Finished) and seen[-1].result is None and seen[-1].stopped
    assert not out.exists()  # the folder it made, and every file in it, are gone


def test_exports_refuse_the_dataset_as_target_and_a_missing_dataset(trained_run, demo_root, tmp_path):
    from balancelab.engine.results.export import export_run
    from balancelab.engine.train.run_folder import RunError

    before = sorted(p.relative_to(demo_root) for p in demo_root.rglob("*"))
    with pytest.raises(RunError, match="inside the dataset"):
        export_run("dataset", str(trained_run), str(demo_root / "copy"), str(demo_root))
    with pytest.raises(RunError, match="does not exist"):
        export_run("torchscript", str(trained_run), str(tmp_path / "m.pt"), str(tmp_path / "nope"))
    assert sorted(p.relative_to(demo_root) for p in demo_root.rglob("*")) == before and not (tmp_path / "m.pt").exists()


def test_html_report_is_self_contained(trained_run, demo_root, tmp_path):
    report = write_report(str(trained_run), str(tmp_path / "report.html"), str(demo_root))
    text = open(report.path, encoding="utf-8").read()
    assert report.warnings == []
    assert "balanced accuracy" in text and "Confusion matrix" in text
    assert "data:image/png;base64," in text and "http" not in text.replace("https://", "").lower().split("<style>")[0]


def test_near_duplicates_and_leakage(tmp_path):
    from balancelab.engine.data.duplicates import find_duplicates
    from balancelab.engine.data.scanner import scan_sync

    rng = np.random.default_rng(3)
    # 16x16 detail: the 256-bit DCT hash needs content at 16 frequencies (an 8x8 picture scaled up
    # has none, and its upper hash bits are noise)
    base = (rng.random((16, 16)) * 255).astype(np.uint8)
    big = Image.fromarray(base, "L").resize((64, 64), Image.Resampling.BILINEAR)
    for split in ("train", "test"):
        for label in ("a", "b"):
            for i in range(4):
                noise = (rng.random((8, 8)) * 255).astype(np.uint8)
                p = tmp_path / split / label / f"{i}.png"
                p.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(noise, "L").resize((64, 64)).save(p)
    big.save(tmp_path / "train" / "a" / "orig.png")
    big.resize((48, 48)).save(tmp_path / "test" / "a" / "smaller.jpg", quality=90)  # re-encoded, resized
    big.save(tmp_path / "train" / "b" / "copy.png")  # exact copy with another label
    result = scan_sync(str(tmp_path))
    groups = [ev for ev in find_duplicates(result)][-1].result
    assert len(groups) == 1
    g = groups[0]
    assert g.paths == ["test/a/smaller.jpg", "train/a/orig.png", "train/b/copy.png"]
    assert g.kind == "near" and g.leaks and g.conflicting


def test_compare_never_writes_over_user_files_or_into_the_dataset(demo_root, tmp_path):
    from balancelab.engine.core.events import Failed
    from balancelab.engine.core.paths import new_run_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "comparison.json").write_text("MINE")
    inside = demo_root / "cmp-inside"
    for out, words in ((mine, "already holds files"), (demo_root, "inside the dataset"), (inside, "inside the dataset"),
                       (mine / "comparison.json", "not a folder")):
        events = list(compare(str(demo_root), ["none"], [0], str(out), model="tiny-2conv", epochs=1))
        assert len(events) == 1 and isinstance(events[0], Failed) and words in events[0].message, (out, events)
    assert (mine / "comparison.json").read_text() == "MINE" and not inside.exists()
    reserved = new_run_dir(str(demo_root), "compare")  # the app's fresh folder (only its marker) is accepted
    from balancelab.engine.experiments.compare import output_folder_problem
    assert output_folder_problem(str(reserved), str(demo_root)) is None
    assert output_folder_problem(str(tmp_path / "new"), str(demo_root)) is None
