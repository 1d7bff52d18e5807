"""Curation quality on small planted cases: label-issue ranking and flagging (cleanlab on
out-of-fold probabilities), the out-of-fold files read back as untrusted input, and the
256-bit DCT hash that separates copies from look-alikes."""
from __future__ import annotations

import json
import os
import threading

import numpy as np
import pytest
from PIL import Image, ImageChops, ImageDraw, ImageEnhance, ImageFilter

from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.experiments.label_ranking import (FILTERS, LabelRankingError,
                                                         rank_label_issues)
from balancelab.engine.experiments.oof_store import OofError, read_oof, write_oof


def planted_probs(n_per_class: int = 200, k: int = 10, flips: int = 60, seed: int = 0):
    """Out-of-fold-like probabilities: mostly right and confident, some hard images, and
    ``flips`` labels moved to a wrong class (the model still predicts the true class)."""
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(k), n_per_class)
    logits = rng.normal(0, 1, (len(true), k))
    logits[np.arange(len(true)), true] += rng.uniform(3.0, 7.0, len(true))  # some images are hard
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.choice(len(true), flips, replace=False)
    given[flipped] = (true[flipped] + rng.integers(1, k, flips)) % k
    truth = np.zeros(len(true), dtype=bool)
    truth[flipped] = True
    return given, probs, truth


def test_default_ranking_puts_planted_flips_first():
    from sklearn.metrics import roc_auc_score

    given, probs, truth = planted_probs()
    s = rank_label_issues(given, probs)
    top = s["order"][:truth.sum()]
    assert truth[top].mean() >= 0.975  # normalized margin: .967
    assert roc_auc_score(truth, -s["quality"]) >= 0.9999
    # the ranking is by the probability of the given label (self-confidence), lowest first
    assert np.all(np.diff(s["quality"][s["order"][~s["flagged"][s["order"]]]]) >= 0)


def test_default_filter_finds_most_flips_precisely():
    given, probs, truth = planted_probs()
    s = rank_label_issues(given, probs)
    flagged = s["flagged"]
    assert (flagged & truth).sum() / flagged.sum() >= 0.97  # prune_by_noise_rate: .94, predicted_neq_given: .78
    assert (flagged & truth).sum() / truth.sum() >= 0.65
    assert (s["suggested"] != given).all()


def test_an_image_whose_given_label_is_the_top_prediction_is_never_flagged():
    """Diffuse probabilities (per-class thresholds below 0.5): the old per-class rule flagged
    images whose given label was still the most probable class."""
    rng = np.random.default_rng(1)
    k, n = 6, 600
    given = np.repeat(np.arange(k), n // k)
    probs = rng.dirichlet(np.ones(k) * 0.8, n)
    probs[np.arange(n), given] += 0.15
    probs /= probs.sum(1, keepdims=True)
    for filter_by in FILTERS:
        s = rank_label_issues(given, probs, filter_by=filter_by)
        assert not (s["flagged"] & (probs.argmax(1) == given)).any(), filter_by
        assert (s["suggested"] != given).all()


def test_confident_joint_counts_the_planted_pair():
    given, probs, truth = planted_probs(flips=0)
    true = given.copy()
    moved = np.flatnonzero(true == 3)[:40]
    given[moved] = 5
    joint = rank_label_issues(given, probs)["confident_joint"]
    assert joint.shape == (10, 10)
    off = joint.copy()
    np.fill_diagonal(off, 0)
    assert np.unravel_index(off.argmax(), off.shape) == (5, 3)  # given 5, truly 3


def test_bad_probabilities_give_a_clear_error():
    with pytest.raises(LabelRankingError):
        rank_label_issues(np.array([0, 1]), np.array([[0.5, 0.5, 0.0]]))
    with pytest.raises(LabelRankingError):
        rank_label_issues(np.array([0, 1]), np.array([[np.nan, 1.0], [0.5, 0.5]]))
    with pytest.raises(LabelRankingError):
        rank_label_issues(np.array([0, 1]), np.array([[0.5, 0.5], [0.5, 0.5]]), filter_by="nope")


# --- out-of-fold files are untrusted ---------------------------------------------------------------

def _write(tmp_path, n=20):
    given, probs, _ = planted_probs(n_per_class=n // 2, k=2, flips=2)
    paths = [f"{c}/{i}.png" for i, c in enumerate(given)]
    write_oof(str(tmp_path), ["a", "b"], paths, given, np.zeros(len(given)), probs)
    return paths


def test_oof_files_round_trip(tmp_path):
    paths = _write(tmp_path)
    classes, got_paths, labels, probs = read_oof(str(tmp_path / "oof_probs.npy"), str(tmp_path))
    assert classes == ["a", "b"] and got_paths == paths and probs.shape == (20, 2)
    assert np.allclose(probs.sum(1), 1)


@pytest.mark.parametrize("bad_path", ["../outside.png", "/etc/passwd", "a/\x00.png"])
def test_oof_index_with_paths_outside_the_dataset_is_refused(tmp_path, bad_path):
    _write(tmp_path)
    index = json.loads((tmp_path / "oof_index.json").read_text())
    index["paths"][3] = bad_path
    (tmp_path / "oof_index.json").write_text(json.dumps(index))
    with pytest.raises(OofError, match="outside"):
        read_oof(str(tmp_path), str(tmp_path))


@pytest.mark.parametrize("damage", ["pickle", "shape", "labels", "huge label", "json", "deep json", "classes"])
def test_damaged_oof_files_are_refused(tmp_path, damage):
    _write(tmp_path)
    index_path, probs_path = tmp_path / "oof_index.json", tmp_path / "oof_probs.npy"
    index = json.loads(index_path.read_text())
    if damage == "pickle":
        np.save(probs_path, np.array([{"x": 1}] * 20, dtype=object), allow_pickle=True)
    elif damage == "shape":
        np.save(probs_path, np.full((19, 2), 0.5))
    elif damage == "labels":
        index["labels"][0] = 7
    elif damage == "huge label":
        index["labels"][0] = 10 ** 30
    elif damage == "classes":
        index["classes"] = "ab"
    if damage == "json":
        index_path.write_text("{not json")
    elif damage == "deep json":
        index_path.write_text("[" * 100_000 + "]" * 100_000)
    elif damage not in ("pickle", "shape"):
        index_path.write_text(json.dumps(index))
    with pytest.raises(OofError):
        read_oof(str(tmp_path), str(tmp_path))


def test_oof_probs_fifo_does_not_hang(tmp_path):
    _write(tmp_path)
    os.remove(tmp_path / "oof_probs.npy")
    os.mkfifo(tmp_path / "oof_probs.npy")
    done = []
    t = threading.Thread(target=lambda: done.append(pytest.raises(OofError, read_oof, str(tmp_path))), daemon=True)
    t.start()
    t.join(60)
    assert done, "reading a FIFO as oof_probs.npy hung"


def _tiny_tree(root, n_per_class=8):
    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(n_per_class):
            Image.fromarray((rng.random((8, 8)) * 255).astype(np.uint8), "L").save(root / c / f"{i}.png")


def test_from_probs_reranks_without_training(tmp_path):
    from balancelab.engine.experiments.label_issues import find_label_issues

    data = tmp_path / "data"
    _tiny_tree(data)
    paths = [f"{c}/{i}.png" for c in ("a", "b") for i in range(8)]
    labels = np.array([0] * 8 + [1] * 8)
    probs = np.where(labels[:, None] == np.arange(2), 0.9, 0.1)
    probs[2] = [0.05, 0.95]  # a/2.png looks like b
    write_oof(str(tmp_path / "prev"), ["a", "b"], paths, labels, np.zeros(16), probs)
    events = list(find_label_issues(str(data), str(tmp_path / "out"), from_probs=str(tmp_path / "prev")))
    final = events[-1]
    assert isinstance(final, Finished), final
    top = final.result["ranking"][0]
    assert top["path"] == "a/2.png" and top["suggested"] == "b" and top["flagged"]
    assert (tmp_path / "out" / "label_issues.csv").exists() and (tmp_path / "out" / "noise_matrix.json").exists()
    assert not (data / "oof_probs.npy").exists()


def test_from_probs_refuses_probabilities_whose_images_moved_since(tmp_path):
    """Re-ranked after a relabel, the old probabilities named "2/digit_0022.png" although the file
    was in class 0 by then; another dataset's probabilities were taken as well."""
    from balancelab.engine.experiments.label_issues import find_label_issues

    data = tmp_path / "data"
    _tiny_tree(data)
    paths = [f"{c}/{i}.png" for c in ("a", "b") for i in range(8)]
    labels = np.array([0] * 8 + [1] * 8)
    write_oof(str(tmp_path / "prev"), ["a", "b"], paths, labels, np.zeros(16),
              np.where(labels[:, None] == np.arange(2), 0.9, 0.1))
    (data / "a" / "2.png").rename(data / "b" / "2-moved.png")  # relabelled since
    final = list(find_label_issues(str(data), str(tmp_path / "out"), from_probs=str(tmp_path / "prev")))[-1]
    assert isinstance(final, Failed) and "1 of the 16 images" in final.message and "a/2.png" in final.message
    assert not (tmp_path / "out").exists()


def test_from_probs_with_a_crafted_index_fails_cleanly(tmp_path):
    from balancelab.engine.experiments.label_issues import find_label_issues

    data = tmp_path / "data"
    _tiny_tree(data)
    write_oof(str(tmp_path / "prev"), ["a", "b"], ["../../x.png", "a/1.png"], np.array([0, 1]), np.zeros(2),
              np.array([[0.9, 0.1], [0.2, 0.8]]))
    final = list(find_label_issues(str(data), str(tmp_path / "out"), from_probs=str(tmp_path / "prev")))[-1]
    assert isinstance(final, Failed) and "outside" in final.message


def test_cli_from_probs_error_is_one_line_exit_2(tmp_path, capsys):
    from balancelab.engine.cli.main import main

    data = tmp_path / "data"
    _tiny_tree(data)
    code = main(["label-issues", "--data", str(data), "--out", str(tmp_path / "o"), "--from-probs", str(tmp_path / "nope")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "oof_probs.npy" in err


# --- the 256-bit DCT hash ----------------------------------------------------------------------------

def digit_images(n: int = 60) -> list[Image.Image]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return [Image.fromarray(np.clip(d.images[i] * 16, 0, 255).astype(np.uint8), "L").resize((28, 28), Image.Resampling.BILINEAR)
            for i in range(n)]


def test_phash_bits_match_imagehash(tmp_path):
    import imagehash

    from balancelab.engine.data.phash import phash_files

    rng = np.random.default_rng(0)
    paths = []
    for i, img in enumerate(digit_images(10) + [Image.fromarray((rng.random((40, 30, 3)) * 255).astype(np.uint8))]):
        p = tmp_path / f"{i}.png"
        img.save(p)
        paths.append(str(p))
    words, ok, _ = [e for e in phash_files(paths) if isinstance(e, Finished)][0].result
    assert ok.all()
    for p, w in zip(paths, words):
        with Image.open(p) as im:
            ref = imagehash.phash(im, hash_size=16).hash.flatten()
        assert (np.unpackbits(w.astype(">u8").view(np.uint8)).astype(bool) == ref).all()


def scribble(points: np.ndarray) -> Image.Image:
    """A handwriting-like 28 x 28 stroke through ``points`` (MNIST-sized, blurred edges)."""
    im = Image.new("L", (28, 28), 0)
    ImageDraw.Draw(im).line([tuple(p) for p in points], fill=255, width=3)
    return im.filter(ImageFilter.GaussianBlur(0.7))


def test_near_duplicates_separate_copies_from_look_alikes(tmp_path):
    """Re-encoded, resized and brightened copies are grouped with their originals at the default
    threshold; the same stroke written slightly differently (a look-alike) is not. (The 256-bit
    difference hash put JPEG copies of digits ~39 bits away: beyond any useful threshold.)"""
    from balancelab.engine.data.duplicates import find_duplicates
    from balancelab.engine.data.scanner import scan_sync

    rng = np.random.default_rng(0)
    (tmp_path / "x").mkdir()
    images = []
    for i in range(20):
        points = rng.uniform(5, 23, (5, 2))
        images.append(scribble(points))
        images[-1].save(tmp_path / "x" / f"{i:02d}.png")
        scribble(points + rng.normal(0, 1.5, points.shape)).save(tmp_path / "x" / f"{i:02d}-lookalike.png")
    img = images[0]
    img.save(tmp_path / "x" / "c-jpeg.jpg", quality=60)
    img.resize((32, 32), Image.Resampling.BILINEAR).resize((28, 28), Image.Resampling.BILINEAR).save(tmp_path / "x" / "c-resized.png")
    ImageEnhance.Brightness(images[1]).enhance(1.1).save(tmp_path / "x" / "c-bright.png")
    ImageChops.offset(images[2], 1, 0).save(tmp_path / "x" / "c-shifted.png")  # ~60 bits away unshifted
    groups = [e for e in find_duplicates(scan_sync(str(tmp_path))) if isinstance(e, Finished)][-1].result
    assert sorted(g.paths for g in groups) == [["x/00.png", "x/c-jpeg.jpg", "x/c-resized.png"],
                                               ["x/01.png", "x/c-bright.png"], ["x/02.png", "x/c-shifted.png"]]


def test_default_threshold_sits_between_copies_and_the_closest_look_alikes(tmp_path):
    """Pins DEFAULT_THRESHOLD from both sides on planted truth: a JPEG q60 copy sits 10 bits away,
    and strokes redrawn with 0.3 px of jitter (different handwriting, not copies) from 18 bits on.
    A default below 10 loses the copy; one of 18 or more groups a look-alike."""
    from balancelab.engine.data.duplicates import DEFAULT_THRESHOLD, find_duplicates
    from balancelab.engine.data.scanner import scan_sync

    rng = np.random.default_rng(1)
    (tmp_path / "x").mkdir()
    originals = []
    for i in range(40):
        points = rng.uniform(5, 23, (5, 2))
        original, other = scribble(points), scribble(points + rng.normal(0, 0.3, points.shape))
        original.save(tmp_path / "x" / f"{i:02d}.png")
        originals.append(original)
        if not np.array_equal(np.asarray(original), np.asarray(other)):  # jitter below a pixel can redraw the same
            other.save(tmp_path / "x" / f"{i:02d}-lookalike.png")
    originals[0].save(tmp_path / "x" / "c-jpeg.jpg", quality=60)
    originals[1].resize((32, 32), Image.Resampling.BILINEAR).resize((28, 28), Image.Resampling.BILINEAR).save(
        tmp_path / "x" / "c-resized.png")
    scan = scan_sync(str(tmp_path))
    expected = [["x/00.png", "x/c-jpeg.jpg"], ["x/01.png", "x/c-resized.png"]]

    def groups(threshold: int) -> list[list[str]]:
        found = [e for e in find_duplicates(scan, threshold) if isinstance(e, Finished)][-1].result
        return sorted(g.paths for g in found)

    assert groups(DEFAULT_THRESHOLD) == expected
    assert groups(9) != expected and groups(18) != expected  # the test can fail on either side


def test_embedding_pairs_outliers_and_modes():
    from balancelab.engine.results.embeddings import class_modes, close_pairs, outlier_scores

    rng = np.random.default_rng(0)
    centres = np.eye(8)[:2] * 4
    feats = np.concatenate([centres[0] + rng.normal(0, 0.3, (30, 8)), centres[1] + rng.normal(0, 0.3, (30, 8)),
                            [np.eye(8)[5] * 4]])  # the last one is like no class
    labels = np.array([0] * 30 + [1] * 30 + [0])
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    feats = np.concatenate([feats, feats[3:4]])  # an exact copy of image 3
    labels = np.append(labels, 0)
    pairs = close_pairs(feats.astype(np.float32), 1e-4)
    assert [(i, j) for i, j, _ in pairs] == [(3, 61)]
    dist, _ = outlier_scores(feats, labels, 2)
    assert dist.argmax() == 60
    assert class_modes(feats[:60], labels[:60], 2) == [1, 1]


def test_weak_fold_models_come_with_their_accuracy_and_a_warning():
    from balancelab.engine.experiments.label_issues import trust

    given, probs, _ = planted_probs()
    good = trust(given, probs, rank_label_issues(given, probs))
    assert good["oof_accuracy"] > 0.9 and good["trust_warning"] is None
    rng = np.random.default_rng(1)
    noise = rng.dirichlet(np.ones(10), len(given))  # fold models that learned nothing
    weak = trust(given, noise, rank_label_issues(given, noise))
    assert weak["oof_accuracy"] < 0.3 and "too weak" in weak["trust_warning"]
