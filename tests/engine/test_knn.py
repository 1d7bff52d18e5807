"""The kNN baseline: right on a separable dataset, k chosen on validation (not test), on pixels or
on a run's features, and a row of `compare` (JSON, CSV and the CLI table) with the same metrics."""
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.core.metrics import HEADLINE
from balancelab.engine.experiments.compare import compare
from balancelab.engine.experiments.knn_baseline import BASELINES, KnnError, _refuse_leak, knn_baseline
from balancelab.engine.data.splits import SampleList

PATTERNS = {"left": (slice(None), slice(0, 8)), "right": (slice(None), slice(8, 16)), "top": (slice(0, 8), slice(None))}


def _digit(kind: str, rng) -> np.ndarray:
    arr = rng.integers(0, 40, (16, 16)).astype(np.uint8)
    arr[PATTERNS[kind]] += 180
    return arr


def write_separable(root: Path, counts: dict[str, int], mislabeled: int = 0, seed: int = 0) -> Path:
    """Classes left/right/top (a bright half), 16 px noise; ``mislabeled`` training images per class
    drawn from the next class's pattern (what a 1-nearest-neighbour rule trips over)."""
    rng = np.random.default_rng(seed)
    kinds = list(PATTERNS)
    for split, scale in (("train", 1.0), ("val", 0.5), ("test", 0.5)):
        for c, kind in enumerate(kinds):
            n = max(2, int(counts[kind] * scale))
            for i in range(n):
                shown = kinds[(c + 1) % len(kinds)] if split == "train" and i < mislabeled else kind
                path = root / split / kind / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(_digit(shown, rng), "L").save(path)
    return root


def finish(events) -> object:
    events = list(events)
    assert isinstance(events[-1], (Finished, Failed))
    return events[-1]


def test_registry_has_knn():
    assert "knn" in BASELINES and BASELINES["knn"].run is knn_baseline


def test_knn_on_pixels_is_right_on_a_separable_dataset(tmp_path):
    root = write_separable(tmp_path / "data", {"left": 30, "right": 30, "top": 10})
    last = finish(knn_baseline(str(root), ks=(1, 3)))
    assert isinstance(last, Finished), last
    r = last.result
    assert r["evaluated_on"] == "test" and r["n_evaluated"] == 15 + 15 + 5
    assert r["accuracy"] == 1.0 and r["balanced_accuracy"] == 1.0
    assert r["features"] == "pixels" and r["k"] in (1, 3) and set(r["val_scores"]) == {"1", "3"}
    assert r["train_counts"] == [30, 30, 10]  # classes in folder order: left, right, top
    assert set(HEADLINE) <= set(r)


def test_k_is_chosen_on_validation(tmp_path):
    """Every class's training images include mislabeled look-alikes of the next class: one
    neighbour follows them, five outvote them; validation (clean) must pick k=5."""
    root = write_separable(tmp_path / "data", {"left": 24, "right": 24, "top": 24}, mislabeled=4)
    last = finish(knn_baseline(str(root), ks=(1, 5)))
    assert isinstance(last, Finished), last
    scores = last.result["val_scores"]
    assert scores["5"] > scores["1"] and last.result["k"] == 5
    assert last.result["accuracy"] == 1.0


def test_knn_on_a_runs_features_uses_the_runs_split(tmp_path):
    from balancelab.engine.train.config import TrainConfig
    from balancelab.engine.train.run import train

    root = write_separable(tmp_path / "data", {"left": 20, "right": 20, "top": 20})
    run = tmp_path / "run"
    done = finish(train(TrainConfig(data=str(root), out=str(run), model="tiny-2conv", epochs=1, batch_size=16,
                                    augment="none", device="cpu")))
    assert isinstance(done, Finished), done
    last = finish(knn_baseline(str(root), features_from=str(run), ks=(1, 3)))
    assert isinstance(last, Finished), last
    assert last.result["features"] == "run features" and last.result["balanced_accuracy"] >= 0.9


def test_a_run_that_trained_on_the_evaluated_images_is_refused():
    run_split = {"train": [["train/a/1.png", "a"], ["test/a/9.png", "a"]]}
    lists = {"val": SampleList(["train/a/2.png"], np.array([0])), "test": SampleList(["test/a/9.png"], np.array([0]))}
    with pytest.raises(KnnError, match="trained on 1 image"):
        _refuse_leak(run_split, lists, "RUN")


def test_bad_input_is_one_failed_event(tmp_path):
    last = finish(knn_baseline(str(tmp_path / "missing")))
    assert isinstance(last, Failed) and "\n" not in last.message
    last = finish(knn_baseline(str(tmp_path), ks=(0,)))
    assert isinstance(last, Failed) and "k must be" in last.message


def test_knn_is_a_row_of_compare(tmp_path):
    root = write_separable(tmp_path / "data", {"left": 30, "right": 30, "top": 10})
    last = finish(compare(str(root), [], [0], str(tmp_path / "cmp"), baselines=("knn",)))
    assert isinstance(last, Finished), last
    (row,) = last.result["rows"]
    assert row["strategy"] == "knn" and row["balanced_accuracy"] == 1.0 and row["minority_recall"] == 1.0
    assert "pixels" in row["detail"]
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert saved["summary"][0]["strategy"] == "knn" and saved["summary"][0]["runs"] == 1
    csv_lines = (tmp_path / "cmp" / "comparison.csv").read_text().splitlines()
    assert csv_lines[1].startswith("knn,1,")
    bad = finish(compare(str(root), [], [0], str(tmp_path / "cmp2"), baselines=("magic",)))
    assert isinstance(bad, Failed) and "unknown baseline" in bad.message


def test_cli_compare_table_and_knn_command(tmp_path, capsys):
    from balancelab.engine.cli.main import main

    root = write_separable(tmp_path / "data", {"left": 30, "right": 30, "top": 10})
    code = main(["compare", "--data", str(root), "--out", str(tmp_path / "cmp"), "--strategies", "none", "--seeds", "1",
                 "--epochs", "1", "--model", "tiny-2conv", "--device", "cpu", "--baselines", "knn", "--image-size", "12"])
    out = capsys.readouterr().out
    assert code == 0
    assert json.loads((tmp_path / "cmp" / "none-seed0" / "config.json").read_text())["image_size"] == 12
    table = [line for line in out.splitlines() if line.startswith("| ")]
    assert table[1].startswith("| none |") and table[2].startswith("| knn (pixels, k=")
    assert "Scores on the test split, held out from training." in out  # what the figures are, above them
    assert main(["knn", "--data", str(root), "--k", "1,3", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["accuracy"] == 1.0
    for bad in (["knn", "--data", str(root), "--k", "0"], ["compare", "--data", str(root), "--out", str(tmp_path / "c2"),
                                                           "--strategies", "none", "--baselines", "magic"]):
        assert main(bad) == 2
        err = capsys.readouterr().err
        assert len(err.splitlines()) == 1 and err.startswith("error: ")


def test_knn_says_what_it_bent_instead_of_bending_it_silently(tmp_path, capsys):
    """`knn --image-size -1` ran at 4 px and `--k 500` quietly became the training-set size."""
    from balancelab.engine.cli.main import main

    import shutil

    root = write_separable(tmp_path / "data", {"left": 20, "right": 20, "top": 20})
    shutil.rmtree(root / "test")  # k is chosen on val, and val is then all there is to score on
    last = finish(knn_baseline(str(root), image_size=-1))
    assert isinstance(last, Failed) and "image size must be 0" in last.message
    assert main(["knn", "--data", str(root), "--k", "1,500"]) == 0
    out, err = capsys.readouterr()
    assert "k=500 left out: more than the" in err and "k=1 chosen" in out
    assert "the dataset has no test split" in out  # scored on the split k was chosen on: said
