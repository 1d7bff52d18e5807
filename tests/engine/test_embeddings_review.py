"""Outliers and rare-class coverage from embeddings: a planted cat among digits is found (on
constructed embeddings and through a real trained run), and modes are counted on constructed
clusters."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from balancelab.engine.core.events import Failed, Finished
from balancelab.engine.results.embedding_review import coverage_of, outlier_threshold, review_embeddings
from balancelab.engine.results.embeddings import MIN_SPREAD, embedding_spread, outlier_scores


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_a_planted_cat_is_the_only_flagged_outlier_among_constructed_digits():
    rng = np.random.default_rng(0)
    centres = np.eye(16)[:10] * 5
    labels = np.repeat(np.arange(10), 40)
    feats = centres[labels] + rng.normal(0, 0.5, (len(labels), 16))
    feats = np.concatenate([feats, [np.eye(16)[13] * 5 + rng.normal(0, 0.5, 16)]])  # the cat: like no digit
    labels = np.append(labels, 3)  # ... filed under 3
    dist, nearest = outlier_scores(unit(feats), labels, 10)
    flagged = np.flatnonzero(dist > outlier_threshold(dist))
    assert flagged.tolist() == [len(labels) - 1]


def test_outlier_threshold_is_robust_and_never_tiny():
    assert outlier_threshold(np.full(50, 0.001)) == pytest.approx(0.05)  # a very tight dataset flags nothing
    dist = np.concatenate([np.linspace(0.1, 0.2, 99), [5.0]])
    assert 0.2 < outlier_threshold(dist) < 5.0  # one far value does not move the bar past itself


def test_coverage_counts_modes_on_constructed_clusters():
    rng = np.random.default_rng(0)
    dirs = np.eye(12)
    many = np.concatenate([dirs[i] * 4 + rng.normal(0, 0.2, (25, 12)) for i in (0, 1, 2)])  # class a: 3 modes
    one = dirs[5] * 4 + rng.normal(0, 0.2, (10, 12))  # class b (the minority): one mode
    feats = unit(np.concatenate([many, one]))
    rows = coverage_of(feats, ["a"] * 75 + ["b"] * 10, ["a", "b"])
    assert [(r.label, r.images, r.modes) for r in rows] == [("b", 10, 1), ("a", 75, 3)]
    assert rows[1].images_per_mode == 25
    from balancelab.engine.results.embedding_review import EmbeddingReview

    assert EmbeddingReview("run", [], rows, 0.1).minority() == {"b"}


@pytest.fixture(scope="module")
def digits_with_a_cat(demo_root, tmp_path_factory):
    """The demo digits with a colourful photo-like image filed as a training 3, and a 1-epoch run
    trained on the clean digits."""
    from balancelab.engine.cli.main import main
    from balancelab.engine.data.scanner import scan_sync

    tmp = tmp_path_factory.mktemp("cat")
    run = tmp / "run"
    assert main(["train", "--data", str(demo_root), "--out", str(run), "--model", "tiny-2conv", "--epochs", "2",
                 "--augment", "none", "--device", "cpu"]) == 0
    data = tmp / "data"
    shutil.copytree(demo_root, data)
    yy, xx = np.mgrid[0:64, 0:64]
    cat = np.stack([(xx * 4) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], axis=-1).astype(np.uint8)
    cat[16:48, 16:48] = (200, 140, 60)  # a fur-coloured patch on a gradient: nothing like a digit
    Image.fromarray(cat).save(data / "train" / "3" / "cat.png")
    return scan_sync(str(data)), str(run)


def test_review_embeddings_finds_the_cat_through_a_trained_run(digits_with_a_cat):
    result, run = digits_with_a_cat
    final = list(review_embeddings(result, run))[-1]
    assert isinstance(final, Finished) and final.result is not None, final
    review = final.result
    assert review.outliers[0].path == "train/3/cat.png" and review.outliers[0].flagged
    assert len(review.flagged) <= 0.02 * len(review.outliers)
    assert {r.label for r in review.coverage} == set(result.split_classes["train"])
    assert all(r.modes >= 1 for r in review.coverage if r.images)


def test_review_embeddings_with_a_folder_that_is_no_run_fails_in_one_line(digits_with_a_cat, tmp_path):
    result, _ = digits_with_a_cat
    final = list(review_embeddings(result, str(tmp_path)))[-1]
    assert isinstance(final, Failed) and "\n" not in final.message


def test_embedding_spread_tells_collapsed_features_from_useful_ones():
    rng = np.random.default_rng(0)
    useful = unit(rng.normal(0, 1, (300, 32)))
    collapsed = unit(np.ones((300, 32)) * 5 + rng.normal(0, 0.05, (300, 32)))  # one shared direction
    assert embedding_spread(useful) > 0.5 > MIN_SPREAD > embedding_spread(collapsed)
    assert embedding_spread(useful[:1]) == float("inf")  # no pair to judge
    # 95:5, a trained model: the large class is one tight cluster, the small one far from it
    tight = unit(np.eye(32)[0] * 5 + rng.normal(0, 0.02, (285, 32)))
    apart = unit(np.eye(32)[1] * 5 + rng.normal(0, 0.02, (15, 32)))
    feats, labels = np.concatenate([tight, apart]), np.array(["a"] * 285 + ["b"] * 15)
    assert embedding_spread(feats) < MIN_SPREAD < 0.9 < embedding_spread(feats, labels)  # judged across classes
    dead = np.zeros((300, 32), dtype=np.float32)  # all-zero features: nothing tells the images apart
    assert embedding_spread(dead, labels) == 0.0


def test_collapsed_embeddings_of_a_run_are_refused_not_used(digits_with_a_cat, monkeypatch):
    """An under-trained run whose features all point one way would pair every image with every
    other (a 2-epoch demo run did: 828 images, all pairs within 0.003): outliers, coverage and
    embedding duplicates refuse it in one line instead of showing noise as findings."""
    from balancelab.engine.results import embeddings

    result, run = digits_with_a_cat
    real = embeddings.penultimate_features

    def collapsed(model, array, batch_size=512):
        feats = real(model, array, batch_size)
        return unit(feats * 1e-3 + np.ones_like(feats)).astype(np.float32)

    monkeypatch.setattr(embeddings, "penultimate_features", collapsed)
    for final in (list(review_embeddings(result, run))[-1], list(embeddings.find_duplicates_with_run(result, run))[-1]):
        assert isinstance(final, Failed) and "do not tell the images apart" in final.message, final
